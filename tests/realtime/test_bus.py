"""Event bus against real services: SQLite/PostgreSQL event logs and the local Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import sqlalchemy.dialects.mysql  # core.events uses sa.dialects.mysql without importing it
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from portside.core import events
from portside.core.db import Database
from portside.core.events import Event, EventDraft, Grants
from portside.realtime.bus import Bus, Lagged, LocalBus, Subscription, SubscriptionClosed, make_bus
from portside.realtime.redis_bus import RedisBus
from portside.tools import jsonutil

REDIS_URL = "redis://127.0.0.1:6379/0"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
WAIT = 10.0  # upper bound for anything that should arrive
QUIET = 0.3  # how long "nothing more arrives" is watched


# -- helpers -------------------------------------------------------------------------------------------


def draft(ref: str, n: int = 0, table: str = "todo") -> EventDraft:
    return EventDraft(table, "update", ref, {"n": n, "ref": ref}, Grants("u1", 7, (("g1", 3),)), "u1")


async def write(db: Database, *drafts: EventDraft) -> list[Event]:
    async with db.transaction() as uow:
        return [await uow.emit(d) for d in drafts]


async def write_each(db: Database, refs: list[str]) -> list[Event]:
    """One transaction per event."""
    return [(await write(db, draft(ref, n=i)))[0] for i, ref in enumerate(refs)]


async def take(sub: Subscription, n: int) -> list[Event]:
    return [await sub.get(timeout=WAIT) for _ in range(n)]


async def assert_quiet(sub: Subscription) -> None:
    """Nothing arrives for QUIET seconds: only where no marker can follow (e.g. Redis is down)."""
    with pytest.raises(TimeoutError):
        await sub.get(timeout=QUIET)


async def assert_no_more(db: Database, *subs: Subscription) -> Event:
    """Nothing more is delivered: a marker event written now is the next thing each subscription gets (events
    arrive in log order), instead of waiting for silence. Returns the marker."""
    [marker] = await write(db, draft("marker"))
    for sub in subs:
        assert (await sub.get(timeout=WAIT)).offset == marker.offset
    return marker


def offsets(evs: list[Event]) -> list[int]:
    return [e.offset for e in evs]


async def eventually(cond: Callable[[], bool]) -> None:
    for _ in range(int(WAIT / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


async def pubsub_connections(redis: Redis[bytes], name: str) -> list[dict[str, Any]]:
    return [c for c in await redis.client_list(_type="pubsub") if c.get("name") == name]


async def subscribers(redis: Redis[bytes], channel: str) -> int:
    [(_, count)] = await redis.pubsub_numsub(channel)
    return int(count)


async def create_log(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.run_sync(events.event_metadata.create_all)


def wire(db: Database, bus: Bus) -> Bus:
    db.after_commit.append(bus.publish)
    return bus


# -- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/t.db"


@pytest.fixture
async def db(sqlite_url: str) -> AsyncIterator[Database]:
    database = Database(sqlite_url)
    await create_log(database)
    yield database
    await database.dispose()


@pytest.fixture
def channel() -> str:
    return f"portside-test:{uuid.uuid4().hex}"


@pytest.fixture
async def redis() -> AsyncIterator[Redis[bytes]]:
    client: Redis[bytes] = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()  # type: ignore[attr-defined]


# -- local bus -----------------------------------------------------------------------------------------


async def test_local_publish_delivers_in_order_exactly_once(db: Database) -> None:
    bus = wire(db, LocalBus(db))
    async with bus, bus.subscribe() as one, bus.subscribe() as two:
        written = await write_each(db, ["a", "b", "same", "same", "c", "same"])
        written += await write(db, draft("x"), draft("y"), draft("same", n=99))
        for sub in (one, two):
            got = await take(sub, len(written))
            assert offsets(got) == offsets(written)
            assert [e.to_json() for e in got] == [e.to_json() for e in written]
            assert sub.last_offset == written[-1].offset
        await assert_no_more(db, one, two)
    assert offsets(written) == sorted(offsets(written))


async def test_rolled_back_transaction_delivers_nothing(db: Database) -> None:
    bus = wire(db, LocalBus(db))
    async with bus, bus.subscribe() as sub:
        with pytest.raises(RuntimeError):
            async with db.transaction() as uow:
                await uow.emit(draft("ghost"))
                raise RuntimeError("boom")
        [good] = await write(db, draft("real"))  # the next delivery is this one: nothing of the ghost before it
        assert (await sub.get(timeout=WAIT)).offset == good.offset
        await assert_no_more(db, sub)
        async with bus.subscribe(after=0) as replay:  # the log has no trace of it either
            assert [e.ref for e in await take(replay, 2)] == ["real", "marker"]
            await assert_no_more(db, replay)


async def test_resume_replays_the_log_then_continues_live(db: Database) -> None:
    bus = wire(db, LocalBus(db))
    bus.page_size = 2  # several pages
    async with bus:
        before = await write_each(db, [f"r{i}" for i in range(7)] + ["same", "same"])
        sub = bus.subscribe(after=before[1].offset)
        # committed after subscribing, before reading: both buffered live and in the log
        during = await write_each(db, ["r2", "late", "same"])
        got = await take(sub, len(before) - 2 + len(during))
        assert offsets(got) == offsets(before[2:] + during)
        after = await write_each(db, ["r3", "new"])
        assert offsets(await take(sub, 2)) == offsets(after)
        marker = await assert_no_more(db, sub)
        sub.close()
        # resuming at the head yields only what comes next (the next write is the next delivery)
        async with bus.subscribe(after=marker.offset) as tail:
            [nxt] = await write(db, draft("next"))
            assert offsets(await take(tail, 1)) == [nxt.offset]


async def test_live_subscription_starts_now(db: Database) -> None:
    bus = wire(db, LocalBus(db))
    await write_each(db, ["old1", "old2"])
    async with bus, bus.subscribe() as sub:
        assert sub.last_offset == bus.head == 2
        [new] = await write(db, draft("new"))  # the first delivery: nothing older came before it
        assert offsets(await take(sub, 1)) == [new.offset]


async def test_overflow_refills_from_the_log(db: Database) -> None:
    bus = wire(db, LocalBus(db))
    bus.page_size = 3
    async with bus, bus.subscribe(max_queue=2) as sub:
        written = await write_each(db, [f"r{i % 4}" for i in range(20)])
        assert sub.overflows > 0
        got = await take(sub, 5)
        written += await write_each(db, [f"r{i % 3}" for i in range(10)])  # overflow again mid-way
        got += await take(sub, len(written) - 5)
        assert offsets(got) == offsets(written)
        await assert_no_more(db, sub)


async def test_trimmed_log_raises_lagged(db: Database) -> None:
    bus = wire(db, LocalBus(db))
    async with bus:
        slow = bus.subscribe(max_queue=2)
        written = await write_each(db, [f"r{i}" for i in range(10)])
        async with db.transaction() as uow:
            assert await events.trim(uow.conn, keep=3) == 7
        with pytest.raises(Lagged) as info:
            await slow.get(timeout=WAIT)
        assert info.value.oldest == written[-3].offset
        assert slow.closed
        with pytest.raises(Lagged):  # it stays failed
            await slow.get(timeout=WAIT)
        with pytest.raises(Lagged):  # resuming from a trimmed offset
            await bus.subscribe(after=written[2].offset).get(timeout=WAIT)
        with pytest.raises(Lagged):  # resuming from beyond the log (it was reset)
            await bus.subscribe(after=written[-1].offset + 50).get(timeout=WAIT)
        async with bus.subscribe(after=written[-4].offset) as ok:  # everything it needs is kept
            assert offsets(await take(ok, 3)) == offsets(written[-3:])


async def test_out_of_order_publish_per_row_is_dropped(db: Database) -> None:
    bus = LocalBus(db)

    def event(offset: int, ref: str, table: str = "todo") -> Event:
        return Event(offset, table, "update", ref, {"v": offset}, Grants(None, 0), None)

    async with bus, bus.subscribe() as sub:
        await bus.publish([event(10, "a")])
        await bus.publish([event(7, "a"), event(8, "b"), event(9, "a", table="other"), event(10, "a")])
        await bus.publish([event(12, "a"), event(11, "a"), event(8, "b")])
        got = await take(sub, 4)
        assert [(e.offset, e.table, e.ref) for e in got] == [
            (10, "todo", "a"),
            (8, "todo", "b"),
            (9, "other", "a"),
            (12, "todo", "a"),
        ]
        await assert_quiet(sub)


async def test_lifecycle_is_idempotent_and_stop_ends_iteration(db: Database, channel: str) -> None:
    redis_bus = RedisBus(db, REDIS_URL, channel)
    for bus in (LocalBus(db), redis_bus):
        await bus.start()
        await bus.start()
        assert bus.started.is_set()
        sub = bus.subscribe()

        async def drain(s: Subscription = sub) -> list[Event]:
            return [e async for e in s]

        consumer = asyncio.create_task(drain())
        await asyncio.sleep(0.05)
        await bus.stop()
        await bus.stop()
        assert not bus.started.is_set()
        assert await asyncio.wait_for(consumer, WAIT) == []
        with pytest.raises(SubscriptionClosed):
            await sub.get(timeout=WAIT)
    assert not redis_bus.connected


async def test_make_bus(db: Database) -> None:
    assert type(make_bus(db, "")) is LocalBus
    bus = make_bus(db, REDIS_URL, "chan")
    assert isinstance(bus, RedisBus) and bus.channel == "chan" and bus.url == REDIS_URL


# -- Redis bus -----------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
async def shared_url(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[str]:
    """One database that two 'processes' (two Database objects) share."""
    url = sqlite_url if request.param == "sqlite" else PG_URL
    setup = Database(url)
    await create_log(setup)
    async with setup.read() as conn:
        start = await events.latest_offset(conn)
    yield url
    if request.param == "postgresql":  # remove what this test wrote
        async with setup.engine.begin() as conn:
            await conn.execute(sa.delete(events.event_log).where(events.event_log.c.offset > start))
    await setup.dispose()


async def test_two_redis_buses_deliver_each_event_once_per_subscriber(
    shared_url: str, channel: str, redis: Redis[bytes]
) -> None:
    db_a, db_b = Database(shared_url), Database(shared_url)
    bus_a = wire(db_a, RedisBus(db_a, REDIS_URL, channel))
    bus_b = wire(db_b, RedisBus(db_b, REDIS_URL, channel))
    try:
        async with bus_a, bus_b, bus_a.subscribe() as a1, bus_a.subscribe() as a2, bus_b.subscribe() as b1:
            assert isinstance(bus_a, RedisBus) and isinstance(bus_b, RedisBus)
            # one pub/sub connection per process, however many subscriptions
            assert await subscribers(redis, channel) == 2
            assert len(await pubsub_connections(redis, bus_a.client_name)) == 1
            written = await write(db_a, draft("r1"))
            written += await write(db_b, draft("r2"), draft("r1", n=1))
            for sub in (a1, a2, b1):
                got = await take(sub, 3)
                assert [e.to_json() for e in got] == [e.to_json() for e in written]
            for sub in (a1, a2, b1):
                await assert_quiet(sub)
        for bus in (bus_a, bus_b):  # stopped: no connection of either bus is left
            assert not [c for c in await redis.client_list() if c["name"].startswith(bus.client_name)]
    finally:
        await db_a.dispose()
        await db_b.dispose()


async def test_malformed_messages_are_skipped(db: Database, channel: str, redis: Redis[bytes]) -> None:
    bus = wire(db, RedisBus(db, REDIS_URL, channel))
    assert isinstance(bus, RedisBus)
    async with bus, bus.subscribe() as sub:
        junk = [
            b"not json",
            b"\xff\xfe\x00",
            b"[1, 2, 3]",
            b'"a string"',
            b'{"offset": "x"}',
            b'{"no": "fields"}',
            b'{"offset": 1, "table": "t", "type": "create", "ref": "r", "grants": [1]}',
            b"[" * 5000 + b"]" * 5000,
        ]
        for message in junk:
            await redis.publish(channel, message)
        [good] = await write(db, draft("good"))
        assert offsets(await take(sub, 1)) == [good.offset]
        await assert_quiet(sub)
        assert bus.connected and bus.reconnects == 0


async def test_redis_reconnect_fills_the_gap_from_the_log(db: Database, channel: str, redis: Redis[bytes]) -> None:
    bus = wire(db, RedisBus(db, REDIS_URL, channel))
    assert isinstance(bus, RedisBus)
    bus.reconnect_delay = 2.0  # keep the outage open long enough to write into it
    bus.gap_rewind = 0  # the refill must start below what is still queued, not only at the last seen
    async with bus, bus.subscribe() as sub, bus.subscribe(max_queue=1) as small:
        before = await write(db, draft("before"))
        assert offsets(await take(sub, 1)) == offsets(before)
        # kill only this bus's subscription connection (other test runs may share the server)
        [conn] = await pubsub_connections(redis, bus.client_name)
        await redis.client_kill_filter(_id=conn["id"])
        await eventually(lambda: not bus.connected)
        during = await write(db, draft("during"), draft("before", n=1))
        assert await subscribers(redis, channel) == 0  # nobody heard it
        await assert_quiet(sub)  # not delivered locally behind Redis's back
        assert not bus.connected
        assert offsets(await take(sub, 2)) == offsets(during)
        await eventually(lambda: bus.connected)  # the gap fill may deliver before the flag flips
        assert bus.reconnects == 1
        after = await write(db, draft("after"))
        assert offsets(await take(sub, 1)) == offsets(after)
        assert offsets(await take(small, 4)) == offsets(before + during + after)
        for s in (sub, small):
            await assert_quiet(s)


async def test_failed_publish_catches_up_locally_from_the_log(
    db: Database, channel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = wire(db, RedisBus(db, REDIS_URL, channel))
    assert isinstance(bus, RedisBus)
    async with bus, bus.subscribe() as sub:
        first = await write(db, draft("a"))
        assert offsets(await take(sub, 1)) == offsets(first)

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RedisConnectionError("simulated outage")

        monkeypatch.setattr(bus._pub, "pipeline", broken)
        lost = await write(db, draft("b"), draft("a", n=1))
        monkeypatch.undo()
        assert offsets(await take(sub, 2)) == offsets(lost)
        later = await write(db, draft("c"))
        assert offsets(await take(sub, 1)) == offsets(later)
        await assert_quiet(sub)


class CountingBus(RedisBus):
    """Counts the hand-offs from the Redis reader to the subscriptions."""

    handoffs = 0

    def _deliver(self, events: list[Event]) -> None:
        self.handoffs += 1
        super()._deliver(events)


async def test_a_burst_of_published_events_is_delivered_in_few_reads(
    db: Database, channel: str, redis: Redis[bytes]
) -> None:
    """Events that reach the socket together are parsed and handed on together (not one read call each), in
    publish order, once; a message for the channel split over several reads is joined, not lost."""
    bus = CountingBus(db, REDIS_URL, channel)
    n = 500
    burst = [
        Event(10_000 + i, "todo", "create", f"r{i}", {"n": i, "pad": "x" * 300}, Grants("u1", 7), "u1")
        for i in range(n)
    ]
    async with bus, bus.subscribe() as sub:
        async with redis.pipeline(transaction=False) as pipe:
            for event in burst:
                pipe.publish(channel, jsonutil.dumps(event.to_json()))
            await pipe.execute()
        got = await take(sub, n)
        assert [e.to_json() for e in got] == [e.to_json() for e in burst]
        assert bus.handoffs <= n // 10, bus.handoffs  # ~600 bytes each: a few reads for the whole burst
        assert bus.wakeups == bus.handoffs
        big = Event(20_000, "todo", "create", "big", {"blob": "y" * 3_000_000}, Grants("u1", 7), "u1")
        await redis.publish(channel, jsonutil.dumps(big.to_json()))
        assert (await sub.get(timeout=WAIT)).to_json() == big.to_json()
        await assert_quiet(sub)
        assert bus.connected and bus.reconnects == 0


async def test_subscription_answers_pings_and_refuses_bad_credentials(db: Database, channel: str) -> None:
    bus = RedisBus(db, REDIS_URL, channel)
    bus.ping_interval = 0.05
    async with bus, bus.subscribe() as sub:
        await asyncio.sleep(0.5)  # silent channel: pings go out, pongs keep the link up
        assert bus.connected and bus.reconnects == 0
        wire(db, bus)
        [ev] = await write(db, draft("after-pings"))
        assert offsets(await take(sub, 1)) == [ev.offset]
    wrong = RedisBus(db, "redis://nobody:s3cret-pw@127.0.0.1:6379/0", channel)
    with pytest.raises(RedisError) as info:
        await wrong.start()
    assert "s3cret-pw" not in str(info.value)
    assert not wrong.started.is_set() and not wrong.connected
