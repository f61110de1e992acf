"""JSON encoding and bounded decoding (orjson)."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

import orjson

MAX_DEPTH = 64


class JSONError(ValueError):
    pass


def _default(obj: Any) -> Any:
    if isinstance(obj, decimal.Decimal):
        return float(obj)
    if isinstance(obj, bytes | bytearray | memoryview):
        return bytes(obj).decode("utf-8", "replace")
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=_default, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)


def dumps_str(obj: Any) -> str:
    return dumps(obj).decode()


def _depth(obj: Any, limit: int) -> int:
    # iterative depth check so hostile input cannot exhaust the stack
    stack: list[tuple[Any, int]] = [(obj, 1)]
    deepest = 0
    while stack:
        cur, d = stack.pop()
        if d > deepest:
            deepest = d
            if deepest > limit:
                return deepest
        if isinstance(cur, dict):
            stack.extend((v, d + 1) for v in cur.values())
        elif isinstance(cur, list):
            stack.extend((v, d + 1) for v in cur)
    return deepest


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON; raise JSONError for malformed input or nesting deeper than max_depth."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise JSONError(f"malformed JSON: {exc}") from None
    if isinstance(value, dict | list) and _depth(value, max_depth) > max_depth:
        raise JSONError(f"JSON nested deeper than {max_depth} levels")
    return value


def iso(value: dt.datetime | dt.date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return value.isoformat()


__all__ = ["JSONError", "dumps", "dumps_str", "iso", "loads", "uuid"]
