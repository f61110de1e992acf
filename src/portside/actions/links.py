"""Relationships through join tables: parse to-many payloads, add, replace and remove links.

Every link row is a row of its join table, written through `records` so it has its own change event; a
change to a row's usergroup links also re-announces the row (its grants changed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from portside.actions.convert import resolve_ref, translate_db_error
from portside.auth import writes
from portside.auth.permissions import REFER, UPDATE, Actor
from portside.core import records
from portside.core.db import UnitOfWork
from portside.core.model import Model, RelSpec, TableModel
from portside.core.records import RowData
from portside.errors import BadRequest, Conflict, NotFound

if TYPE_CHECKING:
    from portside.actions.crud import Crud


MAX_LINKS = 1000  # resource identifiers in one to-many relationship body


def identifier(rel: RelSpec, item: Any, pointer: str) -> Any:
    """A resource identifier of `rel`'s target (an object with `type` and `id`, or a bare id): its id.
    A `type` naming another table is a 409 (JSON:API), a malformed identifier a 400."""
    if isinstance(item, dict):
        kind = item.get("type")
        if kind is not None and not isinstance(kind, str):
            raise BadRequest("type must be a string", pointer=f"{pointer}/type")
        if kind is not None and kind != rel.target:
            detail = f"type {kind[:64]!r} is not {rel.target!r}, the target of {rel.name}"
            raise Conflict(detail, pointer=f"{pointer}/type")
        return item.get("id")
    if item is None or isinstance(item, str):
        return item
    raise BadRequest(f"expected a {rel.target} resource identifier", pointer=pointer)


def with_to_one(tm: TableModel, attrs: Any, relationships: Any) -> Any:
    """`attrs` plus the to-one relationships sent in `relationships` (as their FK attributes), so a to-one
    relationship is applied like its attribute; the same FK sent both ways with different values is a 400."""
    if not isinstance(relationships, dict) or not isinstance(attrs, dict):
        return attrs
    merged = dict(attrs)
    for name, body in relationships.items():
        rel = tm.relations.get(name)
        if rel is None or rel.join_table is not None or not isinstance(body, dict) or "data" not in body:
            continue  # to-many relations and malformed bodies are handled (and refused) by to_many
        data = body["data"]
        pointer = f"/data/relationships/{name}/data"
        if data is not None and not (isinstance(data, dict) and isinstance(data.get("id"), str)):
            raise BadRequest("to-one relationship data must be null or a resource identifier", pointer=pointer)
        if data is not None:
            identifier(rel, data, pointer)  # a type naming another table is a 409
        value = None if data is None else data["id"]
        fk = rel.fk_column or name
        if fk in merged and merged[fk] != value:
            raise BadRequest(f"{fk} is sent both as an attribute and as a relationship", pointer=pointer)
        merged[fk] = value
    return merged


async def to_many(
    crud: Crud,
    conn: AsyncConnection,
    actor: Actor,
    tm: TableModel,
    relationships: Any,
    base: str = "/data/relationships",
) -> dict[str, list[int]]:
    """Parse `relationships` for to-many (join table) relations into target ids (Refer checked), each target
    once however often (or in whichever spelling) it is listed. To-one entries were checked and applied
    through their FK attribute by `with_to_one`."""
    if relationships is None:
        return {}
    if not isinstance(relationships, dict):
        raise BadRequest("relationships must be an object", pointer=base)
    out: dict[str, list[int]] = {}
    for name, body in relationships.items():
        rel = tm.relations.get(name)
        pointer = f"{base}/{name}" if base == "/data/relationships" else base
        if rel is None:
            raise BadRequest(f"unknown relationship {str(name)[:64]!r}", pointer=pointer)
        if not isinstance(body, dict) or "data" not in body:
            raise BadRequest("relationship must be an object with data", pointer=pointer)
        data = body["data"]
        if rel.join_table is None:
            continue  # to-one relations were checked and merged into the attributes (with_to_one)
        if not isinstance(data, list):
            raise BadRequest("to-many relationship data must be a list", pointer=f"{pointer}/data")
        if len(data) > MAX_LINKS:
            raise BadRequest(f"at most {MAX_LINKS} resource identifiers", pointer=f"{pointer}/data")
        ids: dict[int, None] = {}
        for i, item in enumerate(data):
            at = f"{pointer}/data/{i}"
            rid = await resolve_ref(conn, crud.model, actor, rel.target, identifier(rel, item, at), at)
            if rid is not None:
                ids[rid] = None
        out[name] = list(ids)
    return out


async def link(
    crud: Crud,
    uow: UnitOfWork,
    actor: Actor,
    tm: TableModel,
    row_id: int,
    links: dict[str, list[int]],
    *,
    replace: bool,
    announce: bool = True,
) -> None:
    """Add (and with `replace`, remove) join rows; `announce` emits an update for the row when its group
    grants changed (a new row's create event is emitted after its links instead)."""
    model = crud.model
    for name, target_ids in links.items():
        rel = tm.relations[name]
        assert rel.join_table and rel.join_self and rel.join_target
        jt = model.table(rel.join_table)
        j = jt.sa
        key = ("#links_of", rel.join_self, rel.join_target)
        cached = jt.select_cache.get(key)
        if cached is None:  # one statement per join table, built and keyed once (prepared once where it can be)
            q = sa.select(j.c.id, j.c[rel.join_target]).where(j.c[rel.join_self] == sa.bindparam("row_id"))
            cached = jt.select_cache[key] = (q, [])
        rows = await records.select_bound(uow.conn, cached[0], {"row_id": row_id})
        existing: dict[int, int] = {int(target): int(link) for link, target in rows}
        for tid in target_ids:
            if tid not in existing:
                await records.insert(
                    uow,
                    model,
                    jt,
                    {rel.join_self: row_id, rel.join_target: tid},
                    permission=crud.catalog.default_permission(jt.decl),
                    actor=actor.ref,
                )
        if replace:
            for old_tid, link_id in existing.items():
                if old_tid not in target_ids:
                    link = await records.fetch_one(uow.conn, model, jt, row_id=link_id)
                    if link is not None:
                        await records.delete(uow, model, jt, link, actor=actor.ref)
        if rel.target == "usergroup" and announce:  # the row's grants changed: tell subscribers
            await records.emit_row(uow, model, tm, row_id, "update", actor.ref)


async def unlink(
    crud: Crud, uow: UnitOfWork, actor: Actor, tm: TableModel, row_id: int, name: str, target_ids: list[int]
) -> None:
    model = crud.model
    rel = tm.relations[name]
    assert rel.join_table and rel.join_self and rel.join_target
    jt = model.table(rel.join_table)
    links = await records.fetch(
        uow.conn, model, jt, sa.and_(jt.sa.c[rel.join_self] == row_id, jt.sa.c[rel.join_target].in_(target_ids))
    )
    for link in links:
        await records.delete(uow, model, jt, link, actor=actor.ref)
    if rel.target == "usergroup" and links:
        await records.emit_row(uow, model, tm, row_id, "update", actor.ref)


async def change(crud: Crud, actor: Actor, table: str, ref: str, name: str, body: Any, mode: str) -> None:
    """Relationship endpoint writes: mode add (POST), replace (PATCH) or remove (DELETE)."""
    model = crud.model
    tm = model.table(table)
    rel = tm.relations.get(name)
    if rel is None:
        raise NotFound(f"no relationship {name!r} on {table}")
    if rel.join_table is not None:
        writes.check_links(actor, tm, [name])
    try:
        async with crud.db.transaction() as uow:
            await crud.gate(uow.conn, actor, tm, REFER)
            row = await crud.row(uow.conn, actor, tm, ref, UPDATE)
            if rel.join_table is None:
                if mode == "remove" or not isinstance(body, dict):
                    raise BadRequest("to-one relationships are replaced with PATCH", pointer="/data")
                if "data" not in body or isinstance(body["data"], list):
                    raise BadRequest("to-one relationship data must be an object or null", pointer="/data")
                fk = rel.fk_column or rel.name
                await crud.update(actor, table, row.ref, {fk: identifier(rel, body["data"], "/data")}, uow=uow)
                return
            links = await to_many(crud, uow.conn, actor, tm, {name: body}, base="")
            ids = links.get(name, [])
            if mode == "remove":
                await unlink(crud, uow, actor, tm, row.id, name, ids)
            else:
                await link(crud, uow, actor, tm, row.id, {name: ids}, replace=mode == "replace")
    except (IntegrityError, DBAPIError) as exc:
        raise translate_db_error(exc) from None


def related_where(model: Model, tm: TableModel, row: RowData, rel: RelSpec) -> Any:
    """Condition on the target table selecting the rows related to `row` through `rel`."""
    target = model.table(rel.target).sa
    if rel.fk_column is not None:
        ref = row.attrs.get(rel.fk_column)
        return target.c.reference_id == ref if ref else sa.false()
    if rel.reverse_fk is not None:
        return target.c[rel.reverse_fk] == row.id
    assert rel.join_table and rel.join_self and rel.join_target
    j = model.table(rel.join_table).sa
    return target.c.id.in_(sa.select(j.c[rel.join_target]).where(j.c[rel.join_self] == row.id))
