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
