"""Prepared statements straight through asyncpg (core/pgdirect.py), on a real PostgreSQL: values stored and read
back exactly as through SQLAlchemy's `execute`, inside the unit of work's transaction (begun by the first of
them), driver errors wrapped as SQLAlchemy's, and the write path's hot statements no longer going through
SQLAlchemy's execution at all."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from portside.core import events as ev
from portside.core import pgdirect, records
from portside.core.db import Database
from portside.core.db_errors import Fault, classify
from portside.core.events import EventDraft, Grants
from support import fresh_database

meta = sa.MetaData()
thing = sa.Table(
    "thing",
    meta,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), unique=True),
    sa.Column("at", sa.DateTime()),
    sa.Column("flag", sa.Boolean()),
    sa.Column("score", sa.Float()),
    sa.Column("price", sa.Numeric(10, 2)),
    sa.Column("version", sa.Integer),
)
BY_ID = sa.select(thing).where(thing.c.id == sa.bindparam("key"))


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    url, drop = fresh_database("postgresql")
    database = Database(url)
    async with database.ddl_lock() as conn:
        await conn.run_sync(meta.create_all)
        await conn.run_sync(ev.event_metadata.create_all)
    yield database
    await database.dispose()
    drop()


def count_sqlalchemy_statements(db: Database) -> list[str]:
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    sa.event.listen(db.engine.sync_engine, "before_cursor_execute", note)
    return seen


async def test_rows_match_sqlalchemy(db: Database) -> None:
    at = dt.datetime(2026, 12, 7, 1, 2, 3, 456789)
    async with db.transaction() as uow:
        fast = pgdirect.pg(uow.conn)
        assert fast is not None
        first = await fast.insert(thing, {"name": "a", "at": at, "flag": True, "score": 1.5, "price": 2})
        second = await fast.insert(thing, {"flag": False, "name": "b"})  # another column set, another statement
        assert first is not None and second == first + 1
        via_sa = [tuple(r) for r in await uow.conn.execute(BY_ID, {"key": first})]
        assert await fast.select(BY_ID, {"key": first}) == via_sa
        assert via_sa == [(first, "a", at, True, 1.5, decimal.Decimal("2.00"), None)]
        assert await fast.select(BY_ID, {"key": second}) == [(second, "b", None, False, None, None, None)]
        assert await fast.select(BY_ID, {"key": 999}) == []
    async with db.read() as conn:  # a reader (autocommit) takes the same path
        fast = pgdirect.pg(conn)
        assert fast is not None
        rows = await fast.select(BY_ID, {"key": first})
        assert rows is not None and rows[0][1] == "a"


async def test_first_statement_begins_the_transaction(db: Database) -> None:
    """A unit of work whose first statement runs here is still one transaction: undone by a later error."""
    with pytest.raises(RuntimeError):
        async with db.transaction() as uow:
            fast = pgdirect.pg(uow.conn)
            assert fast is not None
            await fast.insert(thing, {"name": "undone"})
            raise RuntimeError("after the insert")
    async with db.read() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(thing))).scalar() == 0


async def test_driver_errors_are_sqlalchemy_errors(db: Database) -> None:
    async with db.transaction() as uow:
        fast = pgdirect.pg(uow.conn)
        assert fast is not None
        await fast.insert(thing, {"name": "taken"})
    with pytest.raises(IntegrityError) as caught:
        async with db.transaction() as uow:
            fast = pgdirect.pg(uow.conn)
            assert fast is not None
            await fast.insert(thing, {"name": "mine"})
            await fast.insert(thing, {"name": "taken"})
    assert classify(caught.value) is Fault.UNIQUE
    async with db.transaction() as uow:  # the pooled connection is fine afterwards; the failed unit left nothing
        await records.insert_one(uow.conn, thing, {"name": "after"})
    async with db.read() as conn:
        names = {r[0] for r in await conn.execute(sa.select(thing.c.name))}
    assert names == {"taken", "after"}


async def test_hot_write_statements_skip_sqlalchemy(db: Database) -> None:
    """A row insert, its event and a prepared point read run past SQLAlchemy's execution: no statement reaches
    its cursor but the BEGIN/COMMIT it owns (issue 17: ~150 µs of CPU each on asyncpg)."""
    seen = count_sqlalchemy_statements(db)
    async with db.transaction() as uow:
        row_id = await records.insert_one(uow.conn, thing, {"name": "hot"})
        event = await ev.append(uow.conn, EventDraft("thing", "create", "r1", {"name": "hot"}, Grants(None, 0), None))
        rows = await records.select_bound(uow.conn, BY_ID, {"key": row_id})
    assert [r[1] for r in rows] == ["hot"]
    assert event.offset >= 1
    assert seen == []


async def test_update_by_id_sets_only_the_given_columns(db: Database) -> None:
    """records.update's statement on PostgreSQL: SET the named columns, bump the version, one row by id."""
    seen = count_sqlalchemy_statements(db)
    async with db.transaction() as uow:
        fast = pgdirect.pg(uow.conn)
        assert fast is not None
        one = await fast.insert(thing, {"name": "one", "flag": True, "version": 1})
        two = await fast.insert(thing, {"name": "two", "flag": True, "version": 1})
        params = {"flag": False, "score": 2.5, records._ROW_KEY: one}
        assert await fast.write(("update", thing), lambda: records._update_by_id(thing), params)
        rows = await fast.select(sa.select(thing.c.id, thing.c.flag, thing.c.score, thing.c.version), {})
    assert sorted(rows or []) == [(one, False, 2.5, 2), (two, True, None, 1)]
    assert seen == []


async def test_sql_expressions_as_values_are_left_to_sqlalchemy(db: Database) -> None:
    """A value that is an SQL expression (records.update gets `CASE ...` for a column) cannot be bound: the
    direct path declines and the caller runs the statement through SQLAlchemy."""
    async with db.transaction() as uow:
        fast = pgdirect.pg(uow.conn)
        assert fast is not None
        one = await fast.insert(thing, {"name": "one", "version": 1})
        flip = sa.case((thing.c.version == 1, 10), else_=20)
        assert not await fast.write(("update", thing), lambda: records._update_by_id(thing), {"version": flip})
        assert await fast.insert(thing, {"name": "two", "version": flip}) is None
        assert await fast.select(sa.select(thing.c.version).where(thing.c.id == sa.bindparam("k")), {"k": one}) == [
            (1,)
        ]


def test_statements_that_cannot_be_prepared_are_refused() -> None:
    dialect = sa.create_engine("postgresql+asyncpg://x@127.0.0.1/x").dialect
    assert pgdirect.prepare(dialect, sa.select(thing).where(thing.c.id.in_([1, 2]))) is None  # expanding IN
    with_default = sa.Table(
        "d", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("n", sa.Integer, default=7)
    )
    assert pgdirect.prepare(dialect, with_default.insert().returning(with_default.c.id), ["id"]) is None
    prepared = pgdirect.prepare(dialect, thing.insert().returning(thing.c.id), ["flag", "name"])
    assert prepared is not None and [b[0] for b in prepared.binds] == ["name", "flag"]
    assert prepared.sql.endswith("RETURNING thing.id")


async def test_not_for_other_databases(tmp_path: Any) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    async with db.read() as conn:
        assert pgdirect.pg(conn) is None
    await db.dispose()
