"""SQLite statements on the event loop's own thread, for short reads and the group-commit batch.

Through aiosqlite every statement is a round trip to a worker thread: a queue put, a thread wake-up, the GIL
handed over and back, a future resolved on the loop. For a point read or a one-row insert that costs
several times the statement itself (py-spy of `bench/api.py`: ~45% of the GIL time of get-by-id and create
was aiosqlite's queue hand-off). `LoopConnection` runs them synchronously instead, through SQLAlchemy's
synchronous pysqlite engine on the same file, with the same statements and results (`CursorResult`) and
the subset of `AsyncConnection` that units of work and reads use: `execute`, `scalar`, `scalars`,
`exec_driver_sql`, `run_sync`, `begin_nested`, `dialect`.

The hottest statements skip SQLAlchemy's per-execution work as well (cache-key generation, compiled-cache
look-up, parameter processing, result set-up: ~150 µs of CPU per statement, against ~6 µs for SQLite itself):
`insert` and `select` run a statement that was compiled once (`Prepared`: SQL text, bind order and type
processors from SQLAlchemy's own compiler, so values are stored and read exactly as through `execute`) on
the DB-API connection, and savepoints are plain `SAVEPOINT`/`RELEASE` statements. Callers reach them
through `direct(conn)`, which is None for any other connection (MariaDB, aiosqlite, and PostgreSQL, which has
its own in `pgdirect.py`); a statement the compiler cannot give as fixed positional SQL (Python-side defaults,
expanding IN, escaped names) runs through SQLAlchemy. Driver errors are wrapped as SQLAlchemy's `DBAPIError`
subclasses, as `execute` would.

What may block stays off the loop: the durable COMMIT (an fsync) runs in a worker thread, and a
`BEGIN IMMEDIATE` that finds another process writing waits in a worker thread too (the loop-side connections
have `busy_timeout=0`). Long statements do not belong here; callers use `Database.read()` (aiosqlite) for
those (e.g. an uncached list count). A statement whose length the caller cannot know (a list page under a
row-permission filter) runs through `select_within`: SQLite's progress handler interrupts it after a budget
of virtual-machine steps, and the caller then runs it in a worker thread.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from portside.core.db_errors import Fault, classify

T = TypeVar("T")
P = TypeVar("P")
BUSY_WAIT_MS = 30000  # the aiosqlite engine's wait for another process's write lock, for the thread fallback
PREPARED_MAX = 2048  # compiled statements kept (per process); the cache starts over when full
Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class Prepared:
    """A statement compiled once: its SQL, its parameters in order (name, value when not given, bind
    processor) and a result processor per column."""

    sql: str
    binds: tuple[tuple[str, Any, Processor], ...]
    results: tuple[Processor, ...]

    def parameters(self, given: dict[str, Any]) -> list[Any]:
        return bind_values(self.binds, given)


Binds = tuple[tuple[str, Any, Processor], ...]


def bind_values(binds: Binds, given: dict[str, Any]) -> list[Any]:
    """The positional parameters of a compiled statement: each bind's given value (else its fixed one),
    through its bind processor."""
    out = []
    for name, fixed, process in binds:
        value = given.get(name, fixed)
        out.append(value if process is None or value is None else process(value))
    return out


def compile_positional(
    dialect: sa.Dialect, stmt: Any, keys: Sequence[str] | None, refuse: Sequence[str]
) -> tuple[Any, Binds] | None:
    """`stmt` compiled for `dialect` (`keys`: the columns an INSERT's parameters name) and its binds in order,
    or None when it cannot run as fixed positional SQL with the given parameters alone or the compiled form
    has one of the DML extras named in `refuse` (work SQLAlchemy does around the execution)."""
    compiled: Any = stmt.compile(dialect=dialect, column_keys=list(keys) if keys is not None else None)
    if (
        not compiled.positional
        or any(getattr(compiled, name, None) for name in refuse)
        or compiled.escaped_bind_names
        or "POSTCOMPILE" in compiled.string
    ):
        return None
    fixed = compiled.construct_params(_check=False)
    processors = compiled._bind_processors
    return compiled, tuple((name, fixed.get(name), processors.get(name)) for name in compiled.positiontup)


def prepare(dialect: sa.Dialect, stmt: Any, keys: Sequence[str] | None = None) -> Prepared | None:
    """`stmt` compiled for `dialect` (`keys`: the columns an INSERT's parameters name), or None when it
    cannot run as fixed positional SQL with the given parameters alone."""
    dml_extras = ("insert_prefetch", "update_prefetch", "postfetch", "returning")  # set on DML statements only
    done = compile_positional(dialect, stmt, keys, dml_extras)
    if done is None:
        return None
    compiled, binds = done
    results = tuple(entry.type._cached_result_processor(dialect, None) for entry in compiled._result_columns)
    return Prepared(compiled.string, binds, results)


class PreparedCache(Generic[P]):
    """Statements compiled by `prepare`, per process, by a caller's key (None too: a statement that cannot
    run as fixed positional SQL is not compiled again); starts over when PREPARED_MAX are held. Used here and
    by core/pgdirect.py."""

    __slots__ = ("_items", "_prepare")

    def __init__(self, prepare: Callable[[sa.Dialect, Any, Sequence[str] | None], P | None]):
        self._items: dict[Hashable, P | None] = {}
        self._prepare = prepare

    def get(self, dialect: sa.Dialect, key: Hashable, build: Callable[[], Any], keys: Sequence[str] | None) -> P | None:
        """The statement `build()` compiled for `dialect` (`keys`: the columns an INSERT's parameters name)."""
        items = self._items
        try:
            return items[key]
        except KeyError:
            pass
        if len(items) >= PREPARED_MAX:
            items.clear()
        prep = items[key] = self._prepare(dialect, build(), keys)
        return prep


_cached = PreparedCache(prepare).get


class LoopSavepoint:
    """A savepoint as two plain statements on the DB-API connection (SQLAlchemy's `begin_nested` compiles
    its SAVEPOINT clause on every call)."""

    __slots__ = ("_conn", "_name")

    def __init__(self, conn: LoopConnection, name: str):
        self._conn = conn
        self._name = name

    async def commit(self) -> None:
        self._conn.run_text(f"RELEASE SAVEPOINT {self._name}")

    async def rollback(self) -> None:
        self._conn.run_text(f"ROLLBACK TO SAVEPOINT {self._name}")
        self._conn.run_text(f"RELEASE SAVEPOINT {self._name}")


_savepoint_names = itertools.count(1)


class LoopConnection:
    """An `AsyncConnection` look-alike whose statements run synchronously on the calling (loop) thread."""

    __slots__ = ("dialect", "driver", "sync_connection")

    def __init__(self, conn: sa.Connection):
        self.sync_connection = conn
        self.dialect = conn.dialect
        driver = conn.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        self.driver = driver

    def run_text(self, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
        """One statement on the DB-API connection; driver errors come out as SQLAlchemy's."""
        try:
            return self.driver.execute(sql, parameters)
        except sqlite3.Error as exc:
            raise sa.exc.DBAPIError.instance(sql, parameters, exc, sqlite3.Error) from exc

    def insert(self, table: sa.Table, row: dict[str, Any]) -> int:
        """INSERT one row; its integer primary key (the rowid)."""
        keys = tuple(row)
        prep = _cached(self.dialect, (table, keys), table.insert, keys)
        if prep is None:
            pk = self.sync_connection.execute(table.insert(), row).inserted_primary_key
            assert pk is not None
            return int(pk[0])
        cursor = self.run_text(prep.sql, prep.parameters(row))
        row_id = cursor.lastrowid
        assert row_id is not None
        return row_id

    def select(self, stmt: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The rows of a statement built once by the caller (kept: it is the cache key), values bound at
        execution, converted by the columns' types."""
        prep = _cached(self.dialect, stmt, lambda: stmt, None)
        if prep is None:
            return [tuple(r) for r in self.sync_connection.execute(stmt, params)]
        rows = self.run_text(prep.sql, prep.parameters(params)).fetchall()
        results = prep.results
        if not any(results):
            return rows
        return [tuple(v if p is None or v is None else p(v) for p, v in zip(results, r, strict=True)) for r in rows]

    def select_within(self, stmt: Any, params: dict[str, Any], steps: int) -> list[tuple[Any, ...]] | None:
        """`select`, or None when SQLite needed more than about `steps` virtual-machine steps for it: the
        statement is then interrupted (a read: nothing changed), so the loop's thread is held for a bounded
        time and the caller runs the statement elsewhere (`Database.read()`, which also waits out a lock, for which
        this connection does not: `busy_timeout=0`)."""
        self.driver.set_progress_handler(_interrupt, steps)
        try:
            return self.select(stmt, params)
        except sa.exc.OperationalError as exc:
            if _interrupted(exc.orig) or classify(exc) is Fault.LOCKED:
                return None
            raise
        except sqlite3.OperationalError as exc:  # raised by `fetchall`, past `run_text`'s wrapping
            if _interrupted(exc):
                return None
            raise
        finally:
            self.driver.set_progress_handler(None, 0)

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
        name = f"portside_unit_{next(_savepoint_names)}"
        self.run_text(f"SAVEPOINT {name}")
        return LoopSavepoint(self, name)

    async def begin_immediate(self) -> None:
        """Take the database's write lock; waits in a worker thread when another process holds it.

        SQLAlchemy's transaction is begun first (its bookkeeping only: pysqlite sends nothing), so `commit`
        and `rollback` reach the DB-API connection; the BEGIN itself is a plain statement (through
        `exec_driver_sql` it cost as much as a row insert, once per batch)."""
        conn = self.sync_connection
        if not conn.in_transaction():
            conn.begin()
        try:
            self.run_text("BEGIN IMMEDIATE")
            return
        except sa.exc.OperationalError as exc:
            if classify(exc) is not Fault.LOCKED:
                raise
        self.run_text(f"PRAGMA busy_timeout={BUSY_WAIT_MS}")
        try:
            await asyncio.to_thread(self.run_text, "BEGIN IMMEDIATE")
        finally:
            self.run_text("PRAGMA busy_timeout=0")

    async def commit(self) -> None:
        """COMMIT (with synchronous=FULL: the fsync) in a worker thread; the loop serves others meanwhile."""
        await asyncio.to_thread(self.sync_connection.commit)

    async def rollback(self) -> None:
        self.sync_connection.rollback()

    async def close(self) -> None:
        self.sync_connection.close()


def _interrupt() -> int:
    return 1  # called once `steps` VM instructions have run: a non-zero answer aborts the statement


def _interrupted(exc: BaseException | None) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # by its code, never its text (tests/unit/test_error_vocabulary)
    return isinstance(exc, sqlite3.OperationalError) and code == sqlite3.SQLITE_INTERRUPT


def direct(conn: Any) -> LoopConnection | None:
    """`conn` when it runs statements on the loop's thread (then `insert`/`select` are available), else None."""
    return conn if type(conn) is LoopConnection else None


def loop_engine(url: str, *, autocommit: bool) -> sa.Engine:
    """A synchronous engine on the same SQLite file (pysqlite), for `LoopConnection`s."""
    sync_url = sa.engine.make_url(url).set(drivername="sqlite")
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if autocommit:
        kwargs["isolation_level"] = "AUTOCOMMIT"
    return sa.create_engine(sync_url, **kwargs)
