"""Group commit on a real SQLite file (core/db.py + core/group_commit.py): concurrent units of work share
commits, a failing one fails alone, each returns only once its write is committed and published."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from pathlib import Path
from typing import cast

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from portside.core import events as ev
from portside.core.db import Database
from portside.core.loopsql import LoopConnection

meta = sa.MetaData()
thing = sa.Table(
    "thing", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(50), unique=True)
)


async def _database(tmp_path: Path) -> tuple[Database, Path]:
    path = tmp_path / "g.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    async with db.ddl_lock() as conn:
        await conn.run_sync(meta.create_all)
        await conn.run_sync(ev.event_metadata.create_all)
    return db, path


def _committed(path: Path, name: str) -> bool:
    with sqlite3.connect(path) as other:  # another connection sees only committed data
        return other.execute("SELECT count(*) FROM thing WHERE name = ?", (name,)).fetchone()[0] == 1


def _draft(name: str) -> ev.EventDraft:
    return ev.EventDraft("thing", "create", name, {"name": name}, ev.Grants(None, 0), None)


async def test_concurrent_units_share_commits_and_fail_alone(tmp_path: Path) -> None:
    db, path = await _database(tmp_path)
    published: list[str] = []

    async def hook(events: list[ev.Event]) -> None:
        published.extend(e.ref for e in events)

    db.after_commit.append(hook)
    async with db.transaction() as uow:
        await uow.conn.execute(thing.insert().values(name="taken"))
    assert db.group is not None and db.group.commits == 1

    async def write(name: str) -> int:
        async with db.transaction() as uow:
            result = await uow.conn.execute(thing.insert().values(name=name))
            await uow.emit(_draft(name))
            await asyncio.sleep(0)  # let the others queue up behind this turn
        # returned: committed (another connection sees it) and published
        assert _committed(path, name) and name in published
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    names = [f"n{i}" for i in range(50)]
    names[17] = "taken"
    results = await asyncio.gather(*(write(n) for n in names), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1 and isinstance(failed[0], IntegrityError), failed
    assert isinstance(results[17], IntegrityError)
    ids = [r for r in results if isinstance(r, int)]
    assert len(set(ids)) == 49
    assert sorted(published) == sorted(n for n in names if n != "taken")  # the failed unit published nothing
    assert db.group.units == 50  # the first write plus 49
    assert db.group.commits < 1 + 49 // 2, db.group.commits  # shared commits, not one per unit
    with sqlite3.connect(path) as other:
        assert other.execute("SELECT count(*) FROM thing").fetchone()[0] == 50
        assert other.execute("SELECT count(*) FROM _event_log").fetchone()[0] == 49
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    await db.dispose()


async def test_a_lone_writer_commits_at_once_and_exclusive_turns_flush(tmp_path: Path) -> None:
    db, path = await _database(tmp_path)
    async with db.transaction() as uow:
        await uow.conn.execute(thing.insert().values(name="alone"))
    assert _committed(path, "alone")  # no timer, no waiting for company
    async with db.engine.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 2  # FULL: durable commits

    async def slow(name: str) -> None:
        async with db.transaction() as uow:
            await uow.conn.execute(thing.insert().values(name=name))
            await asyncio.sleep(0.01)

    async def turn() -> bool:
        async with db.write_turn():  # e.g. the Yjs store's own connection: must find no open batch
            return _committed(path, "a") and _committed(path, "b")

    first = asyncio.gather(slow("a"), slow("b"))
    await asyncio.sleep(0)
    assert await turn()
    await first
    await db.dispose()


async def test_an_error_rolls_back_only_its_own_writes(tmp_path: Path) -> None:
    db, path = await _database(tmp_path)

    async def bad() -> None:
        async with db.transaction() as uow:
            await uow.conn.execute(thing.insert().values(name="half"))
            raise ValueError("refused")

    async def good(name: str) -> None:
        async with db.transaction() as uow:
            await uow.conn.execute(thing.insert().values(name=name))

    results = await asyncio.gather(good("g1"), bad(), good("g2"), return_exceptions=True)
    assert isinstance(results[1], ValueError) and results[0] is None and results[2] is None
    assert _committed(path, "g1") and _committed(path, "g2") and not _committed(path, "half")
    with pytest.raises(ValueError):
        await bad()
    # a failed unit returns after its batch ended: this process holds no write lock any more
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()
    await db.dispose()


async def test_a_batch_hands_the_loop_back_between_units(tmp_path: Path) -> None:
    """Units of one batch run one per turn of the loop (other tasks, e.g. HTTP reads, run in between, so a
    batch of 128 never holds the loop for all of them); all commit together, a failing one fails alone."""
    db, path = await _database(tmp_path)
    async with db.transaction() as uow:
        await uow.conn.execute(thing.insert().values(name="warm"))
    ticks = 0
    stop = asyncio.Event()

    async def probe() -> None:  # another task wanting the loop all the time
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    seen: list[int] = []

    async def write(name: str) -> None:
        async with db.transaction() as uow:
            seen.append(ticks)
            await uow.conn.execute(thing.insert().values(name=name))
            if name == "bad":
                raise ValueError("refused")

    assert db.group is not None
    commits = db.group.commits
    prober = asyncio.ensure_future(probe())
    await asyncio.sleep(0)
    names = [f"y{i}" for i in range(30)]
    names[12] = "bad"
    results = await asyncio.gather(*(write(n) for n in names), return_exceptions=True)
    stop.set()
    await prober
    assert [type(r) for r in results] == [ValueError if n == "bad" else type(None) for n in names]
    assert all(b > a for a, b in itertools.pairwise(seen)), seen  # the probe ran between every two units
    assert db.group.commits - commits <= 5  # and they still shared commits (30 units)
    assert all(_committed(path, n) for n in names if n != "bad") and not _committed(path, "bad")
    await db.dispose()


async def test_the_write_connection_outlives_a_clean_batch_only(tmp_path: Path) -> None:
    """A clean commit leaves the write connection for the next batch (no pool round per batch); a failed
    commit closes it (SQLite keeps the transaction open after a refused COMMIT: handed back to the pool, the
    next batch's BEGIN IMMEDIATE failed on it, and so did every write after), and the next batch starts on a
    fresh connection with nothing of the failed one."""
    db, path = await _database(tmp_path)
    async with db.ddl_lock() as conn:  # a reference checked at COMMIT: a violation fails the commit itself
        await conn.exec_driver_sql(
            "CREATE TABLE late (id INTEGER PRIMARY KEY, "
            "thing_id INTEGER REFERENCES thing(id) DEFERRABLE INITIALLY DEFERRED)"
        )

    async def write(name: str, dangling: bool = False) -> LoopConnection:
        async with db.transaction() as uow:
            await uow.conn.execute(thing.insert().values(name=name))
            if dangling:
                await uow.conn.exec_driver_sql("INSERT INTO late (thing_id) VALUES (999999)")
            return cast(LoopConnection, uow.conn)

    first = await write("k1")
    assert await write("k2") is first and _committed(path, "k2")  # the same connection, committed durably
    assert not first.driver.in_transaction and not first.sync_connection.closed  # waiting, holding no lock
    with pytest.raises(IntegrityError):
        await write("k3", dangling=True)
    assert not _committed(path, "k3") and first.sync_connection.closed
    with pytest.raises(sqlite3.ProgrammingError):  # the DB-API connection itself is closed, not pooled
        first.driver.execute("SELECT 1")
    fresh = await write("k4")
    assert fresh is not first and _committed(path, "k4") and not _committed(path, "k3")
    async with db.engine.connect() as conn:
        assert (await conn.exec_driver_sql("SELECT count(*) FROM late")).scalar() == 0
    await db.dispose()
    assert fresh.sync_connection.closed  # handed back at shutdown


async def test_a_batch_waits_off_the_loop_for_another_process_writing(tmp_path: Path) -> None:
    """Another process holds SQLite's write lock: the batch's BEGIN IMMEDIATE waits in a worker thread (the
    loop keeps running), then the unit of work commits durably; the write connection stays usable."""
    db, path = await _database(tmp_path)
    async with db.transaction() as uow:  # the write connection exists and is kept
        await uow.conn.execute(thing.insert().values(name="before"))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def write(name: str) -> None:
        async with db.transaction() as uow:
            await uow.conn.execute(thing.insert().values(name=name))

    task = asyncio.ensure_future(write("after"))
    for _ in range(20):  # the loop is free while the batch waits for the lock
        await asyncio.sleep(0.01)
        ticks += 1
    assert not task.done() and not _committed(path, "after")
    holder.execute("ROLLBACK")
    holder.close()
    await asyncio.wait_for(task, 10)
    assert ticks == 20 and _committed(path, "after")
    await write("again")
    assert _committed(path, "again")
    await db.dispose()


async def test_the_unit_ending_a_batch_is_cancelled_while_its_commit_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The COMMIT goes on in its thread; once it is back the batch is finished for the others (the turn handed
    on, the events published, the other units return) and the next write finds everything in order."""
    db, path = await _database(tmp_path)
    published: list[str] = []

    async def hook(events: list[ev.Event]) -> None:
        published.extend(e.ref for e in events)

    db.after_commit.append(hook)
    real = sa.engine.Connection.commit

    def slow_commit(self: sa.engine.Connection) -> None:  # in the commit's worker thread
        time.sleep(0.2)
        real(self)

    async def write(name: str) -> None:
        async with db.transaction() as uow:
            await uow.conn.execute(thing.insert().values(name=name))
            await uow.emit(_draft(name))
            await asyncio.sleep(0)  # let the other queue up behind this turn

    await write("warm")
    monkeypatch.setattr(sa.engine.Connection, "commit", slow_commit)
    first = asyncio.ensure_future(write("a"))
    ender = asyncio.ensure_future(write("b"))  # queued behind "a": the last of the batch, so it commits it
    await asyncio.sleep(0.05)
    assert db.group is not None and db.group.lock.locked() and not first.done()
    ender.cancel()
    await asyncio.wait_for(first, 5)  # returned: committed and published
    with pytest.raises(asyncio.CancelledError):
        await ender
    assert _committed(path, "a") and _committed(path, "b") and published[-2:] == ["a", "b"]
    monkeypatch.setattr(sa.engine.Connection, "commit", real)
    await write("c")
    assert _committed(path, "c")
    await db.dispose()
