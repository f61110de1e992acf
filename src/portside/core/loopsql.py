"""SQLite statements on the event loop's own thread, for short reads and the group-commit batch.

Through aiosqlite every statement is a round trip to a worker thread: a queue put, a thread wake-up, the GIL
handed over and back, a future resolved on the loop. For a point read or a one-row insert that costs
several times the statement itself (py-spy of `bench/api.py`: ~45% of the GIL time of get-by-id and create
was aiosqlite's queue hand-off). `LoopConnection` runs them synchronously instead, through SQLAlchemy's
synchronous pysqlite engine on the same file, with the same statements and results (`CursorResult`) and
the subset of `AsyncConnection` that units of work and reads use: `execute`, `scalar`, `scalars`,
`exec_driver_sql`, `run_sync`, `begin_nested`, `dialect`.

What may block stays off the loop: the durable COMMIT (an fsync) runs in a worker thread, and a
`BEGIN IMMEDIATE` that finds another process writing waits in a worker thread too (the loop-side connections
have `busy_timeout=0`). Long statements do not belong here; callers use `Database.read()` (aiosqlite) for
those (e.g. an uncached list count).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from portside.core.db_errors import Fault, classify

T = TypeVar("T")
BUSY_WAIT_MS = 30000  # the aiosqlite engine's wait for another process's write lock, for the thread fallback


class LoopSavepoint:
    __slots__ = ("_sp",)

    def __init__(self, sp: sa.NestedTransaction):
        self._sp = sp

    async def commit(self) -> None:
        self._sp.commit()

    async def rollback(self) -> None:
        self._sp.rollback()


class LoopConnection:
    """An `AsyncConnection` look-alike whose statements run synchronously on the calling (loop) thread."""

    __slots__ = ("dialect", "sync_connection")

    def __init__(self, conn: sa.Connection):
        self.sync_connection = conn
        self.dialect = conn.dialect

    def as_async(self) -> AsyncConnection:
        """Typed as what the callers take (they use only the methods listed in the module docstring)."""
        return cast(AsyncConnection, self)

    async def execute(self, statement: Any, parameters: Any = None, **kw: Any) -> sa.CursorResult[Any]:
        return self.sync_connection.execute(statement, parameters, **kw)

    async def scalar(self, statement: Any, parameters: Any = None, **kw: Any) -> Any:
        return self.sync_connection.scalar(statement, parameters, **kw)

    async def scalars(self, statement: Any, parameters: Any = None, **kw: Any) -> sa.ScalarResult[Any]:
        return self.sync_connection.scalars(statement, parameters, **kw)

    async def exec_driver_sql(self, statement: str, parameters: Any = None) -> sa.CursorResult[Any]:
        return self.sync_connection.exec_driver_sql(statement, parameters)

    async def run_sync(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        return fn(self.sync_connection, *args, **kw)

    async def begin_nested(self) -> LoopSavepoint:
        return LoopSavepoint(self.sync_connection.begin_nested())

    async def begin_immediate(self) -> None:
        """Take the database's write lock; waits in a worker thread when another process holds it."""
        conn = self.sync_connection
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            return
        except sa.exc.OperationalError as exc:
            if classify(exc) is not Fault.LOCKED:
                raise
        conn.exec_driver_sql(f"PRAGMA busy_timeout={BUSY_WAIT_MS}")
        try:
            await asyncio.to_thread(conn.exec_driver_sql, "BEGIN IMMEDIATE")
        finally:
            conn.exec_driver_sql("PRAGMA busy_timeout=0")

    async def commit(self) -> None:
        """COMMIT (with synchronous=FULL: the fsync) in a worker thread; the loop serves others meanwhile."""
        await asyncio.to_thread(self.sync_connection.commit)

    async def rollback(self) -> None:
        self.sync_connection.rollback()

    async def close(self) -> None:
        self.sync_connection.close()


def loop_engine(url: str, *, autocommit: bool) -> sa.Engine:
    """A synchronous engine on the same SQLite file (pysqlite), for `LoopConnection`s."""
    sync_url = sa.engine.make_url(url).set(drivername="sqlite")
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if autocommit:
        kwargs["isolation_level"] = "AUTOCOMMIT"
    return sa.create_engine(sync_url, **kwargs)
