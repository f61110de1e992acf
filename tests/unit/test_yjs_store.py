"""The SQLite fast append path of the Yjs store: rows land, the write-ahead log stays bounded, a lock held by
another process sends the batch through the async engine instead of failing it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

from portside.core import yjs_store
from portside.core.db import Database


async def open_db(path: Path) -> Database:
    db = Database(f"sqlite+aiosqlite:///{path}")
    async with db.engine.begin() as conn:
        await conn.run_sync(yjs_store.yjs_metadata.create_all)
    return db


def test_appends_are_stored_and_the_log_is_checkpointed(tmp_path: Path) -> None:
    path = tmp_path / "y.db"

    async def main() -> None:
        db = await open_db(path)
        appender = yjs_store.Appender(db)
        appender.CHECKPOINT_EVERY = 0.0  # due after every commit (the server: after a second with commits)
        largest_wal = 0
        for i in range(3000):
            await appender.append([(f"room-{i % 7}", bytes([i % 256]) * 300), ("other", b"\x01\x02")])
            if appender.checkpoint_due:
                await appender.checkpoint()
            largest_wal = max(largest_wal, (tmp_path / "y.db-wal").stat().st_size)
        async with db.read() as conn:
            rows = await yjs_store.load(conn, "room-3")
            assert len(rows) == len(range(3, 3000, 7))
            assert rows[0].data == bytes([3]) * 300 and rows[0].kind == "update"
        # without checkpoints 6,000 rows in 3,000 commits would leave a log of tens of megabytes
        assert largest_wal < 8 << 20, largest_wal
        replaced, size = await appender.replace("other", lambda: b"snapshot")
        assert replaced == 3000 and size == len(b"snapshot")
        async with db.read() as conn:
            assert [(r.kind, r.data) for r in await yjs_store.load(conn, "other")] == [("snapshot", b"snapshot")]
        appender.close()
        await db.dispose()

    asyncio.run(main())


def test_a_lock_held_elsewhere_sends_the_batch_through_the_engine(tmp_path: Path) -> None:
    path = tmp_path / "y.db"

    async def main() -> None:
        db = await open_db(path)
        appender = yjs_store.Appender(db)
        await appender.append([("r", b"first")])
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # another process is writing
        threading.Timer(0.5, lambda: other.execute("COMMIT")).start()
        t0 = time.monotonic()
        await appender.append([("r", b"second")])  # the fast path meets the lock; the engine waits it out
        assert time.monotonic() - t0 >= 0.4
        async with db.read() as conn:
            assert [r.data for r in await yjs_store.load(conn, "r")] == [b"first", b"second"]
        other.close()
        appender.close()
        await db.dispose()

    asyncio.run(main())


# -- the journal: the loop-side group commit appends to an unindexed table, folded in a few times a second --


def raw(path: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.execute(sql, args))
    finally:
        conn.close()


def test_a_batch_lands_in_the_journal_and_a_fold_moves_it_in_order(tmp_path: Path) -> None:
    path = tmp_path / "y.db"

    async def main() -> None:
        db = await open_db(path)
        appender = yjs_store.Appender(db)
        await appender.fold()  # what a crash may have left (nothing here)
        for i in range(6):
            await appender.append([(f"r{i % 2}", f"u{i}".encode())])
        assert raw(path, "SELECT count(*) FROM _yjs_document") == [(0,)]
        assert raw(path, "SELECT count(*) FROM _yjs_journal") == [(6,)]
        async with db.read() as conn:  # readers see the journal
            assert [r.data for r in await yjs_store.load(conn, "r1")] == [b"u1", b"u3", b"u5"]
            assert await yjs_store.exists(conn, "r0") and not await yjs_store.exists(conn, "r2")
        await appender.fold()
        assert raw(path, "SELECT count(*) FROM _yjs_journal") == [(0,)]
        assert raw(path, "SELECT room, data FROM _yjs_document ORDER BY id") == [
            ("r0", b"u0"), ("r0", b"u2"), ("r0", b"u4"), ("r1", b"u1"), ("r1", b"u3"), ("r1", b"u5")
        ]  # fmt: skip
        assert not appender.fold_due
        await appender.append([("r1", b"u6")])  # after a fold: the journal again, after the folded rows
        async with db.read() as conn:
            assert [r.data for r in await yjs_store.load(conn, "r1")] == [b"u1", b"u3", b"u5", b"u6"]
        appender.close()
        await db.dispose()

    asyncio.run(main())


def test_a_batch_across_many_rooms_writes_a_few_log_frames_not_one_per_room(tmp_path: Path) -> None:
    """The point of the journal: 20 updates of 20 different rooms in one commit add a handful of 4 KiB frames
    to the write-ahead log. Into the room-indexed table each room's index entry dirtied its own page (~20)."""
    path = tmp_path / "y.db"

    async def main() -> None:
        db = await open_db(path)
        appender = yjs_store.Appender(db)
        appender.FOLD_ROWS, appender.FOLD_EVERY = 10**9, 1e9  # no fold during the measurement
        for _ in range(40):  # rooms with some history: 50 rooms x 200 rows in the indexed table
            await appender.append([(f"room-{r:02d}", b"x" * 40) for r in range(50)] * 5)
            await appender.fold()
        page = raw(path, "PRAGMA page_size")[0][0]
        assert isinstance(page, int)
        raw(path, "PRAGMA wal_checkpoint(TRUNCATE)")
        before = (tmp_path / "y.db-wal").stat().st_size
        commits = 50
        for i in range(commits):
            await appender.append([(f"room-{(i * 20 + j) % 50:02d}", b"y" * 40) for j in range(20)])
        frames = ((tmp_path / "y.db-wal").stat().st_size - before) / (page + 24) / commits
        assert frames <= 5, f"{frames:.1f} log frames per commit"
        appender.close()
        await db.dispose()

    asyncio.run(main())


def test_compaction_and_deletion_take_the_journal_too(tmp_path: Path) -> None:
    path = tmp_path / "y.db"

    async def main() -> None:
        db = await open_db(path)
        appender = yjs_store.Appender(db)
        await appender.append([("c", b"folded"), ("d", b"folded")])
        await appender.fold()
        await appender.append([("c", b"journal"), ("d", b"journal"), ("other", b"kept")])
        # one node: the document holds every stored row, so its state replaces them all
        assert await appender.replace("c", lambda: b"snap") == (2, 4)
        async with db.read() as conn:
            assert [(r.kind, r.data) for r in await yjs_store.load(conn, "c")] == [("snapshot", b"snap")]
        # several nodes: the rows themselves are read and merged, then exactly those are deleted
        assert await yjs_store.compact(db, "d", lambda datas: b"+".join(datas)) == (2, len(b"folded+journal"))
        async with db.read() as conn:
            assert [(r.kind, r.data) for r in await yjs_store.load(conn, "d")] == [("snapshot", b"folded+journal")]
        await appender.append([("d", b"late")])
        await yjs_store.delete(db, "d")
        async with db.read() as conn:
            assert await yjs_store.load(conn, "d") == [] and not await yjs_store.exists(conn, "d")
            assert [r.data for r in await yjs_store.load(conn, "other")] == [b"kept"]
        appender.close()
        await db.dispose()

    asyncio.run(main())


def test_what_a_crash_left_in_the_journal_is_read_and_folded_by_the_next_process(tmp_path: Path) -> None:
    path = tmp_path / "y.db"

    async def main() -> None:
        db = await open_db(path)
        first = yjs_store.Appender(db)
        first.FOLD_ROWS, first.FOLD_EVERY = 10**9, 1e9
        await first.fold()
        await first.append([("r", b"a"), ("r", b"b")])
        assert not first.fold_due
        first.close()  # gone without a fold
        await db.dispose()
        db = await open_db(path)
        async with db.read() as conn:
            assert [r.data for r in await yjs_store.load(conn, "r")] == [b"a", b"b"]
        second = yjs_store.Appender(db)
        second.FOLD_EVERY = 1e9
        assert second.fold_due  # it cannot know the journal is empty: the first fold is due at once
        await second.fold()
        assert raw(path, "SELECT room, data FROM _yjs_document ORDER BY id") == [("r", b"a"), ("r", b"b")]
        assert raw(path, "SELECT count(*) FROM _yjs_journal") == [(0,)]
        second.close()
        await db.dispose()

    asyncio.run(main())
