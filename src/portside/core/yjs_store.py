"""Stored Yjs documents: per room, a log of binary Yjs updates, compacted into snapshots.

A room's document is the merge of all its rows (`snapshot` rows are merged updates too, so order does not
matter: Yjs updates commute). Compaction replaces exactly the rows it read by one snapshot row, in one
transaction, so concurrent writers on other nodes never lose an update.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.asyncio import AsyncConnection

from portside.core import db_errors
from portside.core.db import Database, sqlite_pragmas
from portside.core.db_errors import Fault

MAX_ROOM_NAME = 255
SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores DateTime in SQLite
_SQLITE_INSERT = "INSERT INTO _yjs_document (room, kind, data, created_at) VALUES (?, ?, ?, ?)"
T = TypeVar("T")

yjs_metadata = sa.MetaData()
yjs_document = sa.Table(
    "_yjs_document",
    yjs_metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("room", sa.String(MAX_ROOM_NAME), nullable=False),
    sa.Column("kind", sa.String(10), nullable=False),  # snapshot | update
    sa.Column("data", sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql"), nullable=False),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Index("ix_yjs_document_room", "room", "id"),
)


@dataclass(frozen=True)
class Stored:
    id: int
    kind: str
    data: bytes


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


async def load(conn: AsyncConnection, room: str) -> list[Stored]:
    t = yjs_document
    rows = await conn.execute(sa.select(t.c.id, t.c.kind, t.c.data).where(t.c.room == room).order_by(t.c.id))
    return [Stored(int(r.id), str(r.kind), bytes(r.data)) for r in rows]


async def exists(conn: AsyncConnection, room: str) -> bool:
    t = yjs_document
    return (await conn.scalar(sa.select(t.c.id).where(t.c.room == room).limit(1))) is not None


async def append(conn: AsyncConnection, items: Sequence[tuple[str, bytes]], kind: str = "update") -> None:
    """Insert one row per (room, update) in the caller's transaction."""
    if not items:
        return
    now = _now()
    await conn.execute(
        yjs_document.insert(), [{"room": room, "kind": kind, "data": data, "created_at": now} for room, data in items]
    )


async def delete(db: Database, room: str) -> None:
    """Forget a room's document (its row is gone)."""
    async with db.transaction() as uow:
        await uow.conn.execute(yjs_document.delete().where(yjs_document.c.room == room))


class Appender:
    """Appends update rows in batches, one transaction per batch.

    On a file-backed SQLite database the batch is written through a dedicated `sqlite3` connection on the
    calling (event loop) thread: a WAL commit at `synchronous=NORMAL` is a few hundred microseconds and
    survives a process crash, while the async engine's worker thread costs several thread hand-offs per
    batch, each of which waits for a CPU when the machine is busy. That connection never checkpoints
    (`wal_autocheckpoint=0`, so no fsync ever runs on the loop); `checkpoint_due` tells the caller when to
    run a passive checkpoint through the async engine. If the fast path meets a lock held by another
    process, the batch goes through the async engine instead. Other databases always use the async engine.
    """

    CHECKPOINT_EVERY = 1.0  # seconds; Python's sqlite3 cannot report the log's size, so the clock decides

    def __init__(self, db: Database):
        self.db = db
        self._sync: sqlite3.Connection | None = None
        self._fast = db.sqlite_file is not None
        self._commits = 0
        self._last_checkpoint = time.monotonic()

    def _connection(self) -> sqlite3.Connection:
        if self._sync is None:
            path = self.db.sqlite_file
            assert path is not None
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            sqlite_pragmas(conn)
            conn.execute("PRAGMA busy_timeout=0")  # never wait on the loop: a lock held elsewhere -> the engine
            conn.execute("PRAGMA wal_autocheckpoint=0")
            self._sync = conn
        return self._sync

    async def _write(
        self, fast: Callable[[sqlite3.Connection], T], slow: Callable[[AsyncConnection], Awaitable[T]]
    ) -> T:
        """One write transaction in this process's write turn: `fast` on the loop-side SQLite connection, or
        `slow` through the async engine (other databases, or a lock held by another process)."""
        async with self.db.write_turn():
            if self._fast:
                conn = self._connection()
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    result = fast(conn)
                    conn.execute("COMMIT")
                    self._commits += 1
                    return result
                except sqlite3.OperationalError as exc:
                    if db_errors.classify(exc) is not Fault.LOCKED:
                        raise
                finally:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
            async with self.db.engine.begin() as aconn:
                return await slow(aconn)

    async def append(self, items: Sequence[tuple[str, bytes]]) -> None:
        if not items:
            return

        def fast(conn: sqlite3.Connection) -> None:
            now = _now().strftime(SQLITE_DATETIME)
            conn.executemany(_SQLITE_INSERT, [(room, "update", data, now) for room, data in items])

        async def slow(conn: AsyncConnection) -> None:
            await append(conn, items)

        await self._write(fast, slow)

    async def replace(self, room: str, snapshot: Callable[[], bytes]) -> tuple[int, int]:
        """Replace every stored row of `room` by `snapshot()`, called inside the transaction after the rows
        to replace are fixed: for a writer whose document holds every row committed so far (one node, each
        update applied before it is stored), so no row is read back. Returns (rows replaced, snapshot bytes).
        """
        t = yjs_document

        def fast(conn: sqlite3.Connection) -> tuple[int, int]:
            top, count = conn.execute("SELECT max(id), count(*) FROM _yjs_document WHERE room = ?", (room,)).fetchone()
            data = snapshot()
            if count < 2:
                return 0, len(data)
            conn.execute(_SQLITE_INSERT, (room, "snapshot", data, _now().strftime(SQLITE_DATETIME)))
            conn.execute("DELETE FROM _yjs_document WHERE room = ? AND id <= ?", (room, top))
            return int(count), len(data)

        async def slow(conn: AsyncConnection) -> tuple[int, int]:
            top, count = (
                await conn.execute(sa.select(sa.func.max(t.c.id), sa.func.count()).where(t.c.room == room))
            ).one()
            data = snapshot()
            if count < 2:
                return 0, len(data)
            await append(conn, [(room, data)], kind="snapshot")
            await conn.execute(t.delete().where(t.c.room == room, t.c.id <= top))
            return int(count), len(data)

        return await self._write(fast, slow)

    @property
    def checkpoint_due(self) -> bool:
        return self._commits > 0 and time.monotonic() - self._last_checkpoint >= self.CHECKPOINT_EVERY

    async def checkpoint(self) -> None:
        """Copy the write-ahead log into the database file, in the engine's thread. The bulk is copied while
        writers go on (a passive checkpoint never blocks them); if they added pages meanwhile, those few are
        copied in this process's write turn. Once the whole log is in the database the next commit starts
        the log over instead of growing it."""
        self._commits, self._last_checkpoint = 0, time.monotonic()
        async with self.db.engine.connect() as conn:
            if await self._checkpoint_pass(conn):
                return
            async with self.db.write_turn():
                await self._checkpoint_pass(conn)

    @staticmethod
    async def _checkpoint_pass(conn: AsyncConnection) -> bool:
        """One passive checkpoint; True when it copied the whole log."""
        result: Sequence[int] = tuple((await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")).one())
        busy, log, copied = result
        return not busy and log == copied

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None


async def compact(db: Database, room: str, merge: Callable[[list[bytes]], bytes]) -> tuple[int, int]:
    """Replace the room's rows by one snapshot (`merge` of their data). Returns (rows replaced, snapshot bytes).

    The rows are read and merged outside the write transaction, which then only inserts the snapshot and
    deletes exactly the rows that went into it (rows added meanwhile stay), so writers wait very little.
    """
    t = yjs_document
    async with db.read() as conn:
        rows = await load(conn, room)
    if len(rows) < 2:
        return 0, sum(len(r.data) for r in rows)
    snapshot = merge([r.data for r in rows])
    ids = [r.id for r in rows]
    async with db.transaction() as uow:
        await append(uow.conn, [(room, snapshot)], kind="snapshot")
        for i in range(0, len(ids), 500):
            await uow.conn.execute(t.delete().where(t.c.id.in_(ids[i : i + 500])))
    return len(rows), len(snapshot)
