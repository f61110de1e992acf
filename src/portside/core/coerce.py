"""Scalar coercions of client values (int, float, bool, date-time, text) with FieldError on bad input."""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import re
from typing import Any

from portside.core.schema import Column
from portside.tools import jsonutil

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
TRUE_WORDS = {"true", "1"}
FALSE_WORDS = {"false", "0"}


class FieldError(ValueError):
    """A client value is not acceptable for a column; ``str(exc) == exc.message``."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.message = message


def bad(col: Column, why: str) -> FieldError:
    return FieldError(col.column_name, f"invalid value for {col.column_name}: {why}")


# ASCII digits only: `\d` alone would also take other scripts' digits ("١٢"), which int() accepts
_INT_RE = re.compile(r"[+-]?\d{1,30}", re.ASCII)
_NUM_RE = re.compile(r"[+-]?(?:\d{1,30}(?:\.\d{0,30})?|\.\d{1,30})(?:[eE][+-]?\d{1,4})?", re.ASCII)


def as_int(col: Column, v: Any, bounds: tuple[int, int] = INT64, *, exact: bool = False) -> int:
    """An int within `bounds`. `exact` (filter values) refuses fractions instead of truncating them."""
    if isinstance(v, bool):
        n = int(v)
    elif isinstance(v, int):
        n = v
    elif isinstance(v, float):
        if not math.isfinite(v) or (exact and not (v.is_integer() and abs(v) < 2**53)):  # exact: no rounding
            raise bad(col, "expected an integer" if exact else "expected a finite number")
        n = int(v)
    elif isinstance(v, str) and _INT_RE.fullmatch(v.strip()):
        n = int(v.strip())
    elif isinstance(v, str) and not exact and _NUM_RE.fullmatch(v.strip()):
        return as_int(col, float(v.strip()), bounds)
    else:
        raise bad(col, "expected an integer")
    if not bounds[0] <= n <= bounds[1]:
        raise bad(col, "integer out of range")
    return n


def as_float(col: Column, v: Any) -> float:
    if isinstance(v, str) and _NUM_RE.fullmatch(v.strip()):
        v = float(v.strip())
    if not isinstance(v, int | float):
        raise bad(col, "expected a number")
    try:
        f = float(v)
    except OverflowError:
        raise bad(col, "number out of range") from None
    if not math.isfinite(f):
        raise bad(col, "expected a finite number")
    return f


def as_bool(col: Column, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return v.strip().lower() in TRUE_WORDS
    raise bad(col, "expected true or false")


_EPOCH = dt.datetime(1970, 1, 1)
_EXTRA_FORMATS = ("%Y/%m/%d %H:%M:%S", "%Y/%m/%d", "%d %b %Y", "%b %d, %Y", "%d %B %Y", "%B %d, %Y")


def _naive_utc(d: dt.datetime) -> dt.datetime:
    return d.astimezone(dt.UTC).replace(tzinfo=None) if d.tzinfo is not None else d


def _from_unix(col: Column, seconds: float) -> dt.datetime:
    try:
        return _EPOCH + dt.timedelta(seconds=as_float(col, seconds))
    except OverflowError:
        raise bad(col, "date out of range") from None


def _parse_datetime_text(col: Column, text: str) -> dt.datetime:
    t = text.strip()
    if not t or len(t) > 64:
        raise bad(col, "expected a date/time")
    if _NUM_RE.fullmatch(t):
        return _from_unix(col, float(t))
    try:
        return _naive_utc(dt.datetime.fromisoformat(t[:-1] + "+00:00" if t[-1] in "zZ" else t))
    except ValueError:
        pass
    try:
        return _naive_utc(email.utils.parsedate_to_datetime(t))  # RFC 1123 / 2822
    except (TypeError, ValueError, IndexError):
        pass
    for fmt in _EXTRA_FORMATS:
        try:
            return dt.datetime.strptime(t, fmt)
        except ValueError:
            continue
    raise bad(col, "expected a date/time (RFC 3339, YYYY-MM-DD[ HH:MM:SS] or unix seconds)")


def as_datetime(col: Column, v: Any) -> dt.datetime:
    if isinstance(v, dt.datetime):
        return _naive_utc(v)
    if isinstance(v, dt.date):
        return dt.datetime(v.year, v.month, v.day)
    if isinstance(v, str):
        return _parse_datetime_text(col, v)
    if isinstance(v, int | float) and not isinstance(v, bool):
        return _from_unix(col, v)
    raise bad(col, "expected a date/time")


def as_text(col: Column, v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        if not INT64[0] <= v <= INT64[1]:
            raise bad(col, "integer out of range")
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise bad(col, "expected a finite number")
        return repr(v)
    if isinstance(v, dt.datetime):
        return jsonutil.iso(v) or ""
    if not isinstance(v, str):
        raise bad(col, "expected text")
    if "\x00" in v:
        raise bad(col, "contains a NUL character")
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise bad(col, "not valid UTF-8 text") from None
    return v
