"""Stored Yjs documents: per room, a log of binary Yjs updates, compacted into snapshots.

A room's document is the merge of all its rows (`snapshot` rows are merged updates too, so order does not
matter: Yjs updates commute). Compaction replaces exactly the rows it read by one snapshot row, in one
transaction, so concurrent writers on other nodes never lose an update.

A room's rows live in `_yjs_document` (indexed by room) and, on an embedded SQLite database, also in
`_yjs_journal`, an unindexed append-only table that the loop-side group commit writes: one batch of updates
from many rooms lands on the journal's last page or two, where in the indexed table each room's new index
entry dirties its own page, and every dirty page is a 4 KiB frame in the write-ahead log (a batch of 20
updates of 20 rooms wrote ~23 frames, in the journal at most 5; on bench/yjs.py the server's `pwrite` calls
fell by two thirds and its CPU per update by ~3%). `Appender.fold` moves the journal
into `_yjs_document` a few times a second, sorted by room, so each room's index page is written once per
fold instead of once per batch. Every reader takes both tables; the journal stays a few hundred rows long.
"""

from __future__ import annotations

import datetime as dt
import math
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
_SQLITE_JOURNAL = "INSERT INTO _yjs_journal (room, data, created_at) VALUES (?, ?, ?)"
# the journal into the indexed table, a room's rows together and in their order; then the journal is emptied
_FOLD = (
    "INSERT INTO _yjs_document (room, kind, data, created_at)"
    " SELECT room, 'update', data, created_at FROM _yjs_journal ORDER BY room, id",
    "DELETE FROM _yjs_journal",
)
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
yjs_journal = sa.Table(  # updates not yet folded into `_yjs_document`: no index beyond the row id, on purpose
    "_yjs_journal",
    yjs_metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("room", sa.String(MAX_ROOM_NAME), nullable=False),
    sa.Column("data", sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql"), nullable=False),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sqlite_autoincrement=True,  # ids are never reused: `compact` deletes journal rows by the ids it read
)


@dataclass(frozen=True)
class Stored:
    id: int
    kind: str
    data: bytes
    journal: bool = False  # the row is in `_yjs_journal` (its id is that table's)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


async def load(conn: AsyncConnection, room: str) -> list[Stored]:
    """The room's rows: the indexed table's, then the journal's, each in the order they were stored. One
    statement, so that a fold (which moves rows from one table to the other) cannot fall between the two."""
    t, j = yjs_document, yjs_journal
    query = sa.union_all(
        sa.select(t.c.id, t.c.kind, t.c.data, sa.literal(0).label("journal")).where(t.c.room == room),
        sa.select(j.c.id, sa.literal("update").label("kind"), j.c.data, sa.literal(1).label("journal")).where(
            j.c.room == room
        ),
    ).order_by(sa.literal_column("journal"), sa.literal_column("id"))
    rows = await conn.execute(query)
    return [Stored(int(r.id), str(r.kind), bytes(r.data), journal=bool(r.journal)) for r in rows]


async def exists(conn: AsyncConnection, room: str) -> bool:
    t, j = yjs_document, yjs_journal
    query = sa.union_all(sa.select(t.c.id).where(t.c.room == room), sa.select(j.c.id).where(j.c.room == room))
    return (await conn.scalar(query.limit(1))) is not None


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
        await uow.conn.execute(yjs_journal.delete().where(yjs_journal.c.room == room))


class Appender:
    """Appends update rows in batches, one transaction per batch.

    On a file-backed SQLite database the batch is written through a dedicated `sqlite3` connection on the
    calling (event loop) thread: a WAL commit at `synchronous=NORMAL` is a few hundred microseconds and
    survives a process crash, while the async engine's worker thread costs several thread hand-offs per
    batch, each of which waits for a CPU when the machine is busy. That connection never checkpoints
    (`wal_autocheckpoint=0`, so no fsync ever runs on the loop); `checkpoint_due` tells the caller when to
    run a passive checkpoint through the async engine. If the fast path meets a lock held by another
    process, the batch goes through the async engine instead. Other databases always use the async engine.

    On that connection a batch goes into the unindexed journal; `fold_due` tells the caller when to `fold` it
    into the indexed table (after FOLD_ROWS rows or FOLD_EVERY seconds, whichever comes first).
    """

    CHECKPOINT_EVERY = 1.0  # seconds; Python's sqlite3 cannot report the log's size, so the clock decides
    FOLD_ROWS = 1000
    FOLD_EVERY = 0.5  # seconds

    def __init__(self, db: Database):
        self.db = db
        self._sync: sqlite3.Connection | None = None
        self._fast = db.sqlite_file is not None
        self._commits = 0
        self._last_checkpoint = time.monotonic()
        # rows in the journal since the last fold; at start, unknown (a crash may have left some): fold at once
        self._journaled = 1 if self._fast else 0
        self._last_fold = -math.inf

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
            conn.executemany(_SQLITE_JOURNAL, [(room, data, now) for room, data in items])
            self._journaled += len(items)

        async def slow(conn: AsyncConnection) -> None:
            if not self._fast:
                await append(conn, items)
                return
            now = _now()  # SQLite, past a lock held elsewhere: into the journal too, after the rows before it
            await conn.execute(yjs_journal.insert(), [{"room": r, "data": d, "created_at": now} for r, d in items])
            self._journaled += len(items)

        await self._write(fast, slow)

    @property
    def fold_due(self) -> bool:
        return self._journaled > 0 and (
            self._journaled >= self.FOLD_ROWS or time.monotonic() - self._last_fold >= self.FOLD_EVERY
        )

    async def fold(self) -> None:
        """Move the journal into the indexed table, in one transaction."""
        if not self._fast:
            return

        def fast(conn: sqlite3.Connection) -> None:
            for statement in _FOLD:
                conn.execute(statement)

        async def slow(conn: AsyncConnection) -> None:
            for statement in _FOLD:
                await conn.exec_driver_sql(statement)

        await self._write(fast, slow)
        self._journaled, self._last_fold = 0, time.monotonic()

    async def replace(self, room: str, snapshot: Callable[[], bytes]) -> tuple[int, int]:
        """Replace every stored row of `room` by `snapshot()`, called inside the transaction after the rows
        to replace are fixed: for a writer whose document holds every row committed so far (one node, each
        update applied before it is stored), so no row is read back. Returns (rows replaced, snapshot bytes).
        """
        tables = (yjs_document, yjs_journal)

        def fast(conn: sqlite3.Connection) -> tuple[int, int]:
            tops = [
                conn.execute(f"SELECT max(id), count(*) FROM {t.name} WHERE room = ?", (room,)).fetchone()
                for t in tables
            ]
            count = sum(n for _, n in tops)
            data = snapshot()
            if count < 2:
                return 0, len(data)
            conn.execute(_SQLITE_INSERT, (room, "snapshot", data, _now().strftime(SQLITE_DATETIME)))
            for t, (top, n) in zip(tables, tops, strict=True):
                if n:
                    conn.execute(f"DELETE FROM {t.name} WHERE room = ? AND id <= ?", (room, top))
            return int(count), len(data)

        async def slow(conn: AsyncConnection) -> tuple[int, int]:
            tops = [
                (await conn.execute(sa.select(sa.func.max(t.c.id), sa.func.count()).where(t.c.room == room))).one()
                for t in tables
            ]
            count = sum(n for _, n in tops)
            data = snapshot()
            if count < 2:
                return 0, len(data)
            await append(conn, [(room, data)], kind="snapshot")
            for t, (top, n) in zip(tables, tops, strict=True):
                if n:
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
    async with db.read() as conn:
        rows = await load(conn, room)
    if len(rows) < 2:
        return 0, sum(len(r.data) for r in rows)
    snapshot = merge([r.data for r in rows])
    async with db.transaction() as uow:
        await append(uow.conn, [(room, snapshot)], kind="snapshot")
        for t in (yjs_document, yjs_journal):
            ids = [r.id for r in rows if r.journal == (t is yjs_journal)]
            for i in range(0, len(ids), 500):
                await uow.conn.execute(t.delete().where(t.c.id.in_(ids[i : i + 500])))
    return len(rows), len(snapshot)
