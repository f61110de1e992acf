"""Database access: one async engine per process, units of work that collect change events.

A unit of work is one transaction. Every write inside it appends its change event to the event log in the
same transaction; after the commit succeeds the collected events are handed to the after-commit hooks
(the bus). A rolled-back unit of work hands nothing on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from portside import log
from portside.core import events as ev

AfterCommit = Callable[[list[ev.Event]], Awaitable[None]]
logger = log.get("db")


@dataclass
class UnitOfWork:
    conn: AsyncConnection
    events: list[ev.Event] = field(default_factory=list)
    after: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def emit(self, draft: ev.EventDraft) -> ev.Event:
        event = await ev.append(self.conn, draft)
        self.events.append(event)
        return event

    async def emit_many(self, drafts: list[ev.EventDraft]) -> list[ev.Event]:
        """`emit` for several drafts, in order (one statement where the dialect allows)."""
        events = await ev.append_many(self.conn, drafts)
        self.events.extend(events)
        return events

    def on_commit(self, fn: Callable[[], Awaitable[None]]) -> None:
        self.after.append(fn)


def sqlite_pragmas(dbapi_conn: Any, _record: Any = None) -> None:
    """The settings every SQLite connection of Portside's gets."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")  # references are enforced (see model._sa_table)
    cur.close()


class Database:
    def __init__(self, url: str):
        self.url = url
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True, pool_recycle=1800)
        if url.startswith("mysql"):
            kwargs["connect_args"] = {"charset": "utf8mb4"}
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        # reads run in autocommit: no BEGIN and no ROLLBACK round trip per request
        self.reader: AsyncEngine = create_async_engine(url, isolation_level="AUTOCOMMIT", **kwargs)
        self.dialect = self.engine.dialect.name  # sqlite | postgresql | mysql
        if self.dialect == "sqlite":
            sa.event.listen(self.engine.sync_engine, "connect", sqlite_pragmas)
            sa.event.listen(self.reader.sync_engine, "connect", sqlite_pragmas)
        # SQLite has one writer; serialising writes in-process avoids lock thrash and busy errors.
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self.dialect == "sqlite" else None
        self.after_commit: list[AfterCommit] = []

    @property
    def sqlite_file(self) -> str | None:
        """The database file, when this is a file-backed SQLite database."""
        if self.dialect != "sqlite":
            return None
        name = sa.engine.make_url(self.url).database
        return None if not name or name == ":memory:" or name.startswith("file:") else name

    @asynccontextmanager
    async def write_turn(self) -> AsyncIterator[None]:
        """This process's turn to write outside `transaction` (SQLite: no other in-process write is open)."""
        if self._write_lock is None:
            yield
            return
        async with self._write_lock:
            yield

    async def dispose(self) -> None:
        await self.engine.dispose()
        await self.reader.dispose()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads (autocommit: each statement sees the latest committed data)."""
        async with self.reader.connect() as conn:
            yield conn

    @asynccontextmanager
    async def transaction(self, *, exclusive: bool = False) -> AsyncIterator[UnitOfWork]:
        """One unit of work. `exclusive` also serialises it against other processes (bootstrap writes)."""
        if self._write_lock is not None:
            await self._write_lock.acquire()
        try:
            async with self.engine.begin() as conn:
                if exclusive:
                    await self._cross_process_lock(conn)
                uow = UnitOfWork(conn)
                yield uow
                if exclusive and self.dialect == "mysql":
                    await conn.execute(sa.text("SELECT RELEASE_LOCK('portside_ddl')"))
        finally:
            if self._write_lock is not None:
                self._write_lock.release()
        # committed: only now do the events exist for anyone else
        for hook in self.after_commit:
            try:
                await hook(uow.events)
            except Exception:  # a failing subscriber must not turn a committed write into an error
                logger.exception("after-commit hook failed")
        for fn in uow.after:
            try:
                await fn()
            except Exception:
                logger.exception("after-commit callback failed")

    async def _cross_process_lock(self, conn: AsyncConnection) -> None:
        if self.dialect == "postgresql":
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(63360001)"))
        elif self.dialect == "mysql":
            await conn.execute(sa.text("SELECT GET_LOCK('portside_ddl', 60)"))

    @asynccontextmanager
    async def ddl_lock(self) -> AsyncIterator[AsyncConnection]:
        """A connection holding a cross-process lock for schema changes."""
        if self._write_lock is not None:
            await self._write_lock.acquire()
        try:
            async with self.engine.begin() as conn:
                await self._cross_process_lock(conn)
                try:
                    yield conn
                finally:
                    if self.dialect == "mysql":
                        await conn.execute(sa.text("SELECT RELEASE_LOCK('portside_ddl')"))
        finally:
            if self._write_lock is not None:
                self._write_lock.release()
