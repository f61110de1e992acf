"""A collection's group links reach its objects, so /api and /live show a shared calendar's events and contacts to
the same members with the same rights as DAV does. Every object carries a copy of each of its collection's
links (same group, same mask), kept in step by write hooks on the collection's link table and on objects:

- an object made in a collection gets the collection's links (before its create event, which carries them);
- a link added to a collection, changed, or removed is copied to, changed on, or removed from every object.

DAV decides on the table gates and the collection's grants (auth.access.calendar_right); these copies are for the
row-level permission checks of the other ports.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from portside.core import records
from portside.core.db import UnitOfWork
from portside.core.model import Model, TableModel
from portside.davstore.tables import COLLECTION, OBJECT


def link_table(table: str) -> str:
    """The name of a table's group-link (join) table, as core.model names it."""
    return f"{table}_{table}_id_has_usergroup_usergroup_id"


COLLECTION_LINKS = link_table(COLLECTION)
OBJECT_LINKS = link_table(OBJECT)


async def copy_links(uow: UnitOfWork, model: Model, object_id: int, collection_id: int, actor: str | None) -> None:
    """Give a new object its collection's links."""
    cl = model.table(COLLECTION_LINKS).sa
    ol = model.table(OBJECT_LINKS)
    rows = (
        await uow.conn.execute(sa.select(cl.c.usergroup_id, cl.c.permission).where(cl.c.collection_id == collection_id))
    ).all()
    for gid, perm in rows:
        values = {"calendar_id": object_id, "usergroup_id": int(gid)}
        await records.insert(uow, model, ol, values, permission=int(perm or 0), actor=actor)


async def link_hook(
    uow: UnitOfWork,
    model: Model,
    tm: TableModel,
    row_id: int,
    kind: str,
    before: dict[str, Any] | None,
    actor: str | None = None,
) -> None:
    """A collection link was made, changed or is being deleted: the same on each of its objects."""
    t = tm.sa
    if kind == "delete":
        link = before
    else:
        found = (await uow.conn.execute(sa.select(t).where(t.c.id == row_id))).mappings().first()
        link = dict(found) if found is not None else None
    if link is None or link.get("collection_id") is None or link.get("usergroup_id") is None:
        return
    objects = model.table(OBJECT).sa
    ol = model.table(OBJECT_LINKS)
    ids = (
        await uow.conn.scalars(sa.select(objects.c.id).where(objects.c.collection_id == link["collection_id"]))
    ).all()
    for object_id in ids:
        existing = await records.fetch(
            uow.conn,
            model,
            ol,
            sa.and_(ol.sa.c.calendar_id == object_id, ol.sa.c.usergroup_id == link["usergroup_id"]),
            groups=False,
        )
        if kind == "delete":
            for row in existing:
                await records.delete(uow, model, ol, row, actor=actor)
        elif existing:
            for row in existing:
                if int(row.attrs.get("permission") or 0) != int(link.get("permission") or 0):
                    await records.update(uow, model, ol, row.id, {"permission": link.get("permission")}, actor=actor)
        else:
            values = {"calendar_id": int(object_id), "usergroup_id": int(link["usergroup_id"])}
            await records.insert(uow, model, ol, values, permission=int(link.get("permission") or 0), actor=actor)
