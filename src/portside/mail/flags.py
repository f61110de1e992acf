"""Message flags with RFC 3501 semantics, kept as columns.

System flags are boolean columns (`\\Seen` seen, `\\Answered` answered, `\\Flagged` flagged, `\\Deleted`
deleted, `\\Draft` draft; `\\Recent` recent, which only the server sets); keywords (`$Junk`, `$Forwarded`,
user words) are the space-separated `keywords` column, compared case-insensitively and kept in the case
first written. Daptin's `flags` column (comma-separated) is written from the same set on every change, so old
readers keep working. `\\Deleted` only marks a message: it stays visible until EXPUNGE ([fix] H #13).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from portside.errors import BadRequest

SYSTEM = {
    "\\seen": ("\\Seen", "seen"),
    "\\answered": ("\\Answered", "answered"),
    "\\flagged": ("\\Flagged", "flagged"),
    "\\deleted": ("\\Deleted", "deleted"),
    "\\draft": ("\\Draft", "draft"),
}
RECENT = "\\Recent"
JUNK = "$Junk"
NOT_JUNK = "$NotJunk"
FLAG_COLUMNS = tuple(column for _, column in SYSTEM.values())
MAX_KEYWORDS = 64
MAX_KEYWORD = 100
# IMAP atom characters minus the ones that cannot be in a flag keyword (RFC 3501 flag-keyword)
_KEYWORD = re.compile(r"[!#$&'+\-./0-9:;<=>?@A-Z^_`a-z|~]{1,100}")
PERMANENT = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "\\*")


def canonical(flag: str) -> str:
    """The stored spelling of one flag: system flags in RFC case, keywords as given (BadRequest if invalid)."""
    if not isinstance(flag, str):
        raise BadRequest("a flag must be text")
    low = flag.lower()
    if low in SYSTEM:
        return SYSTEM[low][0]
    if low == "\\recent":
        return RECENT
    if flag.startswith("\\") or not _KEYWORD.fullmatch(flag):
        raise BadRequest(f"invalid flag {flag[:40]!r}")
    return flag


def normalize(flags: Iterable[str]) -> list[str]:
    """Canonical, de-duplicated (case-insensitively), in first-seen order; `\\Recent` dropped (server-only)."""
    out: list[str] = []
    seen: set[str] = set()
    for f in flags:
        c = canonical(f)
        if c == RECENT or c.lower() in seen:
            continue
        seen.add(c.lower())
        out.append(c)
    if sum(1 for f in out if not f.startswith("\\")) > MAX_KEYWORDS:
        raise BadRequest(f"at most {MAX_KEYWORDS} keywords per message")
    return out


def to_columns(flags: Iterable[str], *, recent: bool) -> dict[str, Any]:
    """Column values for a message carrying exactly `flags` (already normalised)."""
    values: dict[str, Any] = dict.fromkeys(FLAG_COLUMNS, False)
    keywords: list[str] = []
    for f in flags:
        entry = SYSTEM.get(f.lower())
        if entry is not None:
            values[entry[1]] = True
        elif f != RECENT:
            keywords.append(f)
    values["keywords"] = " ".join(keywords)
    values["recent"] = recent
    values["junk"] = any(k.lower() == JUNK.lower() for k in keywords)
    values["flags"] = ",".join(_daptin_list(values, keywords))[:500]
    return values


def _daptin_list(values: Mapping[str, Any], keywords: list[str]) -> list[str]:
    out = [name for name, column in SYSTEM.values() if values.get(column)]
    if values.get("recent"):
        out.append(RECENT)
    return out + keywords


def of_row(row: Mapping[str, Any]) -> list[str]:
    """The flags of a stored message (system flags first, then keywords), `\\Recent` not included."""
    out = [name for name, column in SYSTEM.values() if row.get(column)]
    words = row.get("keywords") or ""
    out.extend(w for w in str(words).split() if w)
    return out


_NAMES = tuple(name for name, _ in SYSTEM.values())  # in FLAG_COLUMNS order


def of_columns(values: Iterable[Any], keywords: str | None) -> list[str]:
    """`of_row` for the FLAG_COLUMNS values in their order and the keywords column (no mapping per row)."""
    out = [name for name, on in zip(_NAMES, values, strict=True) if on]
    if keywords:
        out.extend(keywords.split())
    return out


def apply(current: list[str], change: Iterable[str], mode: str) -> list[str]:
    """`mode` "set" (FLAGS), "add" (+FLAGS) or "remove" (-FLAGS) applied to `current`."""
    given = normalize(change)
    if mode == "set":
        return given
    if mode == "add":
        return normalize([*current, *given])
    if mode == "remove":
        drop = {f.lower() for f in given}
        return [f for f in current if f.lower() not in drop]
    raise BadRequest(f"unknown flag change {mode!r}")
