"""`records.fetch_one` of a table with group links reads the row and its group grants in one statement (was two
round trips on a database server), with the same RowData as the row read and its grants read apart; on SQLite and
PostgreSQL, for rows with no, one and two group links, and for usergroup rows (whose grants are their own)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from portside.core import events as ev
from portside.core import records
from portside.core.db import Database
from portside.core.model import build
from portside.core.schema import parse_document
from portside.core.systables import system_doc
from support import fresh_database

DOC: dict[str, Any] = {"Tables": [{"TableName": "note", "Columns": [{"Name": "title", "ColumnType": "label"}]}]}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_row_and_grants_in_one_statement(kind: str) -> None:
    url, drop = fresh_database(kind)
    db = Database(url)
    model = build([system_doc(), parse_document(DOC)])
    try:
        async with db.ddl_lock() as conn:
            await conn.run_sync(model.metadata.create_all)
            await conn.run_sync(ev.event_metadata.create_all)
        note, group = model.table("note"), model.table("usergroup")
        async with db.transaction() as uow:
            for name in ("g1", "g2"):
                await records.insert(uow, model, group, {"name": name}, permission=7, actor=None)
            rows = [
                await records.insert(uow, model, note, {"title": f"n{k}"}, permission=3, actor=None, groups=links)
                for k, links in enumerate([(), (("g1", 5),), (("g1", 5), ("g2", 9))])
            ]
        seen: list[str] = []

        def count(_c: Any, _cu: Any, statement: str, *_: Any) -> None:
            seen.append(statement)

        sa.event.listen(db.reader.sync_engine, "before_cursor_execute", count)
        async with db.read() as conn:
            for tm, row in [(note, r) for r in rows] + [(group, None)]:
                if row is None:
                    (row,) = await records.fetch(conn, model, group, group.sa.c.name == "g2")
                apart = await records.fetch(conn, model, tm, tm.sa.c.id == row.id)  # the row, then its grants
                del seen[:]
                by_ref = await records.fetch_one(conn, model, tm, ref=row.ref)
                by_id = await records.fetch_one(conn, model, tm, row_id=row.id)
                assert by_ref == by_id == apart[0]
                if kind == "sqlite":  # aiosqlite goes through SQLAlchemy's execute: count its statements
                    assert len(seen) == 2, seen  # one per read
            assert await records.fetch_one(conn, model, note, ref="01a2b3c4-0000-7000-8000-000000000000") is None
        assert sorted(rows[2].grants.groups) == sorted(
            [(g.ref, p) for g, p in [(await _group(db, model, "g1"), 5), (await _group(db, model, "g2"), 9)]]
        )
    finally:
        await db.dispose()
        drop()


async def _group(db: Database, model: Any, name: str) -> records.RowData:
    g = model.table("usergroup")
    async with db.read() as conn:
        (row,) = await records.fetch(conn, model, g, g.sa.c.name == name)
    return row
