"""Sequence sets (`1:4,7,9:*`): parsing and resolving against the numbers that exist."""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass

from portside.imap.wire import ParseError

_PART = re.compile(r"(\d{1,10}|\*)(?::(\d{1,10}|\*))?\Z")
MAX = 2**32 - 1
STAR = -1


@dataclass(frozen=True)
class SeqSet:
    ranges: tuple[tuple[int, int], ...]  # (lo, hi) with STAR for `*`, as written (lo may exceed hi)

    def bounds(self, star: int) -> list[tuple[int, int]]:
        out = []
        for lo, hi in self.ranges:
            a = star if lo == STAR else lo
            b = star if hi == STAR else hi
            out.append((min(a, b), max(a, b)))
        return out

    def contains(self, n: int, star: int) -> bool:
        return any(lo <= n <= hi for lo, hi in self.bounds(star))

    def select(self, numbers: Sequence[int]) -> list[int]:
        """The members of the sorted `numbers` in this set (`*` = the largest number present)."""
        if not numbers:
            return []
        star = numbers[-1]
        picked: set[int] = set()
        for lo, hi in self.bounds(star):
            i = bisect.bisect_left(numbers, lo)
            j = bisect.bisect_right(numbers, hi)
            if j - i == len(numbers):
                return list(numbers)
            picked.update(numbers[i:j])
        return sorted(picked)

    def numbers(self, star: int, limit: int = 100_000) -> list[int]:
        """Every number in the set (for sets given by clients about UIDs they know); ParseError past `limit`."""
        out: set[int] = set()
        for lo, hi in self.bounds(star):
            if hi - lo + len(out) > limit:
                raise ParseError("set too large")
            out.update(range(lo, hi + 1))
        return sorted(out)


def parse(text: str) -> SeqSet:
    if not text:
        raise ParseError("empty sequence set")
    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        m = _PART.match(part)
        if m is None:
            raise ParseError("invalid sequence set")
        lo = _value(m.group(1))
        hi = _value(m.group(2)) if m.group(2) else lo
        ranges.append((lo, hi))
    return SeqSet(tuple(ranges))


def _value(part: str) -> int:
    if part == "*":
        return STAR
    n = int(part)
    if n == 0 or n > MAX:
        raise ParseError("invalid sequence number")
    return n


def is_set(text: str) -> bool:
    return bool(text) and all(_PART.match(p) for p in text.split(","))
