"""Writing IMAP data: strings (quoted when safe, literal otherwise), NIL, lists, flags, dates, sets.

Values are Python objects turned into bytes by `encode`: None → NIL, int → number, `Raw` → as is (atoms,
flags, already formatted parts), str/bytes → a string (quoted or literal), list/tuple → parenthesised list.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class Raw(bytes):
    """Bytes written verbatim (an atom, a flag, a pre-formatted fragment)."""

    __slots__ = ()


def raw(value: str) -> Raw:
    return Raw(value.encode("utf-8"))


def string(value: str | bytes, *, binary: bool = False, utf8: bool = False) -> bytes:
    """Quoted when safe, else a literal. `utf8`: a quoted string may carry UTF-8 (IMAP4rev2, RFC 9051 §4.3)."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    if binary and b"\x00" in data:
        return b"~{%d}\r\n" % len(data) + data
    if len(data) < 256 and not any(c in b'\r\n"\\\x00' or (c >= 0x80 and not utf8) for c in data):
        return b'"' + data + b'"'
    return b"{%d}\r\n" % len(data) + data


def literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def astring(value: str, *, utf8: bool = False) -> bytes:
    """A mailbox name or similar: an atom when it is one, else a string."""
    data = value.encode("utf-8")
    if data and all(33 <= c < 127 and c not in b'(){ %*"\\]' for c in data):
        return data
    return string(data, utf8=utf8)


def encode(value: Any) -> bytes:
    if value is None:
        return b"NIL"
    if isinstance(value, Raw):
        return bytes(value)
    if isinstance(value, bool):
        raise TypeError("bool is not an IMAP value")
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, str | bytes):
        return string(value)
    if isinstance(value, list | tuple):
        return b"(" + b" ".join(encode(v) for v in value) + b")"
    raise TypeError(f"cannot encode {type(value).__name__}")


def flags(values: Iterable[str]) -> bytes:
    return b"(" + " ".join(values).encode("utf-8") + b")"


def internaldate(when: dt.datetime) -> bytes:
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    off = when.utcoffset() or dt.timedelta(0)
    minutes = int(off.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    text = (
        f'"{when.day:2d}-{MONTHS[when.month - 1]}-{when.year:04d} '
        f'{when.hour:02d}:{when.minute:02d}:{when.second:02d} {sign}{minutes // 60:02d}{minutes % 60:02d}"'
    )
    return text.encode()


def sequence_set(numbers: Sequence[int]) -> str:
    """A compact set (`1:3,7,9:10`) for sorted or unsorted numbers; "" for none."""
    ordered = sorted(set(numbers))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}:{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def ordered_set(numbers: Sequence[int]) -> str:
    """A set in the given order (COPYUID pairs must line up): runs only where numbers ascend by one."""
    parts: list[str] = []
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        parts.append(str(numbers[i]) if i == j else f"{numbers[i]}:{numbers[j]}")
        i = j + 1
    return ",".join(parts)
