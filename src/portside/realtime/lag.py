"""How long after its insert into the event log a stage saw each event: a few fixed buckets per stage.

`Event.at` is stamped by the writing process inside its transaction (before the commit), so a stage's lag
includes the rest of that transaction and its commit. With several nodes on one machine (the bench) every
node reads the same clock; across machines the lag also carries their clock difference. Counts only grow:
a reader takes two snapshots and subtracts, and the counts of several nodes add up (bench/live.py does both).
"""

from __future__ import annotations

import bisect
import datetime as dt
import time

BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500, 1000)  # bucket i counts lags <= BOUNDS_MS[i]; one more bucket above


_last: tuple[str, float | None] = ("", None)  # the bus and then the hub note the same event: parse it once


def _seconds(at: str) -> float | None:
    """`at` (ISO 8601, naive means UTC) as a POSIX time; None for a missing or bad stamp."""
    global _last
    if at == _last[0]:
        return _last[1]
    if not at:
        return None
    try:
        stamp = dt.datetime.fromisoformat(at)
    except ValueError:
        seconds = None
    else:
        seconds = (stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=dt.UTC)).timestamp()
    _last = (at, seconds)
    return seconds


class Lag:
    __slots__ = ("counts", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts = [0] * (len(BOUNDS_MS) + 1)

    def note(self, at: str, now: float | None = None) -> None:
        """Count one event inserted at `at` (ISO 8601, UTC) and seen now; a missing or bad stamp is skipped."""
        stamp = _seconds(at)
        if stamp is not None:
            self.note_ms(((time.time() if now is None else now) - stamp) * 1000)

    def note_ms(self, ms: float) -> None:
        """Count one duration of `ms` milliseconds."""
        self.counts[bisect.bisect_left(BOUNDS_MS, ms)] += 1

    def stats(self) -> dict[str, int]:
        """`<name>_le_<b>ms` per bucket and `<name>_over_<last>ms`, for /live/stats."""
        out = {f"{self.name}_le_{b}ms": c for b, c in zip(BOUNDS_MS, self.counts, strict=False)}
        out[f"{self.name}_over_{BOUNDS_MS[-1]}ms"] = self.counts[-1]
        return out


def quantile(stats: dict[str, float], name: str, q: float) -> str:
    """The bucket holding quantile q of stage `name` in a /live/stats snapshot or difference: "<=25" (ms),
    ">1000", or "" when the stage counted nothing."""
    counts = [stats.get(f"{name}_le_{b}ms", 0.0) for b in BOUNDS_MS] + [
        stats.get(f"{name}_over_{BOUNDS_MS[-1]}ms", 0.0)
    ]
    total = sum(counts)
    if total <= 0:
        return ""
    seen = 0.0
    for b, c in zip(BOUNDS_MS, counts, strict=False):
        seen += c
        if seen >= q * total:
            return f"<={b}"
    return f">{BOUNDS_MS[-1]}"
