"""Identifiers compared for access: how names are normalised and which look-alikes are refused. One place.

Rules (the database is made to compare exactly as this code does: binary collations, see `core/migrate.py`):

- Every identifier is NFC-normalised and then compared exactly, code point by code point: room names, topic
  names, feed names, config keys, usergroup names. No case folding, no trimming, no accent folding. Control
  and format characters (categories Cc, Cf, Cs, Co, Cn, Zl, Zp: NUL, zero-width spaces, bidi controls, ...)
  and leading/trailing white space are refused, so two names that look the same always are the same.
- NFKC-equivalent names (full-width `news` and `news`) are different names, never aliases. Where a look-alike could
  pass for a name that means more (a row-bound Yjs room `table.ref.column`, the `administrators` group, a
  table's topic), it is refused: `skeleton` folds compatibility forms (NFKC), case, dot and hyphen look-alikes
  and invisible characters.
- Email addresses (login names): NFC, trimmed, and the whole address lower-cased (`Ann@X.org` and
  `ann@x.org` are one account; a second sign-up is a 409). An address that NFKC would change (full-width
  letters, ligatures, ...) is refused: it could only be a look-alike of another address.
"""

from __future__ import annotations

import re
import unicodedata

# characters that read as "." (NFKC already maps U+2024, U+FE52, U+FF0E); these it does not
DOT_LIKES = frozenset(
    "\u00b7\u0387\u05c5\u06d4\u0701\u0702\u2027\u2219\u22c5\u2e33\u3002\u30fb\ua4f8\ufe12\uff61\uff65"
)
# characters that read as "-" and that NFKC leaves alone
HYPHEN_LIKES = frozenset("\u00ad\u2010\u2011\u2012\u2013\u2014\u2015\u2043\u2212\u2796\ufe58\u02d7\u1400\u30fc")
# Cyrillic and Greek letters (after case folding) that look like Latin ones
CONFUSABLES = str.maketrans(
    "\u0430\u0441\u0501\u0435\u043e\u0440\u0445\u0443\u0455\u0456\u0458\u04bb\u03b1\u03bf\u03c1\u03bd\u03b9\u0251\u03f2",
    "acdeopxysijhaopviac",
)
# letters that read as digits, in what should be a UUID
DIGIT_LIKES = str.maketrans("oil", "011")
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_HEX32 = re.compile(r"[0-9a-f]{32}")


class BadName(ValueError):
    """A name that cannot be used; `str(exc)` says why (short, safe to show)."""


def _problem(name: str) -> str | None:
    if not name:
        return "is empty"
    for ch in name:
        if unicodedata.category(ch) in _REFUSED_CATEGORIES:
            return f"contains the control or invisible character U+{ord(ch):04X}"
    if name.strip() != name:
        return "starts or ends with white space"
    return None


def identifier(raw: str, what: str = "name", max_length: int = 255) -> str:
    """The stored and compared form of a name: NFC, exact. BadName when it cannot be one."""
    name = unicodedata.normalize("NFC", raw)
    problem = _problem(name)
    if problem is not None:
        raise BadName(f"{what} {problem}")
    if len(name) > max_length:
        raise BadName(f"{what} is longer than {max_length} characters")
    return name


def skeleton(name: str) -> str:
    """What a name reads as: NFKC, case-folded, Cyrillic/Greek look-alikes of Latin letters and dot and hyphen
    look-alikes as `a`, `.`, `-`, ..., white space and invisible characters dropped. Two names with one
    skeleton are look-alikes."""
    folded = unicodedata.normalize("NFKC", name).casefold().translate(CONFUSABLES)
    out = []
    for ch in unicodedata.normalize("NFKC", folded):
        if ch in DOT_LIKES:
            out.append(".")
        elif ch in HYPHEN_LIKES:
            out.append("-")
        elif ch.isspace() or unicodedata.category(ch) in _REFUSED_CATEGORIES:
            continue
        else:
            out.append(ch)
    return "".join(out)


def reads_as_row_room(name: str) -> bool:
    """Whether a room name reads as, or could be taken for, a row-bound room `table.<uuid>.column`: its
    skeleton has at least three dot-separated parts and an inner one is a UUID (in any spelling)."""
    parts = [p for p in skeleton(name).split(".") if p]
    for inner in parts[1:-1]:
        digits = "".join(ch for ch in inner if ch not in "-{}").translate(DIGIT_LIKES)
        if _HEX32.fullmatch(digits.removeprefix("urn:uuid:")):
            return True
    return False


def lookalike_of(name: str, reserved: tuple[str, ...]) -> str | None:
    """The reserved name `name` imitates without being it (e.g. `Administrators` for `administrators`)."""
    mine = skeleton(name)
    return next((r for r in reserved if name != r and skeleton(r) == mine), None)


def email(raw: str) -> str:
    """The login form of an email address: NFC, trimmed, lower-cased (the whole address)."""
    return unicodedata.normalize("NFC", raw).strip().lower()


def email_problem(address: str) -> str | None:
    """Why `address` (already in login form) cannot be an account's email, or None."""
    problem = _problem(address)
    if problem is not None:
        return f"email {problem}"
    if unicodedata.normalize("NFKC", address).lower() != address:
        return "email contains compatibility characters (full-width letters, ligatures, ...): write it plainly"
    return None
