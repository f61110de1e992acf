"""Table/action ``Validations`` (go-playground "validator" tags) and ``Conformations`` ("conform" tags).

Tags are comma-separated; a tag with a parameter is ``name=param`` (``min=8``, ``oneof=a b 'c d'``).

Validation tags understood: ``required``, ``omitempty``, ``email``, ``url``, ``min``, ``max``, ``len``, ``eq``,
``ne``, ``gt``, ``gte``, ``lt``, ``lte``, ``oneof``, ``eqfield``, ``nefield``, ``alpha``, ``alphanum``,
``numeric``, ``number``, ``lowercase``, ``uppercase``, ``contains``, ``excludes``, ``startswith``,
``endswith``. Unknown tags, and known tags with an unusable parameter (``min=abc``), are ignored so that a
schema written for Daptin keeps loading; they are never treated as failures.

Differences from go-playground: ``required`` accepts ``0`` and ``false`` (JSON values, not Go zero values) and
fails only on a missing key, ``null``, ``""`` or an empty list/object; a ``null`` value skips every other tag.
Size tags (``min``/``max``/``len``/``gt``...) compare the character count of strings, the item count of lists
and objects, and the value of numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from portside.core.fieldtypes import FieldError, is_email, is_http_url
from portside.core.schema import TagRule, snake
from portside.tools import names

# ---------------------------------------------------------------- conformations


def _collapse(s: str) -> str:
    return " ".join(s.split())


def _cap_words(s: str, rest_lower: bool) -> str:
    return re.sub(r"\S+", lambda m: m[0][:1].upper() + (m[0][1:].lower() if rest_lower else m[0][1:]), s)


CONFORMERS: dict[str, Callable[[str], str]] = {
    "trim": str.strip,
    "ltrim": str.lstrip,
    "rtrim": str.rstrip,
    "lower": str.lower,
    "lowercase": str.lower,
    "upper": str.upper,
    "uppercase": str.upper,
    "email": names.email,
    "name": lambda s: _cap_words(_collapse(s), rest_lower=False),
    "title": lambda s: _cap_words(s, rest_lower=True),
    "ucfirst": lambda s: s[:1].upper() + s[1:],
}


def _split_tags(tags: str) -> list[tuple[str, str]]:
    out = []
    for part in tags.split(","):
        name, _, param = part.strip().partition("=")
        if name.strip():
            out.append((name.strip().lower(), param.strip()))
    return out


def conform(rules: list[TagRule], attrs: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of attrs with conform tags applied to string values; unknown tags are ignored."""
    out = dict(attrs)
    for rule in rules:
        for name, _ in _split_tags(rule.tags):
            fn = CONFORMERS.get(name)
            value = out.get(rule.column_name)
            if fn is not None and isinstance(value, str):
                out[rule.column_name] = fn(value)
    return out


# ---------------------------------------------------------------- validations


def _empty(v: Any) -> bool:
    return v is None or (isinstance(v, str | list | dict) and len(v) == 0)


def _number(param: str) -> float | None:
    try:
        n = float(param)
    except ValueError:
        return None
    return n if math.isfinite(n) else None


def _size(v: Any) -> tuple[float, str] | None:
    """(measure, unit) used by size tags, or None when the value has no size."""
    if isinstance(v, bool):
        return None
    if isinstance(v, str):
        return float(len(v)), " characters"
    if isinstance(v, list | dict):
        return float(len(v)), " items"
    if isinstance(v, int | float):
        return float(v), ""
    return None


def _fmt(n: float) -> str:
    return str(int(n)) if n == int(n) else str(n)


HOSTNAME_RE = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)

_SIZE_TESTS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "min": (lambda x, p: x >= p, "must be at least"),
    "gte": (lambda x, p: x >= p, "must be at least"),
    "max": (lambda x, p: x <= p, "must be at most"),
    "lte": (lambda x, p: x <= p, "must be at most"),
    "gt": (lambda x, p: x > p, "must be greater than"),
    "lt": (lambda x, p: x < p, "must be less than"),
    "len": (lambda x, p: x == p, "must be exactly"),
}

_PATTERNS: dict[str, tuple[re.Pattern[str], str]] = {
    "alpha": (re.compile(r"[A-Za-z]+"), "must contain only letters"),
    "alphanum": (re.compile(r"[A-Za-z0-9]+"), "must contain only letters and digits"),
    "numeric": (re.compile(r"[-+]?\d+(?:\.\d+)?"), "must be numeric"),
    "number": (re.compile(r"\d+"), "must be a number"),
    # RFC 1123 host name: ASCII letters, digits and inner hyphens, dot-separated labels of 1..63, no trailing dot
    "hostname": (HOSTNAME_RE, "must be a host name (letters, digits, hyphens and dots)"),
}

_ONEOF_RE = re.compile(r"'([^']*)'|(\S+)")


def _scalar_text(v: Any) -> str | None:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str | int | float):
        return str(v)
    return None


def _check(tag: str, param: str, value: Any, attrs: dict[str, Any]) -> str | None:
    """Failure text (without the leading column name) for one tag, or None when it passes or is unknown."""
    if tag in _SIZE_TESTS:
        p, size = _number(param), _size(value)
        test, words = _SIZE_TESTS[tag]
        if p is None or size is None or test(size[0], p):
            return None
        unit = size[1][:-1] if size[1] and p == 1 else size[1]
        return f"{words} {_fmt(p)}{unit}"
    if tag == "email":
        problem = names.email_problem(names.email(value)) if isinstance(value, str) else None
        return None if is_email(value) else "must be a valid email address" + (f" ({problem})" if problem else "")
    if tag == "url":
        return None if is_http_url(value) else "must be a valid URL"
    if tag in _PATTERNS:
        pattern, words = _PATTERNS[tag]
        if isinstance(value, int | float) and not isinstance(value, bool) and tag in ("numeric", "number"):
            return None
        return None if isinstance(value, str) and pattern.fullmatch(value) else words
    text = _scalar_text(value)
    if tag == "oneof":
        options = [a if a else b for a, b in _ONEOF_RE.findall(param)]
        return None if text in options else f"must be one of {', '.join(options)}"
    if tag in ("eq", "ne"):
        same = text == param
        return None if same == (tag == "eq") else f"must {'' if tag == 'eq' else 'not '}equal {param!r}"
    if tag in ("eqfield", "nefield"):
        other = param if param in attrs else snake(param)
        same = attrs.get(other) == value
        return None if same == (tag == "eqfield") else f"must {'' if tag == 'eqfield' else 'not '}equal {param!r}"
    string_tests: dict[str, tuple[Callable[[str], bool], str]] = {
        "lowercase": (lambda s: s == s.lower(), "must be lowercase"),
        "uppercase": (lambda s: s == s.upper(), "must be uppercase"),
        "contains": (lambda s: param in s, f"must contain {param!r}"),
        "excludes": (lambda s: param not in s, f"must not contain {param!r}"),
        "startswith": (lambda s: s.startswith(param), f"must start with {param!r}"),
        "endswith": (lambda s: s.endswith(param), f"must end with {param!r}"),
    }
    if tag in string_tests:
        fn, words = string_tests[tag]
        return None if isinstance(value, str) and fn(value) else words
    return None  # unknown tag: ignored


def validate(rules: list[TagRule], attrs: dict[str, Any], *, partial: bool) -> None:
    """Raise FieldError for the first failing tag.

    partial=True (PATCH): only columns present in attrs are checked. partial=False (POST / actions):
    ``required`` also fails for missing columns.
    """
    for rule in rules:
        column = rule.column_name
        present = column in attrs
        if partial and not present:
            continue
        value = attrs.get(column)
        for tag, param in _split_tags(rule.tags):
            if tag == "omitempty" and _empty(value):
                break
            if tag == "required":
                if _empty(value):
                    raise FieldError(column, f"{column!r} is required")
                continue
            if value is None:
                break
            why = _check(tag, param, value, attrs)
            if why:
                raise FieldError(column, f"{column!r} {why}")


__all__ = ["CONFORMERS", "HOSTNAME_RE", "conform", "validate"]
