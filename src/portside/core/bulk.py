"""Many new rows of one table at once: one multi-row INSERT for the rows, one SELECT to read them back for
their events, one multi-row INSERT into the event log.

`records.insert` costs four statements per row (INSERT, the API re-read, its group grants, the event); a
writer storing many rows in one transaction (mail delivery: group commit) uses these instead. The rows,
events and grants are the same as `records.insert` would give (rows without group links; the table's write
hook, if any, runs for every row before the re-read).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from portside.core import records
from portside.core.db import UnitOfWork
from portside.core.events import EventDraft
from portside.core.model import Model, TableModel
from portside.tools.ids import uuid7_str

CHUNK = 500  # ids per IN list when the rows are read back


async def insert_rows(uow: UnitOfWork, tm: TableModel, rows: Sequence[dict[str, Any]], *, permission: int) -> list[int]:
    """Insert `rows` (DB values, FK columns as integer ids) with fresh references; their ids, in order.
    Rows with the same columns go in one statement where the dialect returns ids in parameter order
    (SQLite 3.35+, PostgreSQL, MariaDB 10.5+); elsewhere one INSERT per row."""
    stamp = records.now()
    fixed = {"created_at": stamp, "updated_at": stamp, "version": 1, "permission": permission}
    full = [{**r, "reference_id": uuid7_str(), **fixed} for r in rows]
    shapes: dict[tuple[str, ...], list[int]] = {}
    for i, r in enumerate(full):
        shapes.setdefault(tuple(sorted(r)), []).append(i)
    ids = [0] * len(full)
    conn = uow.conn
    many = conn.dialect.insert_executemany_returning_sort_by_parameter_order
    for positions in shapes.values():
        params = [full[i] for i in positions]
        if len(params) > 1 and many:
            stmt = tm.sa.insert().returning(tm.sa.c.id, sort_by_parameter_order=True)
            got = [int(r[0]) for r in await conn.execute(stmt, params)]
        else:
            got = []
            for p in params:
                pk = (await conn.execute(tm.sa.insert(), p)).inserted_primary_key
                assert pk is not None
                got.append(int(pk[0]))
        for i, row_id in zip(positions, got, strict=True):
            ids[i] = row_id
    return ids


async def emit_created(
    uow: UnitOfWork, model: Model, tm: TableModel, ids: Sequence[int], actors: Sequence[str | None]
) -> list[records.RowData]:
    """The create events of rows inserted in this unit of work (`actors[i]` wrote `ids[i]`), in the order of
    `ids`; returns the rows as `records.insert` would."""
    hook = records.row_hooks.get(tm.name)
    if hook is not None:
        for row_id, actor in zip(ids, actors, strict=True):
            await hook(uow, model, tm, row_id, "create", None, actor)
    found: dict[int, records.RowData] = {}
    wanted = list(ids)
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        # rows inserted here have no group links unless the hook made some: no grants query without a hook
        for row in await records.fetch(uow.conn, model, tm, tm.sa.c.id.in_(chunk), groups=hook is not None):
            found[row.id] = row
    if len(found) != len(set(wanted)):  # pragma: no cover - the rows were written in this transaction
        raise RuntimeError(f"{tm.name} rows vanished inside their transaction")
    fresh = [found[i] for i in wanted]
    drafts = [
        EventDraft(tm.name, "create", f.ref, records.event_payload(tm, f.attrs), f.grants, actor)
        for f, actor in zip(fresh, actors, strict=True)
    ]
    await uow.emit_many(drafts)
    return fresh
