"""The event bus: committed change events fanned out to in-process subscriptions, resumable from the log.

`Database.after_commit` hands every committed unit of work's events to `Bus.publish`. `LocalBus` delivers
them to this process's subscriptions; `RedisBus` (in `redis_bus`) sends them through Redis so that every
process sharing the database and Redis delivers each event exactly once. Either way a `Subscription`
sees the same stream:

* **Resume.** `subscribe(after=N)` registers for live events at once (they buffer), then reads the event
  log after N page by page until caught up, yields that, and then yields the buffer. `after=None` means
  live events only, from now on.
* **Slow consumers.** A subscription's live buffer is bounded (`max_queue`) and publishing never waits
  for it. On overflow the buffer is dropped and the subscription refills from the event log from just
  below the oldest dropped event, so nothing is lost while it is still in the log. If what it needs has
  been trimmed out of the log, iteration raises `Lagged` and the subscription closes; the consumer must
  resynchronise and subscribe again.
* **Per-row order, exactly once.** Offsets are assigned when the event is inserted, inside the writing
  transaction. Two writers of the same row are serialised by the row lock, so their offsets follow
  commit order, but they may be *published* out of order (two processes, two Redis connections). Each
  subscription therefore remembers, per (table, ref), the highest offset it has yielded, in an LRU of
  `Bus.row_memory` rows, and drops an event whose offset is not above it: the event is either
  superseded by a newer state of the row already delivered, or a duplicate. The same rule removes the
  overlap between a log replay and the live buffer.

A subscription serves one consumer task. Subscriptions are meant for in-process services (the live hub,
feeds, caches), not one per client socket: each holds up to `max_queue` events and `row_memory` keys.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import sqlalchemy as sa

from portside import log
from portside.core import events as ev
from portside.core.db import Database
from portside.core.events import Event
from portside.realtime.lag import Lag

logger = log.get("bus")


class Lagged(Exception):
    """The events a subscription needs are no longer in the event log: resynchronise and subscribe again."""

    def __init__(self, after: int, oldest: int | None) -> None:
        super().__init__(f"events after offset {after} are no longer in the event log (oldest: {oldest})")
        self.after = after
        self.oldest = oldest


class SubscriptionClosed(Exception):
    """`get()` on a subscription that was closed, by its owner or because the bus stopped."""


class Subscription:
    """One consumer's view of the event stream: ordered per row, no gaps, no duplicates.

    Use as `async with bus.subscribe(after=n) as sub: async for event in sub: ...`. Iteration ends when
    the subscription or the bus is closed; `get(timeout)` raises `TimeoutError` when nothing arrives in
    time and `SubscriptionClosed` once closed. `last_offset` is the offset of the last event yielded (before
    the first one: the resume offset, or the log head at subscribe time).
    """

    def __init__(self, bus: Bus, after: int | None, max_queue: int) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        if after is not None:
            after = max(after, 0)
        self._bus = bus
        self._max_queue = max_queue
        self._buffer: deque[Event] = deque()  # live events, bounded by max_queue
        self._pending: deque[Event] = deque()  # one page read from the log, in offset order
        self._rows: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._wakeup = asyncio.Event()
        self._epoch = 0  # bumped whenever the refill plan changes under an in-flight log read
        self._closed = False
        self._error: Lagged | None = None
        # the log must be read after _refill_from; events up to _need may be gone, later ones must not be
        self._refill_from: int | None = after
        self._need: int | None = after
        # offsets at or below _floor are never yielded; _origin is the earliest point a refill may rewind to
        self._floor = -1 if after is None else after
        self._origin = bus.head if after is None else after
        self.last_offset = self._origin
        self.overflows = 0

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop receiving; a consumer waiting in `get()` gets `SubscriptionClosed`."""
        if self._closed:
            return
        self._closed = True
        self._bus._subs.discard(self)
        self._buffer.clear()
        self._pending.clear()
        self._rows.clear()
        self._wakeup.set()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.get()
        except SubscriptionClosed:
            raise StopAsyncIteration from None

    async def get(self, timeout: float | None = None) -> Event:
        """The next event; raises `TimeoutError`, `Lagged` or `SubscriptionClosed`."""
        if timeout is None:  # every consumer's `async for`: no timeout context per event
            return await self._next()
        async with asyncio.timeout(timeout):
            return await self._next()

    async def _next(self) -> Event:
        while True:
            if self._error is not None:
                raise self._error
            if self._closed:
                raise SubscriptionClosed()
            if self._pending:
                event = self._pending.popleft()
            elif self._refill_from is not None:
                await self._refill(self._refill_from)
                continue
            elif self._buffer:
                event = self._buffer.popleft()
            else:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self._accept(event):
                return event

    # -- called by the bus (synchronously, never blocking) -------------------------------------------

    def _push(self, event: Event) -> None:
        if self._closed or event.offset <= self._floor:
            return
        if len(self._buffer) >= self._max_queue:
            lowest = min(event.offset, min(e.offset for e in self._buffer))
            self._buffer.clear()
            self.overflows += 1
            logger.log(
                logging.WARNING if self.overflows == 1 else logging.DEBUG,
                "subscription overflowed %d times (max_queue %d); refilling from the event log",
                self.overflows,
                self._max_queue,
            )
            self._plan_refill(lowest - 1, need=lowest - 1)
            return
        self._buffer.append(event)
        self._wakeup.set()

    def _resync(self, rewind_to: int, need: int) -> None:
        """Events may have been missed: re-read the log from `rewind_to` (not before this subscription's
        origin) or below anything still queued, so the refill yields in offset order."""
        if self._closed:
            return
        start = max(rewind_to, self._origin)
        if self._buffer:
            start = min(start, min(e.offset for e in self._buffer) - 1)
        if self._pending:
            start = min(start, self._pending[0].offset - 1)
        self._buffer.clear()
        self._pending.clear()
        self._plan_refill(start, need)

    def _plan_refill(self, start: int, need: int) -> None:
        start, need = max(start, self._floor), max(need, self._floor)
        self._refill_from = start if self._refill_from is None else min(self._refill_from, start)
        self._need = need if self._need is None else min(self._need, need)
        self._epoch += 1
        self._wakeup.set()

    # -- consumer side ---------------------------------------------------------------------------------

    async def _refill(self, start: int) -> None:
        epoch, need, limit = self._epoch, self._need, self._bus.page_size
        oldest: int | None = None
        newest: int | None = None
        async with self._bus.db.read() as conn:
            if need is not None:
                row = (await conn.execute(sa.select(sa.func.min(_OFFSET), sa.func.max(_OFFSET)))).one()
                oldest, newest = _int_or_none(row[0]), _int_or_none(row[1])
            page = await ev.read_since(conn, start, limit)
        if epoch != self._epoch or self._closed:
            return  # the plan changed while we read: start over from the new plan
        if need is not None:
            self._need = None
            if _missing(need, oldest, newest):
                self._error = Lagged(need, oldest)
                self.close()
                raise self._error
        self._pending.extend(page)
        self._refill_from = page[-1].offset if len(page) >= limit else None

    def _accept(self, event: Event) -> bool:
        key = (event.table, event.ref)
        seen = self._rows.get(key)
        if seen is not None and event.offset <= seen:
            return False  # superseded by a newer state of the row already yielded, or a duplicate
        self._rows[key] = event.offset
        self._rows.move_to_end(key)
        if len(self._rows) > self._bus.row_memory:
            self._rows.popitem(last=False)
        self.last_offset = event.offset
        return True


_OFFSET = ev.event_log.c.offset


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _missing(need: int, oldest: int | None, newest: int | None) -> bool:
    """Whether events after `need` that once existed are gone: trimmed away (the oldest kept event is past
    need + 1) or the log was reset behind the consumer (need is past the newest event)."""
    if oldest is None or newest is None:
        return need > 0
    return oldest > need + 1 or need > newest


class Bus:
    """Base bus: owns the in-process subscriptions and the fan-out to them; subclasses move events.

    A long-running service: `start()`/`stop()` (both idempotent) or `async with bus:`; `started` is set
    while it runs. Stopping closes every subscription.
    """

    row_memory = 100_000  # per subscription: rows whose last yielded offset is remembered
    page_size = 500  # events per event-log read while refilling

    def __init__(self, db: Database) -> None:
        self.db = db
        self.started = asyncio.Event()
        self._subs: set[Subscription] = set()
        self._high = 0  # highest offset this process has seen published
        self.lag = Lag("bus_lag")  # insert into the log -> handed to this process's subscriptions (live only)
        self._lifecycle = asyncio.Lock()

    @property
    def head(self) -> int:
        """The highest event offset this bus has seen (from the log at start, then from publishes)."""
        return self._high

    async def start(self) -> None:
        async with self._lifecycle:
            if not self.started.is_set():
                await self._open()
                self.started.set()

    async def stop(self) -> None:
        async with self._lifecycle:
            if self.started.is_set():
                self.started.clear()
                try:
                    await self._close()
                finally:
                    for sub in list(self._subs):
                        sub.close()

    async def __aenter__(self) -> Bus:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def publish(self, events: list[Event]) -> None:
        """Hand committed events on (registered as a `Database.after_commit` hook)."""
        raise NotImplementedError

    def backlog(self) -> tuple[int, int]:
        """(events waiting in this process's subscriptions, overflows so far), for the metrics."""
        subs = list(self._subs)
        return sum(len(s._buffer) + len(s._pending) for s in subs), sum(s.overflows for s in subs)

    def subscribe(self, after: int | None = None, *, max_queue: int = 10000) -> Subscription:
        """Register for events now; with `after`, replay the log after that offset first."""
        sub = Subscription(self, after, max_queue)
        self._subs.add(sub)
        return sub

    async def _open(self) -> None:
        async with self.db.read() as conn:
            self._high = max(self._high, await ev.latest_offset(conn))

    async def _close(self) -> None:
        pass

    def _deliver(self, events: list[Event]) -> None:
        now = time.time()
        for event in events:
            self.lag.note(event.at, now)
            self._high = max(self._high, event.offset)
            for sub in list(self._subs):
                sub._push(event)

    def _resync_all(self, rewind_to: int, need: int) -> None:
        for sub in list(self._subs):
            sub._resync(rewind_to, need)


class LocalBus(Bus):
    """A single-process bus: `publish` fans events out to this process's subscriptions directly."""

    async def publish(self, events: list[Event]) -> None:
        self._deliver(events)


def make_bus(db: Database, redis_url: str, channel: str = "portside:events") -> Bus:
    """`LocalBus` when `redis_url` is empty, else a `RedisBus` on `channel`."""
    if not redis_url:
        return LocalBus(db)
    from portside.realtime.redis_bus import RedisBus

    return RedisBus(db, redis_url, channel)
