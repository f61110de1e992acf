"""The hottest statements on PostgreSQL straight through asyncpg, past SQLAlchemy's per-execution work.

A statement through `AsyncConnection.execute` costs ~180 µs of this process's CPU on asyncpg, against ~35 µs
for the same prepared statement through asyncpg alone (a point SELECT on 127.0.0.1): cache-key generation,
compiled-cache look-up, parameter processing, result set-up and the greenlet hand-over per call. An HTTP create
runs 5-12 of them, so on PostgreSQL that overhead was a large part of the write path's CPU (issue 17: ~5 ms of
node CPU per bench row against ~3 on SQLite, where `loopsql.py` already skips it).

`insert`, `write` (an UPDATE by id) and `select` here do for PostgreSQL what `LoopConnection.insert`/`select` do
for SQLite: the statement is compiled once (`loopsql.prepare`'s rules: SQL text, bind order and bind processors
from SQLAlchemy's own compiler; an INSERT returns its key), then run on the unit of work's own asyncpg
connection, inside the transaction SQLAlchemy started for it (begun here first if no statement ran yet), through
the SQLAlchemy adapter's prepared-statement cache (the same statements `execute` prepares, invalidated the same
way after DDL). Results are converted by the columns' result processors, chosen from the types the server reported.
Driver errors come out as `execute` raises them (SQLAlchemy's `DBAPIError` subclasses wrapping the adapter's
errors, so `db_errors.classify` reads the SQLSTATE); a lost connection is invalidated as `execute` would.

Callers reach this through `pg(conn)`, None for anything but an asyncpg connection. A statement the compiler
cannot give as fixed positional SQL (Python-side defaults, expanding IN, escaped names), or a value that is an
SQL expression, answers None (False from `write`), and the caller runs it through SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from portside.core.loopsql import PreparedCache, Processor, bind_values, compile_positional


@dataclass(slots=True)
class PgPrepared:
    """A statement compiled once for asyncpg: SQL, parameters in order (name, value when not given, bind
    processor), its result columns' types, and their processors once the server named the column types."""

    sql: str
    binds: tuple[tuple[str, Any, Processor], ...]
    types: tuple[Any, ...]
    results: tuple[Processor, ...] | None = None

    def parameters(self, given: dict[str, Any]) -> list[Any]:
        return bind_values(self.binds, given)


def prepare(dialect: sa.Dialect, stmt: Any, keys: Sequence[str] | None = None) -> PgPrepared | None:
    """`stmt` compiled for asyncpg (`keys`: the columns an INSERT's parameters name), or None when it cannot run
    as fixed positional SQL with the given parameters alone (RETURNING is fine: asyncpg hands the rows back)."""
    done = compile_positional(dialect, stmt, keys, ("insert_prefetch", "update_prefetch"))
    if done is None:
        return None
    compiled, binds = done
    return PgPrepared(compiled.string, binds, tuple(entry.type for entry in compiled._result_columns))


_cached = PreparedCache(prepare).get


def _expressions(values: dict[str, Any]) -> bool:
    """Whether a value is an SQL expression (e.g. `CASE ...` for a column), which only SQLAlchemy can render."""
    return any(isinstance(v, sa.ClauseElement) for v in values.values())


def _insert_returning(table: sa.Table) -> Any:
    (pk,) = table.primary_key.columns  # every Portside table has one integer key (`id`, the log's `offset`)
    return table.insert().returning(pk)


class PgDirect:
    """One unit of work's (or read's) connection, seen through its asyncpg connection."""

    __slots__ = ("adapt", "conn", "dialect")

    def __init__(self, conn: AsyncConnection, adapt: Any):
        self.conn = conn
        self.adapt = adapt  # SQLAlchemy's AsyncAdapt_asyncpg_connection
        self.dialect = conn.dialect

    async def insert(self, table: sa.Table, row: dict[str, Any]) -> int | None:
        """INSERT one row; its integer primary key (the table's one primary-key column). None: run it through
        SQLAlchemy."""
        keys = tuple(row)
        prep = _cached(self.dialect, ("insert", table, keys), lambda: _insert_returning(table), keys)
        if prep is None or _expressions(row):
            return None
        rows = await self._run(prep, prep.parameters(row))
        return int(rows[0][0])

    async def write(self, key: Hashable, build: Any, params: dict[str, Any]) -> bool:
        """Run an UPDATE or DELETE built by `build()` once per `key`, for the columns `params` names (an UPDATE
        sets those it does not bind in its WHERE). False: not run (a value is an SQL expression, or the statement
        cannot be prepared), run it through SQLAlchemy."""
        keys = tuple(params)
        prep = _cached(self.dialect, (key, keys), build, keys)
        if prep is None or _expressions(params):
            return False
        await self._run(prep, prep.parameters(params))
        return True

    async def select(self, stmt: Any, params: dict[str, Any]) -> list[tuple[Any, ...]] | None:
        """The rows of a statement built once by the caller (kept: it is the cache key), values bound at
        execution, converted by the columns' types. None: run it through SQLAlchemy."""
        prep = _cached(self.dialect, stmt, lambda: stmt, None)
        if prep is None:
            return None
        rows = await self._run(prep, prep.parameters(params))
        results = prep.results
        if not results or not any(results):
            return [tuple(r) for r in rows]
        return [tuple(v if p is None or v is None else p(v) for p, v in zip(results, r, strict=True)) for r in rows]

    async def _run(self, prep: PgPrepared, args: list[Any]) -> list[Any]:
        adapt = self.adapt
        try:
            async with adapt._execute_mutex:
                try:
                    if adapt._transaction is None:  # no statement yet: SQLAlchemy's lazy BEGIN, as `execute` does
                        await adapt._start_transaction()
                    asof = self.dialect._invalidate_schema_cache_asof  # type: ignore[attr-defined]
                    stmt, attributes = await adapt._prepare(prep.sql, asof)  # the adapter's cache, as `execute`
                    if prep.results is None:
                        prep.results = tuple(
                            t._cached_result_processor(self.dialect, a.type.oid)
                            for t, a in zip(prep.types, attributes, strict=True)
                        )
                    rows: list[Any] = await stmt.fetch(*args)
                    return rows
                except Exception as exc:
                    adapt._handle_exception(exc)  # raises the adapter's DB-API error (SQLSTATE kept)
                    raise
        except self.dialect.loaded_dbapi.Error as exc:
            wrapped = sa.exc.DBAPIError.instance(prep.sql, args, exc, self.dialect.loaded_dbapi.Error)
            if self.dialect.is_disconnect(exc, adapt, None):
                wrapped.connection_invalidated = True
                await self.conn.invalidate(wrapped)
            raise wrapped from exc


def pg(conn: Any) -> PgDirect | None:
    """`conn` (an `AsyncConnection` on asyncpg, begun) seen through its asyncpg connection, else None."""
    if not isinstance(conn, AsyncConnection) or conn.dialect.driver != "asyncpg":
        return None
    sync = conn.sync_connection
    if sync is None or sync.invalidated or sync.closed:
        return None
    return PgDirect(conn, sync.connection.dbapi_connection)
