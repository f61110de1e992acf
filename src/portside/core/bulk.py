"""Many new rows of one table at once: one multi-row INSERT for the rows, one SELECT to read them back for
their events, one multi-row INSERT into the event log.

`records.insert` costs four statements per row (INSERT, the API re-read, its group grants, the event); a
writer storing many rows in one transaction (mail delivery: group commit) uses these instead. The rows,
events and grants are the same as `records.insert` would give (rows without group links; the table's write
hook, if any, runs for every row before the re-read).

The rows are inserted without RETURNING (SQLAlchemy sends one executemany; asking for ids in parameter
order makes it fall back to one INSERT per row on SQLite) and found again by their new reference ids, which
the re-read for the events needs anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from portside.core import records
from portside.core.db import UnitOfWork
from portside.core.events import EventDraft
from portside.core.model import Model, TableModel
from portside.tools.ids import uuid7_str

CHUNK = 500  # refs per IN list when the rows are read back
_INSERTS: dict[sa.Table, sa.Insert] = {}


async def insert_rows(uow: UnitOfWork, tm: TableModel, rows: Sequence[dict[str, Any]], *, permission: int) -> list[str]:
    """Insert `rows` (DB values, FK columns as integer ids) with fresh reference ids; returns those, in order.
    Rows with the same columns go in one executemany."""
    stamp = records.now()
    fixed = {"created_at": stamp, "updated_at": stamp, "version": 1, "permission": permission}
    full = [{**r, "reference_id": uuid7_str(), **fixed} for r in rows]
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in full:
        shapes.setdefault(tuple(sorted(r)), []).append(r)
    stmt = _INSERTS.get(tm.sa)
    if stmt is None:  # one statement object per table: its cache key is computed once
        if len(_INSERTS) > 256:  # tables of replaced models
            _INSERTS.clear()
        stmt = _INSERTS[tm.sa] = tm.sa.insert()
    for params in shapes.values():
        await uow.conn.execute(stmt, params)
    return [r["reference_id"] for r in full]


async def emit_created(
    uow: UnitOfWork,
    model: Model,
    tm: TableModel,
    refs: Sequence[str],
    actors: Sequence[str | None],
    *,
    run_hook: bool = True,
) -> list[records.RowData]:
    """The create events of rows inserted in this unit of work by `insert_rows` (`actors[i]` wrote
    `refs[i]`), in the order of `refs`; returns the rows as `records.insert` would. `run_hook=False` is for a
    caller whose rows the table's write hook leaves alone (it would cost one SELECT per row for nothing)."""
    hook = records.row_hooks.get(tm.name) if run_hook else None
    t = tm.sa
    found: dict[str, records.RowData] = {}
    wanted = list(refs)
    if hook is not None:
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start : start + CHUNK]
            q = sa.select(t.c.reference_id, t.c.id).where(t.c.reference_id.in_(chunk))
            ids = {ref: int(row_id) for ref, row_id in await uow.conn.execute(q)}
            for ref, actor in zip(chunk, actors[start : start + CHUNK], strict=True):
                await hook(uow, model, tm, ids[ref], "create", None, actor)
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        # rows inserted here have no group links unless the hook made some: no grants query without a hook
        for row in await records.fetch_by_refs(uow.conn, model, tm, chunk, groups=hook is not None):
            found[row.ref] = row
    if len(found) != len(set(wanted)):  # pragma: no cover - the rows were written in this transaction
        raise RuntimeError(f"{tm.name} rows vanished inside their transaction")
    fresh = [found[r] for r in wanted]
    drafts = [
        EventDraft(tm.name, "create", f.ref, records.event_payload(tm, f.attrs), f.grants, actor)
        for f, actor in zip(fresh, actors, strict=True)
    ]
    await uow.emit_many(drafts)
    return fresh
