"""Database access: one async engine per process, units of work that collect change events.

A unit of work is one transaction. Every write inside it appends its change event to the event log in the
same transaction; after the commit succeeds the collected events are handed to the after-commit hooks
(the bus). A rolled-back unit of work hands nothing on.

On SQLite, units of work share commits (group commit, `core/group_commit.py`): concurrent units of work run
one after another, each in its own savepoint, inside one transaction that is committed, with one fsync
(`synchronous=FULL`: a commit is on disk before anyone hears of it), when no further unit of work is
waiting, or at `BATCH_ROWS` units, or `BATCH_WAIT` seconds after the batch opened. Each unit of work returns
only after that commit and its after-commit hooks; one that fails rolls back to its savepoint and fails
alone. PostgreSQL and MariaDB keep one transaction per unit of work (their servers flush concurrent
commits together themselves).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from portside import log
from portside.core import events as ev
from portside.core.group_commit import GroupCommit
from portside.core.loopsql import LoopConnection, loop_engine

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


def sqlite_durable(dbapi_conn: Any, _record: Any = None) -> None:
    """Writers' connections: a commit is on disk (the write-ahead log fsynced) before it returns."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()


def sqlite_on_loop(dbapi_conn: Any, _record: Any = None) -> None:
    """Connections used on the event loop's thread never sleep on a lock (loopsql.py waits off the loop)."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=0")
    cur.close()


IDLE_PING = 5.0  # seconds unused after which a pooled server connection is pinged before its next use


def ping_when_idle(engine: AsyncEngine) -> None:
    """Check a pooled connection before use only when it sat idle for `IDLE_PING` seconds. SQLAlchemy's
    `pool_pre_ping` pings on every checkout, which on PostgreSQL is BEGIN + `;` + ROLLBACK: three round trips
    per transaction, ~0.4 ms of server CPU per HTTP create (12-15% of it). A connection in steady use does not
    need it: should the server drop it anyway, the failing statement's disconnect invalidates the pool."""
    sync = engine.sync_engine
    dialect = sync.dialect

    def checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["portside_idle_since"] = time.monotonic()

    def checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("portside_idle_since")
        if since is None or time.monotonic() - since < IDLE_PING:
            return
        try:
            dialect.do_ping(dbapi_conn)
        except Exception as exc:  # a dead link: the pool drops this connection and tries another
            raise sa.exc.DisconnectionError(str(exc)) from exc

    sa.event.listen(sync, "checkin", checkin)
    sa.event.listen(sync, "checkout", checkout)


class Database:
    def __init__(self, url: str):
        self.url = url
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_recycle=1800)
        if url.startswith("mysql"):
            kwargs["connect_args"] = {"charset": "utf8mb4"}
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        # reads run in autocommit: no BEGIN and no ROLLBACK round trip per request; on SQLite (aiosqlite: one
        # worker-thread hop per statement) not even SQLAlchemy's ROLLBACK when a connection goes back to the pool
        reader_kwargs = {"skip_autocommit_rollback": True} if url.startswith("sqlite") else {}
        self.reader: AsyncEngine = create_async_engine(url, isolation_level="AUTOCOMMIT", **reader_kwargs, **kwargs)
        self.dialect = self.engine.dialect.name  # sqlite | postgresql | mysql
        if self.dialect != "sqlite":
            ping_when_idle(self.engine)
            ping_when_idle(self.reader)
        if self.dialect == "sqlite":
            sa.event.listen(self.engine.sync_engine, "connect", sqlite_pragmas)
            sa.event.listen(self.reader.sync_engine, "connect", sqlite_pragmas)
            sa.event.listen(self.engine.sync_engine, "connect", sqlite_durable)
        self.group: GroupCommit | None = None
        self._quick: LoopConnection | None = None
        self._quick_engine: sa.Engine | None = None
        if self.dialect == "sqlite":
            # statements on the loop's thread (loopsql.py): the batch writer, and short reads
            writer = loop_engine(url, autocommit=False)
            self._quick_engine = loop_engine(url, autocommit=True)
            for engine, hooks in ((writer, (sqlite_pragmas, sqlite_durable)), (self._quick_engine, (sqlite_pragmas,))):
                for hook in (*hooks, sqlite_on_loop):
                    sa.event.listen(engine, "connect", hook)
            # SQLite has one writer: this process's writes take turns and share commits (group_commit.py)
            self.group = GroupCommit(writer, self._publish)
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
        if self.group is None:
            yield
            return
        async with self.group.exclusive_turn():
            yield

    async def dispose(self) -> None:
        if self.group is not None:
            await self.group.close()
            self.group.engine.dispose()
        if self._quick is not None:
            await self._quick.close()
            self._quick = None
        if self._quick_engine is not None:
            self._quick_engine.dispose()
        await self.engine.dispose()
        await self.reader.dispose()

    @property
    def loop_reads(self) -> bool:
        """`read(quick=True)` runs statements on the loop's thread (SQLite), not on a pooled connection."""
        return self._quick_engine is not None

    @asynccontextmanager
    async def read(self, *, quick: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection for reads (autocommit: each statement sees the latest committed data).

        `quick`: the caller runs only short statements (point reads, a page of an indexed list); on SQLite
        they then run on the loop's thread, without a worker-thread round trip per statement (loopsql.py)."""
        if quick and self._quick_engine is not None:
            if self._quick is None:
                self._quick = LoopConnection(self._quick_engine.connect())
            yield self._quick.as_async()
            return
        async with self.reader.connect() as conn:
            yield conn

    @asynccontextmanager
    async def transaction(self, *, exclusive: bool = False) -> AsyncIterator[UnitOfWork]:
        """One unit of work. `exclusive` also serialises it against other processes (bootstrap writes).

        Returns once committed and after the after-commit hooks ran. On SQLite it shares its commit with
        concurrent units of work (module docstring); an error inside it undoes only its own writes."""
        if self.group is not None and not exclusive:
            async with self.group.unit(UnitOfWork) as uow:
                yield uow
            return
        async with self.write_turn(), self.engine.begin() as conn:
            if exclusive:
                await self._cross_process_lock(conn)
            uow = UnitOfWork(conn)
            yield uow
            if exclusive and self.dialect == "mysql":
                await conn.execute(sa.text("SELECT RELEASE_LOCK('portside_ddl')"))
        # committed: only now do the events exist for anyone else
        await self._publish([uow])

    async def _publish(self, units: list[UnitOfWork]) -> None:
        """Committed units of work, in commit order: their events to the after-commit hooks (one call), then
        each unit's own callbacks."""
        events = units[0].events if len(units) == 1 else [e for u in units for e in u.events]
        for hook in self.after_commit:
            try:
                await hook(events)
            except Exception:  # a failing subscriber must not turn a committed write into an error
                logger.exception("after-commit hook failed")
        for uow in units:
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
        async with self.write_turn(), self.engine.begin() as conn:
            await self._cross_process_lock(conn)
            try:
                yield conn
            finally:
                if self.dialect == "mysql":
                    await conn.execute(sa.text("SELECT RELEASE_LOCK('portside_ddl')"))
