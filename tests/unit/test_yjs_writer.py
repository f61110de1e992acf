"""The Yjs group-commit writer on a real SQLite file: updates submitted in one turn of the event loop are
committed together, each submitter is told after its commit, a backlog pauses readers until it drains, and
stopping stores what is still queued."""

from __future__ import annotations

import asyncio
from pathlib import Path

from portside.core import yjs_store
from portside.core.db import Database
from portside.realtime.yjs_rooms import UpdateWriter


async def open_db(path: Path) -> Database:
    db = Database(f"sqlite+aiosqlite:///{path}")
    async with db.engine.begin() as conn:
        await conn.run_sync(yjs_store.yjs_metadata.create_all)
    return db


async def stored(db: Database, room: str) -> list[bytes]:
    async with db.read() as conn:
        return [r.data for r in await yjs_store.load(conn, room)]


def test_one_turn_of_submissions_is_one_commit_and_each_submitter_hears_after_it(tmp_path: Path) -> None:
    async def main() -> None:
        db = await open_db(tmp_path / "y.db")
        writer = UpdateWriter(db)
        writer.start()
        told: list[tuple[int, BaseException | None, int]] = []
        flushed: list[int] = []
        writer.after_batch.append(lambda: flushed.append(len(told)))
        for i in range(50):
            # each callback sees its own row already committed: the count of rows in the table then
            writer.submit("r", bytes([i]), lambda exc, i=i: told.append((i, exc, writer.commits)))
        assert told == []  # nothing is reported before the commit
        for _ in range(100):
            await asyncio.sleep(0.01)
            if told:
                break
        assert [t[0] for t in told] == list(range(50))  # in submission order
        assert all(exc is None and commits == 1 for _, exc, commits in told)  # one transaction for all
        assert flushed == [50]  # the after-batch hook ran once, after every callback of the batch
        assert await stored(db, "r") == [bytes([i]) for i in range(50)]
        await writer.stop()
        await db.dispose()

    asyncio.run(main())


def test_a_backlog_pauses_readers_until_it_drains_and_stop_stores_what_is_queued(tmp_path: Path) -> None:
    async def main() -> None:
        db = await open_db(tmp_path / "y.db")
        writer = UpdateWriter(db, batch=4)
        writer.MAX_PENDING = 10
        writer.start()
        for i in range(12):
            writer.submit("r", bytes([i]), lambda exc: None)
        assert writer.backlogged
        resumed: list[int] = []
        writer.when_drained(lambda: resumed.append(len(writer.pending)))
        assert resumed == []  # not before the backlog is down to half
        await asyncio.wait_for(writer.drained(), 5)
        assert resumed and resumed[0] <= 5 and not writer.backlogged
        writer.when_drained(lambda: resumed.append(-1))  # already drained: called at once
        assert resumed[-1] == -1
        await writer.stop()
        assert await stored(db, "r") == [bytes([i]) for i in range(12)]
        idle = UpdateWriter(db)  # never started: its queue is still full when it stops
        for i in range(3):
            idle.submit("q", bytes([i]), lambda exc: None)
        await idle.stop()  # whatever was still queued is committed before the writer goes
        assert idle.pending == [] and await stored(db, "q") == [b"\x00", b"\x01", b"\x02"]
        await db.dispose()

    asyncio.run(main())


def test_a_dropped_rooms_waiting_updates_are_not_stored(tmp_path: Path) -> None:
    async def main() -> None:
        db = await open_db(tmp_path / "y.db")
        writer = UpdateWriter(db)  # not started: the updates are still waiting
        told: list[BaseException | None] = []
        writer.submit("gone", b"a", told.append)
        writer.submit("kept", b"b", lambda exc: None)
        assert writer.holds("gone") and writer.holds("kept") and not writer.holds("other")
        writer.discard("gone")
        assert not writer.holds("gone") and writer.holds("kept")
        assert len(told) == 1 and isinstance(told[0], RuntimeError)  # its submitter is not left waiting
        await writer.stop()
        assert await stored(db, "gone") == [] and await stored(db, "kept") == [b"b"]
        await db.dispose()

    asyncio.run(main())
