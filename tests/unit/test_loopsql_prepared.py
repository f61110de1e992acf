"""Prepared statements on the loop-thread SQLite connection (core/loopsql.py): values stored and read back
exactly as through SQLAlchemy's `execute`, driver errors wrapped as SQLAlchemy's, savepoints that undo only
their own writes, and statements that cannot be prepared running through SQLAlchemy."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from portside.core import events as ev
from portside.core.db import Database
from portside.core.db_errors import Fault, classify
from portside.core.loopsql import LoopConnection, direct, prepare

meta = sa.MetaData()
thing = sa.Table(
    "thing",
    meta,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50), unique=True),
    sa.Column("at", sa.DateTime()),
    sa.Column("flag", sa.Boolean()),
    sa.Column("score", sa.Float()),
    sqlite_autoincrement=True,
)
BY_ID = sa.select(thing).where(thing.c.id == sa.bindparam("key"))


async def _database(tmp_path: Path) -> tuple[Database, Path]:
    path = tmp_path / "p.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    async with db.ddl_lock() as conn:
        await conn.run_sync(meta.create_all)
        await conn.run_sync(ev.event_metadata.create_all)
    return db, path


async def test_prepared_rows_match_sqlalchemy(tmp_path: Path) -> None:
    db, path = await _database(tmp_path)
    at = dt.datetime(2026, 12, 7, 1, 2, 3, 456789)
    async with db.transaction() as uow:
        fast = direct(uow.conn)
        assert isinstance(fast, LoopConnection)
        first = fast.insert(thing, {"name": "a", "at": at, "flag": True, "score": 1.5})
        second = fast.insert(thing, {"flag": False, "name": "b"})  # another column set, another statement
        assert second == first + 1
        via_sa = [tuple(r) for r in await uow.conn.execute(BY_ID, {"key": first})]
        assert fast.select(BY_ID, {"key": first}) == via_sa == [(first, "a", at, True, 1.5)]
        assert fast.select(BY_ID, {"key": second}) == [(second, "b", None, False, None)]
        assert fast.select(BY_ID, {"key": 999}) == []
    with sqlite3.connect(path) as other:  # stored as SQLAlchemy stores them
        assert other.execute("SELECT at, flag FROM thing WHERE name = 'a'").fetchone() == (
            "2026-12-07 01:02:03.456789",
            1,
        )
    async with db.read(quick=True) as conn:  # the reader on the loop's thread takes the same path
        fast = direct(conn)
        assert fast is not None and fast.select(BY_ID, {"key": first})[0][1] == "a"
    async with db.read() as conn:  # aiosqlite: not a loop-thread connection
        assert direct(conn) is None
    await db.dispose()


async def test_driver_errors_are_sqlalchemy_errors_and_savepoints_isolate(tmp_path: Path) -> None:
    db, path = await _database(tmp_path)
    async with db.transaction() as uow:
        fast = direct(uow.conn)
        assert fast is not None
        fast.insert(thing, {"name": "taken"})
    with pytest.raises(IntegrityError) as caught:
        async with db.transaction() as uow:
            fast = direct(uow.conn)
            assert fast is not None
            fast.insert(thing, {"name": "mine"})
            fast.insert(thing, {"name": "taken"})
    assert classify(caught.value) is Fault.UNIQUE
    async with db.transaction() as uow:  # the batch goes on after a failed unit; the failed unit left nothing
        fast = direct(uow.conn)
        assert fast is not None
        fast.insert(thing, {"name": "after"})
    with sqlite3.connect(path) as other:
        names = {r[0] for r in other.execute("SELECT name FROM thing")}
    assert names == {"taken", "after"}
    await db.dispose()


def test_statements_that_cannot_be_prepared_are_refused() -> None:
    dialect = sa.create_engine("sqlite://").dialect
    assert prepare(dialect, sa.select(thing).where(thing.c.id.in_([1, 2]))) is None  # expanding IN
    assert prepare(dialect, thing.insert().returning(thing.c.id), ["name"]) is None
    with_default = sa.Table(
        "d", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("n", sa.Integer, default=7)
    )
    assert prepare(dialect, with_default.insert(), ["id"]) is None  # a Python-side default to fill in
    prepared = prepare(dialect, thing.insert(), ["flag", "name"])
    assert prepared is not None and [b[0] for b in prepared.binds] == ["name", "flag"]
    literal = prepare(dialect, sa.select(thing.c.id).where(thing.c.name == "x", thing.c.id == sa.bindparam("key")))
    assert literal is not None and literal.parameters({"key": 3}) == ["x", 3]


async def test_a_statement_that_cannot_be_prepared_still_runs(tmp_path: Path) -> None:
    db, _ = await _database(tmp_path)
    async with db.transaction() as uow:
        fast = direct(uow.conn)
        assert fast is not None
        ids = [fast.insert(thing, {"name": n}) for n in ("x", "y", "z")]
        in_list = sa.select(thing.c.name).where(thing.c.id.in_(ids[:2])).order_by(thing.c.id)
        assert fast.select(in_list, {}) == [("x",), ("y",)]
    await db.dispose()


async def test_select_within_a_budget_of_steps(tmp_path: Path) -> None:
    """`select_within`: the rows when SQLite needs fewer steps than the budget, None (the statement
    interrupted, the connection fine) when it needs more; the budget applies to that statement only."""
    db, _ = await _database(tmp_path)
    async with db.transaction() as uow:
        fast = direct(uow.conn)
        assert fast is not None
        for i in range(2000):
            fast.insert(thing, {"name": f"n{i}", "score": float(i)})
    by_score = sa.select(thing.c.id, thing.c.name).where(thing.c.score >= 0).order_by(thing.c.score.desc())
    small = by_score.limit(3)
    async with db.read(quick=True) as conn:
        fast = direct(conn)
        assert fast is not None
        assert fast.select_within(small, {}, 1_000_000) == [(2000, "n1999"), (1999, "n1998"), (1998, "n1997")]
        assert fast.select_within(by_score, {}, 5_000) is None  # 2,000 rows sorted: far more than 5,000 steps
        assert fast.select_within(small, {}, 1_000_000) == [(2000, "n1999"), (1999, "n1998"), (1998, "n1997")]
        assert len(fast.select(by_score, {})) == 2000  # no budget left behind on the connection
        # a statement SQLAlchemy runs itself (an expanding IN) is bounded the same way
        many = sa.select(thing.c.id).where(thing.c.name.in_([f"n{i}" for i in range(1500)]))
        assert fast.select_within(many.order_by(thing.c.score.desc()), {}, 2_000) is None
        assert len(fast.select_within(many, {}, 10_000_000) or []) == 1500
    await db.dispose()
