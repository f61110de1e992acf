"""Row access for every table: API-shaped reads, writes that emit change events, and row grants.

No permission decisions here (that is auth.permissions); callers pass SQL visibility filters in and
check grants on the rows they get back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from portside.core import fieldtypes, pgdirect
from portside.core.db import UnitOfWork
from portside.core.events import EventDraft, Grants
from portside.core.loopsql import LoopConnection, direct
from portside.core.model import OWNER_COLUMN, Model, TableModel
from portside.tools.ids import uuid7_str


@dataclass
class RowData:
    id: int
    ref: str
    attrs: dict[str, Any]  # API attributes incl. __type; FK values are target refs
    grants: Grants


# Per-table write hooks, run inside the writing transaction: (uow, model, table, row id, kind "create" /
# "update" / "delete", the row's columns before an update or delete (None on create), the actor). Create and
# update hooks run after the write and before the row's event is read; a delete hook runs first, before
# links and references to the row are touched. A hook derives columns from others (raw SQL on its own
# table, never records.update), writes dependent rows through this module, or raises to refuse the write;
# hooks are registered by the runtime for service packages (davstore), so every path that writes rows (API,
# actions, DAV) runs the same code.
RowHook = Callable[[UnitOfWork, Model, TableModel, int, str, "dict[str, Any] | None", "str | None"], Awaitable[None]]
row_hooks: dict[str, RowHook] = {}

# Per-table hooks run by `update` before it writes the row: (uow, model, table, row id, the new values). A
# package takes here the locks its row hook will need, in the order its own writers take them (mail: the
# mailbox before its messages, so an /api write and an IMAP write cannot deadlock on PostgreSQL or MariaDB).
BeforeUpdate = Callable[[UnitOfWork, Model, TableModel, int, "dict[str, Any]"], Awaitable[None]]
before_update_hooks: dict[str, BeforeUpdate] = {}


async def _run_hook(
    uow: UnitOfWork,
    model: Model,
    tm: TableModel,
    row_id: int,
    kind: str,
    before: dict[str, Any] | None,
    actor: str | None,
) -> None:
    hook = row_hooks.get(tm.name)
    if hook is not None:
        await hook(uow, model, tm, row_id, kind, before, actor)


async def _raw_row(uow: UnitOfWork, tm: TableModel, row_id: int) -> dict[str, Any] | None:
    row = (await uow.conn.execute(sa.select(tm.sa).where(tm.sa.c.id == row_id))).mappings().first()
    return dict(row) if row is not None else None


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


async def insert_one(conn: AsyncConnection, table: sa.Table, row: dict[str, Any]) -> int:
    """INSERT one row, its integer id: compiled once per table and column set, run past SQLAlchemy's
    per-execution work on SQLite (`loopsql`) and PostgreSQL (`pgdirect`)."""
    fast = direct(conn)
    if fast is not None:
        return fast.insert(table, row)
    on_pg = pgdirect.pg(conn)
    if on_pg is not None:
        row_id = await on_pg.insert(table, row)
        if row_id is not None:
            return row_id
    result = await conn.execute(table.insert(), row)  # one statement per table and column set
    pk = result.inserted_primary_key
    assert pk is not None
    return int(pk[0])


async def select_bound(conn: AsyncConnection, stmt: Any, params: dict[str, Any]) -> Sequence[Any]:
    """The rows of a statement built once by the caller (kept: it is the cache key), values bound here:
    prepared once on SQLite's loop path (`loopsql`) and on PostgreSQL (`pgdirect`)."""
    fast = direct(conn)
    if fast is not None:
        return fast.select(stmt, params)
    on_pg = pgdirect.pg(conn)
    if on_pg is not None:
        rows = await on_pg.select(stmt, params)
        if rows is not None:
            return rows
    return (await conn.execute(stmt, params)).all()


def api_select(model: Model, tm: TableModel, fields: tuple[str, ...] | None = None) -> sa.Select[Any]:
    """SELECT of the API view of `tm`: id + visible columns, FK columns replaced by target refs.

    Built once per (table, fields) for a Model snapshot; statements are immutable, so sharing is safe.
    """
    return _select_and_plan(model, tm, fields)[0]


def _select_and_plan(model: Model, tm: TableModel, fields: tuple[str, ...] | None) -> tuple[sa.Select[Any], Plan]:
    cached = tm.select_cache.get(fields)
    if cached is not None:
        return cached
    built = (_build_api_select(model, tm, fields), _plan(tm, fields))
    if len(tm.select_cache) < 64:
        tm.select_cache[fields] = built
    return built


def _build_api_select(model: Model, tm: TableModel, fields: tuple[str, ...] | None) -> sa.Select[Any]:
    t = tm.sa
    cols: list[Any] = [t.c.id]
    source: sa.FromClause = t
    for c in tm.api_columns():
        name = c.column_name
        if fields is not None and name not in fields:
            continue
        target = tm.fks.get(name)
        if target is None:
            cols.append(t.c[name])
            continue
        alias = model.table(target).sa.alias(f"fk_{name}")
        source = source.outerjoin(alias, alias.c.id == t.c[name])
        cols.append(alias.c.reference_id.label(name))
    return sa.select(*cols).select_from(source)


Plan = list[tuple[str, Any]]  # (attribute, DB → wire converter or None), in SELECT order after `id`


def _plan(tm: TableModel, fields: tuple[str, ...] | None) -> Plan:
    plan: Plan = []
    for c in tm.api_columns():
        if fields is not None and c.column_name not in fields:
            continue
        plan.append((c.column_name, None if c.column_name in tm.fks else fieldtypes.api_converter(c)))
    return plan


def _attrs(name: str, plan: Plan, row: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {"__type": name}
    for (key, convert), value in zip(plan, row[1:], strict=True):
        attrs[key] = value if convert is None else convert(value)
    return attrs


async def load_group_grants(
    conn: AsyncConnection, model: Model, tm: TableModel, ids: Sequence[int]
) -> dict[int, list[tuple[str, int]]]:
    out: dict[int, list[tuple[str, int]]] = {i: [] for i in ids}
    if not ids or tm.group_join is None:
        return out
    j = model.table(tm.group_join).sa
    g = model.table("usergroup").sa
    key = j.c[f"{tm.name}_id"]
    base = sa.select(key, g.c.reference_id, j.c.permission).select_from(j.join(g, g.c.id == j.c.usergroup_id))
    rows: Any
    if len(ids) == 1:  # one row (reads by id, writes): one statement per table, built and keyed once
        one = tm.select_cache.get(("#groups_of_one",))
        if one is None:
            one = tm.select_cache[("#groups_of_one",)] = (base.where(key == sa.bindparam("row_id")), ())
        rows = await select_bound(conn, one[0], {"row_id": ids[0]})
    else:
        rows = await conn.execute(base.where(key.in_(list(ids))))
    for row_id, gref, perm in rows:
        out.setdefault(row_id, []).append((gref, int(perm or 0)))
    return out


async def fetch(
    conn: AsyncConnection,
    model: Model,
    tm: TableModel,
    where: Any = None,
    *,
    order_by: Sequence[Any] = (),
    limit: int | None = None,
    offset: int = 0,
    fields: Sequence[str] | None = None,
    groups: bool = True,
) -> list[RowData]:
    """Rows of `tm` as RowData (attributes + grants), in the given order.

    `groups=False` skips loading group grants (one query less) where the caller filtered visibility in
    SQL already; the rows' grants then carry owner and mask only.
    """
    q, plan = select_rows(model, tm, where, order_by=order_by, limit=limit, offset=offset, fields=fields)
    return await run_select(conn, model, tm, q, plan, groups=groups)


def select_rows(
    model: Model,
    tm: TableModel,
    where: Any = None,
    *,
    order_by: Sequence[Any] = (),
    limit: int | None = None,
    offset: int = 0,
    fields: Sequence[str] | None = None,
) -> tuple[sa.Select[Any], Plan]:
    """The statement `fetch` runs, and its conversion plan; reusable (statements are immutable)."""
    q, plan = _select_and_plan(model, tm, tuple(fields) if fields is not None else None)
    if where is not None:
        q = q.where(where)
    if order_by:
        q = q.order_by(*order_by)
    if limit is not None:
        q = q.limit(limit).offset(offset)
    return q, plan


async def run_select(
    conn: AsyncConnection,
    model: Model,
    tm: TableModel,
    q: sa.Select[Any],
    plan: Plan,
    *,
    groups: bool,
    params: dict[str, Any] | None = None,
) -> list[RowData]:
    rows: Sequence[Any]
    if params is not None:  # `q` was built once (values bound here): prepared once too
        rows = await select_bound(conn, q, params)
    else:
        rows = (await conn.execute(q, params)).all()
    links = await load_group_grants(conn, model, tm, [r[0] for r in rows]) if groups else {}
    return _row_data(tm, plan, rows, links)


def select_within(
    fast: LoopConnection, tm: TableModel, q: sa.Select[Any], plan: Plan, steps: int
) -> list[RowData] | None:
    """`run_select(..., groups=False)` of a statement built once with its values bound, on the loop's thread
    within a budget of SQLite steps (`LoopConnection.select_within`); None when it needed more."""
    rows = fast.select_within(q, {}, steps)
    return None if rows is None else _row_data(tm, plan, rows, {})


def _row_data(
    tm: TableModel, plan: Plan, rows: Sequence[Any], links: dict[int, list[tuple[str, int]]]
) -> list[RowData]:
    out = []
    name = tm.name
    for r in rows:
        attrs = _attrs(name, plan, r)
        out.append(RowData(r[0], attrs["reference_id"], attrs, grants_of(tm, attrs, links.get(r[0], []))))
    return out


def grants_of(tm: TableModel, attrs: dict[str, Any], groups: list[tuple[str, int]]) -> Grants:
    perm = int(attrs.get("permission") or 0)
    if tm.name == "usergroup":
        groups = [(attrs["reference_id"], perm)]
    owner = attrs.get("user_account_id") if tm.owner else None
    return Grants(owner if isinstance(owner, str) else None, perm, tuple(groups))


async def fetch_one(
    conn: AsyncConnection,
    model: Model,
    tm: TableModel,
    *,
    ref: str | None = None,
    row_id: int | None = None,
    groups: bool = True,
) -> RowData | None:
    if groups and tm.group_join is not None:
        return await _fetch_one_with_groups(conn, model, tm, ref=ref, row_id=row_id)
    key = "#by_ref" if ref is not None else "#by_id"  # "#" cannot start a column name (fields tuples)
    cached = tm.select_cache.get((key,))
    if cached is None:  # one statement per table, with a bound parameter: built and keyed once
        base, plan = _select_and_plan(model, tm, None)
        t = tm.sa
        cond = t.c.reference_id == sa.bindparam("key") if ref is not None else t.c.id == sa.bindparam("key")
        cached = tm.select_cache[(key,)] = (base.where(cond), plan)
    stmt, plan = cached
    # the value at execution, not `stmt.params()`: that copies the statement and its cache key every call
    rows = await run_select(
        conn, model, tm, stmt, plan, groups=groups, params={"key": ref if ref is not None else row_id}
    )
    return rows[0] if rows else None


async def _fetch_one_with_groups(
    conn: AsyncConnection, model: Model, tm: TableModel, *, ref: str | None, row_id: int | None
) -> RowData | None:
    """`fetch_one` of a row and its group grants in one statement (one round trip on a database server, where
    the row and then its grants were two): the row LEFT JOINed to its group links, one result row per link."""
    key = "#by_ref+groups" if ref is not None else "#by_id+groups"
    cached = tm.select_cache.get((key,))
    if cached is None:
        base, plan = _select_and_plan(model, tm, None)
        t = tm.sa
        assert tm.group_join is not None
        j = model.table(tm.group_join).sa.alias("portside_link")  # aliased: `tm` may be usergroup itself
        g = model.table("usergroup").sa.alias("portside_link_group")
        links = j.join(g, g.c.id == j.c.usergroup_id)
        cond = t.c.reference_id == sa.bindparam("key") if ref is not None else t.c.id == sa.bindparam("key")
        stmt = (
            base.add_columns(g.c.reference_id.label("portside_group_ref"), j.c.permission.label("portside_group_perm"))
            .outerjoin(links, j.c[f"{tm.name}_id"] == t.c.id)
            .where(cond)
        )
        cached = tm.select_cache[(key,)] = (stmt, plan)
    stmt, plan = cached
    rows = await select_bound(conn, stmt, {"key": ref if ref is not None else row_id})
    if not rows:
        return None
    first = rows[0]
    grants = [(r[-2], int(r[-1] or 0)) for r in rows if r[-2] is not None]
    return _row_data(tm, plan, [first[:-2]], {first[0]: grants})[0]


async def fetch_by_refs(
    conn: AsyncConnection, model: Model, tm: TableModel, refs: Sequence[str], *, groups: bool = True
) -> list[RowData]:
    """`fetch(... reference_id IN refs)` through one statement per table (an expanding parameter): built and
    keyed once, where a new IN clause per call is built, keyed and looked up in the compile cache each time."""
    cached = tm.select_cache.get(("#by_refs",))
    if cached is None:
        base, plan = _select_and_plan(model, tm, None)
        cond = tm.sa.c.reference_id.in_(sa.bindparam("refs", expanding=True))
        cached = tm.select_cache[("#by_refs",)] = (base.where(cond), plan)
    stmt, plan = cached
    return await run_select(conn, model, tm, stmt, plan, groups=groups, params={"refs": list(refs)})


def count_select(tm: TableModel, where: Any = None) -> sa.Select[Any]:
    q = sa.select(sa.func.count()).select_from(tm.sa)
    return q if where is None else q.where(where)


async def count(conn: AsyncConnection, tm: TableModel, where: Any = None) -> int:
    return int(await conn.scalar(count_select(tm, where)) or 0)


async def id_of(conn: AsyncConnection, tm: TableModel, ref: str) -> int | None:
    value = await conn.scalar(sa.select(tm.sa.c.id).where(tm.sa.c.reference_id == ref))
    return None if value is None else int(value)


def event_payload(tm: TableModel, attrs: dict[str, Any]) -> dict[str, Any]:
    """The API-visible row with secrets removed (password, bcrypt, md5, encrypted columns)."""
    out = dict(attrs)
    for c in tm.columns.values():
        if fieldtypes.is_secret(c):
            out.pop(c.column_name, None)
    return out


async def insert(
    uow: UnitOfWork,
    model: Model,
    tm: TableModel,
    values: dict[str, Any],
    *,
    permission: int,
    actor: str | None,
    ref: str | None = None,
    groups: Sequence[tuple[str, int]] = (),
) -> RowData:
    """Insert one row (values are DB values, FK columns as integer ids), link it to `groups` (name, mask)
    and emit its create event carrying the final grants."""
    row_id = await insert_row(uow, model, tm, values, permission=permission, actor=actor, ref=ref, groups=groups)
    return await _emit(uow, model, tm, row_id, "create", actor)


async def insert_row(
    uow: UnitOfWork,
    model: Model,
    tm: TableModel,
    values: dict[str, Any],
    *,
    permission: int,
    actor: str | None,
    ref: str | None = None,
    groups: Sequence[tuple[str, int]] = (),
) -> int:
    """`insert` without its event: the caller finishes the row (owner, links) and then calls
    `emit_row(..., "create")`, so the one create event carries the final grants. Returns the row id."""
    stamp = now()
    row = dict(values)
    row.update(reference_id=ref or uuid7_str(), created_at=stamp, updated_at=stamp, version=1, permission=permission)
    row_id = await insert_one(uow.conn, tm.sa, row)
    if groups:
        await link_groups(uow, model, tm, row_id, groups, actor=actor, new_row=True)
    return row_id


async def emit_row(
    uow: UnitOfWork, model: Model, tm: TableModel, row_id: int, kind: str, actor: str | None, *, linked: bool = True
) -> RowData:
    """Emit the event for a row as it now stands (after `insert_row`). `linked=False`: the caller linked the
    new row to no group, so its group grants are not read back (unless a row hook may have linked it)."""
    return await _emit(uow, model, tm, row_id, kind, actor, groups=linked or tm.name in row_hooks)


async def update(
    uow: UnitOfWork, model: Model, tm: TableModel, row_id: int, values: dict[str, Any], *, actor: str | None
) -> RowData:
    t = tm.sa
    prepare = before_update_hooks.get(tm.name)
    if prepare is not None:
        await prepare(uow, model, tm, row_id, values)
    before = await _raw_row(uow, tm, row_id) if tm.name in row_hooks else None
    stamp = now()
    on_pg = pgdirect.pg(uow.conn)
    if (
        on_pg is None
        or _ROW_KEY in values
        or not await on_pg.write(
            ("update", t), lambda: _update_by_id(t), {**values, "updated_at": stamp, _ROW_KEY: row_id}
        )
    ):
        await uow.conn.execute(
            t.update().where(t.c.id == row_id).values(**values, version=t.c.version + 1, updated_at=stamp)
        )
    return await _emit(uow, model, tm, row_id, "update", actor, before)


_ROW_KEY = "portside_row_id_"  # the row's id in `_update_by_id` (a bind name no column of the update uses)


def _update_by_id(t: sa.Table) -> Any:
    """UPDATE of one row by id, bumping its version; SET gets the columns its parameters name."""
    return t.update().where(t.c.id == sa.bindparam(_ROW_KEY)).values(version=t.c.version + 1)


async def delete(
    uow: UnitOfWork, model: Model, tm: TableModel, row: RowData, *, actor: str | None, heir: int | None = None
) -> None:
    """Delete a row so that nothing refers to its id afterwards: its join-table links are deleted, other
    rows' to-one references to it are set to null and, when a user is deleted, the rows they owned pass to
    `heir` (ownerless if None). Every removed or changed row gets its event."""
    if tm.name in row_hooks:
        await _run_hook(uow, model, tm, row.id, "delete", await _raw_row(uow, tm, row.id), actor)
    for jt in model.tables.values():
        if jt.join_pair is None:
            continue
        for col, target in jt.join_pair:
            if target != tm.name:
                continue
            links = await fetch(uow.conn, model, jt, jt.sa.c[col] == row.id)
            for link in links:
                await uow.conn.execute(jt.sa.delete().where(jt.sa.c.id == link.id))
                await uow.emit(
                    EventDraft(jt.name, "delete", link.ref, event_payload(jt, link.attrs), link.grants, actor)
                )
    for other in model.tables.values():
        if other.join_pair is not None:
            continue
        for col, target in other.fks.items():
            if target != tm.name:
                continue
            t = other.sa
            cond = t.c[col] == row.id
            if other is tm:  # a row referring to itself (a user owning their own row) goes with it
                cond = sa.and_(cond, t.c.id != row.id)
            ids = (await uow.conn.scalars(sa.select(t.c.id).where(cond))).all()
            if not ids:
                continue
            value = heir if other.owner and col == OWNER_COLUMN else None
            stamp = now()
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                changes = {col: value, "version": t.c.version + 1, "updated_at": stamp}
                await uow.conn.execute(t.update().where(t.c.id.in_(chunk)).values(changes))
            for rid in ids:
                await _emit(uow, model, other, int(rid), "update", actor)
    t = tm.sa
    for col, target in tm.fks.items():  # InnoDB refuses to delete a row that refers to itself
        if target == tm.name:
            await uow.conn.execute(t.update().where(t.c.id == row.id, t.c[col] == row.id).values({col: None}))
    await uow.conn.execute(t.delete().where(t.c.id == row.id))
    await uow.emit(EventDraft(tm.name, "delete", row.ref, event_payload(tm, row.attrs), row.grants, actor))


async def _emit(
    uow: UnitOfWork,
    model: Model,
    tm: TableModel,
    row_id: int,
    kind: str,
    actor: str | None,
    before: dict[str, Any] | None = None,
    *,
    groups: bool = True,
) -> RowData:
    if tm.name in row_hooks:
        await _run_hook(uow, model, tm, row_id, kind, before, actor)
    fresh = await fetch_one(uow.conn, model, tm, row_id=row_id, groups=groups)
    if fresh is None:  # pragma: no cover - the row was written in this transaction
        raise RuntimeError(f"{tm.name} row {row_id} vanished inside its transaction")
    await uow.emit(EventDraft(tm.name, kind, fresh.ref, event_payload(tm, fresh.attrs), fresh.grants, actor))
    return fresh


async def group_ids(conn: AsyncConnection, model: Model, names: Sequence[str]) -> dict[str, int]:
    if not names:
        return {}
    g = model.table("usergroup").sa
    rows = await conn.execute(sa.select(g.c.name, g.c.id).where(g.c.name.in_(list(names))))
    return {name: int(gid) for name, gid in rows}


async def link_groups(
    uow: UnitOfWork,
    model: Model,
    tm: TableModel,
    row_id: int,
    grants: Sequence[tuple[str, int]],
    *,
    actor: str | None,
    new_row: bool = False,
) -> int:
    """Link a row to usergroups by name with the given link masks (missing groups are skipped; a row
    inserted in this transaction (`new_row`) has no links yet, so none is looked up)."""
    if tm.group_join is None or not grants:
        return 0
    jt = model.table(tm.group_join)
    ids = await group_ids(uow.conn, model, [name for name, _ in grants])
    linked = 0
    for name, perm in grants:
        gid = ids.get(name)
        if gid is None:
            continue
        j = jt.sa
        exists = None
        if not new_row:
            exists = await uow.conn.scalar(
                sa.select(j.c.id).where(j.c[f"{tm.name}_id"] == row_id, j.c.usergroup_id == gid)
            )
        if exists is None:
            await insert(uow, model, jt, {f"{tm.name}_id": row_id, "usergroup_id": gid}, permission=perm, actor=actor)
            linked += 1
    return linked
