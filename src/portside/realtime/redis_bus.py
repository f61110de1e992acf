"""Redis pub/sub bus: every process sharing the database and Redis delivers each event exactly once.

`publish` sends each committed event as one JSON message (`Event.to_json()`) to the channel and does not
deliver it locally: the writing process receives its own message back through its single Redis
subscription, like every other process, and fans it out in-process to all its subscriptions. The
subscription is read by `redis_sub.Subscriber` (not redis-py's PubSub): every message that arrived in one
read of the socket is parsed and handed to the subscriptions in one `_deliver`, so a burst of commits costs
one wake-up rather than one `get_message` call each.

Pub/sub is at-most-once, so the event log covers its gaps. If the subscription connection drops (or
stays silent past its pings), the reader reconnects with exponential backoff and, once subscribed again,
has every subscription re-read the event log from just before the highest offset seen (`gap_rewind`
offsets back, to catch writes that committed late); the per-row guard in `bus` removes what was already
delivered. If publishing fails, this process's subscriptions catch up from the log the same way; and every
second each process sweeps the recent log for committed events it never received (a writer that died
between its commit and its publish), so no committed event is lost for the other nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import uuid
from collections import OrderedDict

import sqlalchemy as sa
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from portside import log
from portside.core import events as ev
from portside.core.db import Database
from portside.core.events import Event
from portside.realtime.bus import Bus
from portside.realtime.redis_sub import Subscriber
from portside.tools import jsonutil

logger = log.get("bus.redis")

_NETWORK_ERRORS = (RedisError, OSError, TimeoutError)


class RedisBus(Bus):
    """A bus shared by all processes through one Redis pub/sub channel (one connection per process)."""

    reconnect_delay = 0.1  # first backoff after losing the subscription; doubles up to the maximum
    reconnect_max_delay = 5.0
    ping_interval = 5.0  # seconds of silence before pinging; three silent intervals mean a dead link
    connect_timeout = 5.0
    gap_rewind = 1000  # after a reconnect, re-read this many offsets below the highest seen
    sweep_interval = 1.0  # seconds between looks at the log for events whose publish never came
    sweep_window = 1000  # offsets below the highest seen that a sweep looks at
    sweep_grace = 1.0  # seconds an event may be in flight (committed, not yet published) before a sweep takes it

    def __init__(self, db: Database, url: str, channel: str = "portside:events") -> None:
        super().__init__(db)
        self.url = url
        self.channel = channel
        # names this bus's connections in CLIENT LIST (the publisher's get a "-pub" suffix)
        self.client_name = f"portside-bus-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.reconnects = 0
        self.wakeups = 0  # reads from the subscription that delivered messages (one per burst)
        self._connected = False
        self._pub: Redis[bytes] | None = None
        self._task: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._seen: OrderedDict[int, None] = OrderedDict()  # offsets delivered here, newest last
        self._floor = 0  # events at or below this existed before the bus started

    @property
    def connected(self) -> bool:
        """Whether the Redis subscription is currently up."""
        return self._connected

    async def publish(self, events: list[Event]) -> None:
        if not events:
            return
        if self._pub is None:
            logger.warning("bus not started: %d events not published", len(events))
            return
        try:
            async with self._pub.pipeline(transaction=False) as pipe:
                for event in events:
                    pipe.publish(self.channel, jsonutil.dumps(event.to_json()))
                await pipe.execute()
        except _NETWORK_ERRORS as exc:
            first = min(e.offset for e in events)
            logger.error("could not publish events from offset %d: %s; catching up from the log", first, exc)
            self._resync_all(first - 1, need=first - 1)

    async def _open(self) -> None:
        timeout = self.connect_timeout
        self._pub = Redis.from_url(
            self.url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
            client_name=f"{self.client_name}-pub",
        )
        try:
            sub = await self._subscribe()
            try:
                await super()._open()
            except BaseException:
                await sub.close()
                raise
        except BaseException:
            await self._close_clients()
            raise
        self._connected = True
        self._floor = self._high
        self._task = asyncio.create_task(self._run(sub), name=f"bus-reader:{self.channel}")
        self._sweeper = asyncio.create_task(self._sweep_forever(), name=f"bus-sweeper:{self.channel}")

    async def _close(self) -> None:
        for task in (self._task, self._sweeper):
            if task is not None:
                task.cancel()
                await asyncio.wait([task], timeout=5)  # never hang a shutdown on a stuck task
        self._task = self._sweeper = None
        self._connected = False
        await self._close_clients()

    async def _close_clients(self) -> None:
        if self._pub is not None:
            with contextlib.suppress(*_NETWORK_ERRORS):
                await self._pub.aclose()  # type: ignore[attr-defined]
        self._pub = None

    def _deliver(self, events: list[Event]) -> None:
        for event in events:
            self._seen[event.offset] = None
        while len(self._seen) > 4 * self.sweep_window:
            self._seen.popitem(last=False)
        super()._deliver(events)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("event log sweep failed")

    async def sweep(self) -> int:
        """Deliver committed events whose publish never arrived (e.g. the writing node died right after its
        commit). Reads only offsets, then the few missing events; the per-row guard drops late duplicates."""
        low = max(self._floor, self._high - self.sweep_window)
        cutoff = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(seconds=self.sweep_grace)
        log = ev.event_log
        async with self.db.read() as conn:
            rows = await conn.execute(sa.select(log.c.offset).where(log.c.offset > low, log.c.created_at <= cutoff))
            missing = [int(o) for (o,) in rows if int(o) not in self._seen]
            if not missing:
                return 0
            found = await conn.execute(sa.select(log).where(log.c.offset.in_(missing[:500])).order_by(log.c.offset))
            events = [Event.from_row(r) for r in found]
        if events:
            logger.warning(
                "delivering %d events whose publish never arrived (from offset %d)", len(events), events[0].offset
            )
            self._deliver(events)
        return len(events)

    async def _subscribe(self) -> Subscriber:
        """A pub/sub connection whose subscription the server has confirmed (from then on nothing published
        can be missed). No transparent retries: a dropped subscription must surface so that the gap is filled."""
        return await Subscriber.connect(self.url, self.channel, self.client_name, self.connect_timeout)

    async def _run(self, sub: Subscriber | None) -> None:
        delay = self.reconnect_delay
        while True:
            if sub is None:
                await asyncio.sleep(delay)
                try:
                    sub = await self._subscribe()
                except _NETWORK_ERRORS as exc:
                    delay = min(delay * 2, self.reconnect_max_delay)
                    logger.warning("Redis reconnect failed (%s); retrying in %.1fs", exc, delay)
                    continue
                self.reconnects += 1
                self._connected = True
                delay = self.reconnect_delay
                logger.info("Redis subscription restored; filling the gap from the event log")
                self._resync_all(self._high - self.gap_rewind, need=self._high)
            try:
                await self._listen(sub)
            except _NETWORK_ERRORS as exc:
                logger.warning("lost the Redis subscription (%s); reconnecting", exc)
            except Exception:
                logger.exception("Redis reader failed; reconnecting")
            finally:
                self._connected = False
                await sub.close()
                sub = None

    async def _listen(self, sub: Subscriber) -> None:
        """Deliver every message of each read together; ping after `ping_interval` of silence."""
        loop = asyncio.get_running_loop()
        last_heard = last_ping = loop.time()
        while True:
            try:
                async with asyncio.timeout(self.ping_interval):
                    payloads: list[bytes] | None = await sub.read()
            except TimeoutError:
                payloads = None
            now = loop.time()
            if payloads is not None:
                last_heard = now
                if payloads:
                    self.wakeups += 1
                    self._on_messages(payloads)
            elif now - last_heard > 3 * self.ping_interval:
                raise RedisConnectionError("no reply from Redis")
            if now - last_ping >= self.ping_interval:
                last_ping = now
                await sub.ping()

    def _on_messages(self, payloads: list[bytes]) -> None:
        events = []
        for data in payloads:
            try:
                raw = jsonutil.loads(data, max_depth=1000)
                if not isinstance(raw, dict):
                    raise ValueError("not a JSON object")
                events.append(Event.from_json(raw))
            except Exception as exc:
                logger.warning("skipping malformed message on %r: %.200s", self.channel, exc)
        if events:
            self._deliver(events)
