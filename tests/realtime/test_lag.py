"""Stage lag buckets (realtime/lag.py): how long after its insert into the log a stage saw an event."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlalchemy.dialects.mysql  # noqa: F401  (core.events uses sa.dialects.mysql without importing it)

from portside.core import events
from portside.core.db import Database
from portside.core.events import EventDraft, Grants
from portside.realtime.bus import LocalBus
from portside.realtime.lag import BOUNDS_MS, Lag, quantile

T0 = dt.datetime(2026, 12, 7, 4, 0, tzinfo=dt.UTC)


def at(ms_before: float) -> str:
    return (T0 - dt.timedelta(milliseconds=ms_before)).isoformat().replace("+00:00", "Z")


def test_lags_fall_into_their_buckets_and_quantiles_read_back() -> None:
    lag = Lag("s")
    now = T0.timestamp()
    for ms in [1] * 60 + [7] * 30 + [300] * 8 + [5000]:
        lag.note(at(ms), now)
    lag.note(at(20).removesuffix("Z"), now)  # naive stamps are UTC
    lag.note("", now)  # no stamp, bad stamp: not counted
    lag.note("yesterday", now)
    stats = lag.stats()
    assert stats == {
        "s_le_5ms": 60,
        "s_le_10ms": 30,
        "s_le_25ms": 1,
        "s_le_50ms": 0,
        "s_le_100ms": 0,
        "s_le_250ms": 0,
        "s_le_500ms": 8,
        "s_le_1000ms": 0,
        f"s_over_{BOUNDS_MS[-1]}ms": 1,
    }
    assert quantile(stats, "s", 0.5) == "<=5"
    assert quantile(stats, "s", 0.9) == "<=10"
    assert quantile(stats, "s", 0.99) == "<=500"
    assert quantile(stats, "s", 1.0) == ">1000"
    assert quantile(stats, "other", 0.5) == ""
    took = Lag("d")  # durations counted directly (the hub's dispatch wall time)
    for ms in (0.2, 30, 30, 120, 2000):
        took.note_ms(ms)
    assert [took.stats()[k] for k in ("d_le_5ms", "d_le_50ms", "d_le_250ms", f"d_over_{BOUNDS_MS[-1]}ms")] == [
        1,
        2,
        1,
        1,
    ]


async def test_the_bus_counts_each_delivered_event_once(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(events.event_metadata.create_all)
        bus = LocalBus(db)
        db.after_commit.append(bus.publish)
        async with bus, bus.subscribe() as sub:
            async with db.transaction() as uow:
                for i in range(3):
                    await uow.emit(EventDraft("todo", "create", f"r{i}", {}, Grants("u1", 7), "u1"))
            assert [(await sub.get(timeout=5)).ref for _ in range(3)] == ["r0", "r1", "r2"]
        assert sum(bus.lag.counts) == 3
        assert sum(bus.lag.counts[:-1]) == 3  # just written: well under a second
    finally:
        await db.dispose()
