"""Permission-checked operations on rows, shared by the HTTP API and action outcomes.

Order per request (spec/core.md §5.8, made consistent): table gate on the table's `world` row, then the
row check, then validation and the write. A row the caller may not Peek is reported as not found; a row
the caller may Peek but not act on is forbidden.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection

from portside import log
from portside.actions import links, site_rows
from portside.actions.asset_include import included_files
from portside.actions.convert import to_values, translate_db_error
from portside.auth import access, writes
from portside.auth.permissions import (
    CREATE,
    DELETE,
    PEEK,
    READ,
    REFER,
    UPDATE,
    Actor,
    visible_clause,
)
from portside.core import query, records
from portside.core.cache import DependentCache, EventCache
from portside.core.catalog import Catalog
from portside.core.config import ConfigStore
from portside.core.db import Database, UnitOfWork
from portside.core.events import Grants
from portside.core.loopsql import direct
from portside.core.model import OWNER_COLUMN, Model, RelSpec, TableModel
from portside.core.records import RowData
from portside.errors import BadRequest, Forbidden, Kind, NotFound
from portside.storage.assets import AssetFiles
from portside.tools.ids import parse_uuid

logger = log.get("crud")
INCLUDE_LIMIT = 50
GATE_TABLES = ("world", "world_world_id_has_usergroup_usergroup_id", "usergroup")
MAX_PLANS = 2048
COUNT_PARAMS = frozenset({"query", "filter", "filter[]", "page[after]", "page[before]"})
# SQLite steps a list page may take on the loop's thread before it moves to a worker thread: a page of 20 in
# index order under the row-permission filter takes ~4,000, page 50 ~18,500; 25,000 are ~1-2 ms of CPU
LOOP_STEPS = 25_000
# a fresh connection's first statement (or the first after a schema change) also reads the schema within that
# budget: one miss may be that, a second in a row means the page itself is long
LOOP_MISSES = 2


@dataclass
class ListPlan:
    query: query.ListQuery
    rows: sa.Select[Any]
    plan: records.Plan
    count: sa.Select[Any]
    anchors: tuple[tuple[str, sa.Select[Any]], ...] = ()  # keyset cursors: (parameter, "is it visible?")
    misses: int = 0  # consecutive times the page ran past LOOP_STEPS on the loop's thread (LOOP_MISSES: stop trying)


@dataclass
class Page:
    rows: list[RowData]
    total: int
    page: int
    size: int
    included: list[tuple[str, RowData]] = field(default_factory=list)
    linked: dict[str, dict[int, list[str]]] = field(default_factory=dict)  # rel -> row id -> refs
    files: list[dict[str, Any]] = field(default_factory=list)  # asset contents as included resources


class Crud:
    def __init__(self, db: Database, catalog: Catalog, config: ConfigStore):
        self.db = db
        self.catalog = catalog
        self.config = config
        # table gates: world rows and their group links, invalidated by events on those tables
        self.gates: EventCache[str, Grants] = EventCache(GATE_TABLES)
        # exact list totals per (table, filters, caller), dropped by any write to the table or its links
        self.counts: DependentCache[tuple[Any, ...], int] = DependentCache()
        # parsed list parameters and built statements per (model, table, parameters, caller)
        self.plans: dict[tuple[Any, ...], ListPlan] = {}
        self.files: AssetFiles | None = None  # set by the runtime: asset columns kept in cloud stores

    @property
    def model(self) -> Model:
        return self.catalog.model

    @property
    def secret(self) -> str:
        return self.config.get("encryption.secret") or ""

    def max_page_size(self) -> int:
        return self.config.get_int("api.max_page_size", 500)

    # -- checks ---------------------------------------------------------------------------------

    async def gate(self, conn: AsyncConnection, actor: Actor, tm: TableModel, right: int) -> None:
        """The table gate: the table's `world` row must allow `right`."""
        if access.administers(actor):
            return
        grants = self.gates.get(tm.name)
        if grants is None:
            grants = await self._load_gate(conn, tm)
        self._pass_gate(actor, tm, right, grants)

    async def check_gate(self, actor: Actor, tm: TableModel, right: int) -> None:
        """`gate` with no connection in hand: a read connection is taken only when the gate is not cached."""
        if access.administers(actor):
            return
        grants = self.gates.get(tm.name)
        if grants is None:
            async with self.db.read() as conn:
                grants = await self._load_gate(conn, tm)
        self._pass_gate(actor, tm, right, grants)

    async def gate_grants(self, table: str) -> Grants | None:
        """A table gate's grants (cached), or None when the table has no `world` row (nobody but administrators
        passes). For edges that decide with `auth.access` themselves (DAV)."""
        tm = self.model.table(table)
        grants = self.gates.get(tm.name)
        if grants is None:
            try:
                async with self.db.read() as conn:
                    grants = await self._load_gate(conn, tm)
            except Forbidden:
                return None
        return grants

    async def _load_gate(self, conn: AsyncConnection, tm: TableModel) -> Grants:
        generation = self.gates.generation
        w = self.model.table("world")
        rows = await records.fetch(conn, self.model, w, w.sa.c.table_name == tm.name)
        if not rows:
            raise Forbidden(f"not allowed on table {tm.name}")
        self.gates.put(tm.name, rows[0].grants, generation)
        return rows[0].grants

    @staticmethod
    def _pass_gate(actor: Actor, tm: TableModel, right: int, grants: Grants) -> None:
        if not access.may(actor, right, grants):
            raise Forbidden(f"not allowed on table {tm.name}")

    async def row(
        self, conn: AsyncConnection, actor: Actor, tm: TableModel, ref: str, right: int, *, full: bool = True
    ) -> RowData:
        """The addressed row, or 404 when it does not exist or is invisible, 403 when `right` is missing.

        `full=False` (reads) loads the row's group grants only when owner and guest bits do not decide.
        """
        canonical = parse_uuid(ref)
        if canonical is None:
            raise NotFound(f"no {tm.name} with id {ref[:64]}", kind=Kind.ROW_NOT_FOUND)
        row = await records.fetch_one(conn, self.model, tm, ref=canonical, groups=full)

        def decide(r: RowData) -> tuple[bool, bool]:
            return access.may_see(actor, r.grants), access.may(actor, right, r.grants)

        if row is None:
            raise NotFound(f"no {tm.name} with id {canonical}", kind=Kind.ROW_NOT_FOUND)
        visible, permitted = decide(row)
        if not full and not permitted and actor.groups and tm.group_join is not None:
            row = await records.fetch_one(conn, self.model, tm, ref=canonical) or row
            visible, permitted = decide(row)
        if not visible:
            raise NotFound(f"no {tm.name} with id {canonical}", kind=Kind.ROW_NOT_FOUND)
        if not permitted:
            raise Forbidden(f"not allowed to {_verb(right)} this {tm.name}")
        return row

    # -- reads ----------------------------------------------------------------------------------

    async def find(
        self,
        actor: Actor,
        table: str,
        params: Mapping[str, str],
        multi: Mapping[str, Sequence[str]],
        extra_where: Sequence[Any] = (),
    ) -> Page:
        model = self.model
        tm = model.table(table)
        principal = (actor.user_id, actor.group_ids, actor.is_admin)
        plan_key = None
        if not extra_where:
            plan_key = (model.version, tm.name, tuple(sorted(params.items())), principal, self.max_page_size())
        planned = self.plans.get(plan_key) if plan_key is not None else None
        if planned is None:
            planned = self._plan_list(model, tm, actor, params, multi, extra_where)
            if plan_key is not None:
                if len(self.plans) >= MAX_PLANS:
                    self.plans.clear()
                self.plans[plan_key] = planned
        count_key = None
        if not extra_where:
            filters = tuple(sorted((k, v) for k, v in params.items() if k in COUNT_PARAMS or k in tm.fks))
            count_key = (tm.name, filters, *principal)
        try:
            return await self._find(actor, tm, planned, count_key)
        except (DataError, ProgrammingError) as exc:  # last line of defence: the values are checked first
            logger.warning("list query rejected by the database: %s", exc.orig)
            raise BadRequest("a filter value does not fit its column") from None

    def _plan_list(
        self,
        model: Model,
        tm: TableModel,
        actor: Actor,
        params: Mapping[str, str],
        multi: Mapping[str, Sequence[str]],
        extra_where: Sequence[Any],
    ) -> ListPlan:
        """Parse the parameters once into ready statements (reused for the same caller and parameters)."""
        lq = query.parse(model, tm, params, multi, self.max_page_size())
        where = [*lq.where, *extra_where]
        vis = visible_clause(model, tm, actor, READ)
        if vis is not None:
            where.append(vis)
        cond = sa.and_(*where) if where else None
        rows, plan = records.select_rows(
            model, tm, cond, order_by=lq.order_by, limit=lq.size, offset=(lq.page - 1) * lq.size, fields=lq.fields
        )
        # a cursor must name a row the caller may list: an invisible row answers like an unknown one
        anchors = tuple(
            (key, sa.select(tm.sa.c.id).where(tm.sa.c.reference_id == ref, *([vis] if vis is not None else [])))
            for key, ref in lq.cursors
        )
        return ListPlan(lq, rows, plan, records.count_select(tm, cond), anchors)

    async def _find(self, actor: Actor, tm: TableModel, planned: ListPlan, count_key: tuple[Any, ...] | None) -> Page:
        model = self.model
        lq = planned.query
        total = self.counts.get(count_key) if count_key is not None else None
        if total is not None and planned.misses < LOOP_MISSES and not lq.include and self.db.loop_reads:
            page = await self._find_on_loop(actor, tm, planned, total)
            if page is not None:
                return page
        # a page under a row-permission filter may scan and sort many rows (on the loop's thread without a
        # bound it stalled the loop: p99 1.25 s against 0.26 s in worker threads), so what did not fit in
        # LOOP_STEPS, counts and includes run on aiosqlite's threads
        async with self.db.read() as conn:
            await self._list_checks(conn, actor, tm, planned)
            if total is None:
                deps = (tm.name, tm.group_join) if tm.group_join else (tm.name,)
                generation = self.counts.generation(deps)
                total = int(await conn.scalar(planned.count) or 0)
                if count_key is not None:
                    self.counts.put(count_key, total, deps, generation)
            rows = await records.run_select(conn, model, tm, planned.rows, planned.plan, groups=False)
            page = Page(rows, total, lq.page, lq.size)
            if lq.include:
                await self._include(conn, actor, tm, page, lq.include)
        if lq.include and self.files is not None:  # after the connection is back: store reads are slow
            page.files = await included_files(self.files, self.config, tm, page.rows, lq.include)
        return page

    async def _find_on_loop(self, actor: Actor, tm: TableModel, planned: ListPlan, total: int) -> Page | None:
        """The page read on the loop's thread (SQLite; no worker-thread round trips, a statement prepared
        once), or None when it takes more than LOOP_STEPS (LOOP_MISSES times in a row: the plan then stays
        off the loop)."""
        async with self.db.read(quick=True) as conn:
            fast = direct(conn)
            if fast is None:
                return None
            await self._list_checks(conn, actor, tm, planned)
            rows = records.select_within(fast, tm, planned.rows, planned.plan, LOOP_STEPS)
        if rows is None:
            planned.misses += 1
            return None
        planned.misses = 0
        lq = planned.query
        return Page(rows, total, lq.page, lq.size)

    async def _list_checks(self, conn: AsyncConnection, actor: Actor, tm: TableModel, planned: ListPlan) -> None:
        """The table gate, then each keyset cursor must name a row the caller may list."""
        await self.gate(conn, actor, tm, PEEK)
        for key, anchor in planned.anchors:
            if await conn.scalar(anchor.limit(1)) is None:
                raise BadRequest(f"{key} does not name a row of this list", parameter=key)

    async def get(self, actor: Actor, table: str, ref: str, include: Sequence[str] = ()) -> Page:
        model = self.model
        tm = model.table(table)
        async with self.db.read(quick=True) as conn:  # point reads (includes are bounded by INCLUDE_LIMIT)
            await self.gate(conn, actor, tm, PEEK)
            row = await self.row(conn, actor, tm, ref, READ, full=False)
            page = Page([row], 1, 1, 1)
            if include:
                await self._include(conn, actor, tm, page, include)
        if include and self.files is not None:
            page.files = await included_files(self.files, self.config, tm, page.rows, include)
        return page

    async def _include(
        self, conn: AsyncConnection, actor: Actor, tm: TableModel, page: Page, names: Sequence[str]
    ) -> None:
        model = self.model
        wanted: list[RelSpec] = []
        for rel in tm.relations.values():
            if "*" in names or rel.name in names or rel.target in names:
                wanted.append(rel)
        ids = [r.id for r in page.rows]
        seen: set[tuple[str, str]] = set()
        for rel in wanted:
            target = model.table(rel.target)
            vis = visible_clause(model, target, actor, READ)
            if rel.fk_column is not None:
                refs = {r.attrs.get(rel.fk_column) for r in page.rows} - {None}
                if not refs:
                    continue
                where: Any = target.sa.c.reference_id.in_(list(refs))
                found = await records.fetch(
                    conn, model, target, where if vis is None else sa.and_(where, vis), groups=False
                )
            elif rel.join_table is not None and rel.join_self and rel.join_target:
                j = model.table(rel.join_table).sa
                links = (
                    await conn.execute(
                        sa.select(j.c[rel.join_self], j.c[rel.join_target])
                        .where(j.c[rel.join_self].in_(ids))
                        .order_by(j.c.id.desc())
                        .limit(INCLUDE_LIMIT * max(1, len(ids)))
                    )
                ).all()
                target_ids = {t for _, t in links}
                where = target.sa.c.id.in_(list(target_ids))
                found = await records.fetch(
                    conn, model, target, where if vis is None else sa.and_(where, vis), groups=False
                )
                by_id = {f.id: f.ref for f in found}
                linked = page.linked.setdefault(rel.name, {})
                for self_id, tid in links:
                    if tid in by_id:
                        linked.setdefault(self_id, []).append(by_id[tid])
            elif rel.reverse_fk is not None:
                where = target.sa.c[rel.reverse_fk].in_(ids)
                found = await records.fetch(
                    conn,
                    model,
                    target,
                    where if vis is None else sa.and_(where, vis),
                    limit=INCLUDE_LIMIT * max(1, len(ids)),
                    groups=False,
                )
            else:
                continue
            for f in found:
                if (target.name, f.ref) not in seen:
                    seen.add((target.name, f.ref))
                    page.included.append((target.name, f))

    # -- writes ---------------------------------------------------------------------------------

    async def create(
        self,
        actor: Actor,
        table: str,
        attrs: Any,
        relationships: Any = None,
        *,
        ref: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> RowData:
        if uow is None:
            try:
                async with self.db.transaction() as own:
                    return await self.create(actor, table, attrs, relationships, ref=ref, uow=own)
            except (IntegrityError, DBAPIError) as exc:
                raise translate_db_error(exc) from None
        model = self.model
        tm = model.table(table)
        await self.gate(uow.conn, actor, tm, CREATE)
        attrs = links.with_to_one(tm, attrs, relationships)
        ref = _client_ref(ref, attrs)
        values = await to_values(uow.conn, model, tm, actor, attrs, partial=False, secret=self.secret)
        if table == site_rows.TABLE:  # where a site points and what it is called reach beyond the row
            await site_rows.check_write(uow.conn, model, self.config, actor, values, None)
        if self.files is not None:
            values = await self.files.write(tm, values)  # asset columns kept in a cloud store
        permission = values.pop("permission", None)
        if permission is None:
            permission = self.catalog.default_permission(tm.decl)
        self_owned = False
        if tm.owner:
            if OWNER_COLUMN in values:
                writes.check_owner(actor, values[OWNER_COLUMN])
            elif access.owns_itself(table):  # a user owns their own row unless an administrator says otherwise
                self_owned = True
            else:
                values[OWNER_COLUMN] = actor.user_id
        to_link = await links.to_many(self, uow.conn, actor, tm, relationships)
        writes.check_links(actor, tm, to_link)
        groups = [(g.name, g.permission or self._link_default(tm)) for g in tm.decl.default_groups]
        row_id = await records.insert_row(
            uow, model, tm, values, permission=permission, actor=actor.ref, ref=ref, groups=groups
        )
        if self_owned:
            await uow.conn.execute(tm.sa.update().where(tm.sa.c.id == row_id).values({OWNER_COLUMN: row_id}))
        if to_link:
            await links.link(self, uow, actor, tm, row_id, to_link, replace=False, announce=False)
        # one create event, carrying the row's final owner and group grants
        return await records.emit_row(uow, model, tm, row_id, "create", actor.ref, linked=bool(groups or to_link))

    def _link_default(self, tm: TableModel) -> int:
        if tm.group_join is None:
            return 0
        return self.catalog.default_permission(self.model.table(tm.group_join).decl)

    async def update(
        self,
        actor: Actor,
        table: str,
        ref: str,
        attrs: Any,
        relationships: Any = None,
        *,
        uow: UnitOfWork | None = None,
    ) -> RowData:
        if uow is None:
            try:
                async with self.db.transaction() as own:
                    return await self.update(actor, table, ref, attrs, relationships, uow=own)
            except (IntegrityError, DBAPIError) as exc:
                raise translate_db_error(exc) from None
        model = self.model
        tm = model.table(table)
        await self.gate(uow.conn, actor, tm, UPDATE)
        row = await self.row(uow.conn, actor, tm, ref, UPDATE)
        attrs = links.with_to_one(tm, attrs or {}, relationships)
        values = await to_values(uow.conn, model, tm, actor, attrs, partial=True, secret=self.secret, current=row)
        if table == site_rows.TABLE:
            await site_rows.check_write(uow.conn, model, self.config, actor, values, row)
        if self.files is not None:
            values = await self.files.write(tm, values)
        if access.revokes_tokens(table, values):
            values["auth_version"] = tm.sa.c.auth_version + 1  # every older token stops working
        to_link = await links.to_many(self, uow.conn, actor, tm, relationships)
        writes.check_links(actor, tm, to_link)
        if to_link:
            await links.link(self, uow, actor, tm, row.id, to_link, replace=False)
        return await records.update(uow, model, tm, row.id, values, actor=actor.ref)

    async def change_links(self, actor: Actor, table: str, ref: str, name: str, body: Any, mode: str) -> None:
        """Relationship endpoint writes: mode add (POST), replace (PATCH) or remove (DELETE)."""
        await links.change(self, actor, table, ref, name, body, mode)

    async def delete(self, actor: Actor, table: str, ref: str, *, uow: UnitOfWork | None = None) -> None:
        if uow is None:
            try:
                async with self.db.transaction() as own:
                    return await self.delete(actor, table, ref, uow=own)
            except (IntegrityError, DBAPIError) as exc:
                raise translate_db_error(exc) from None
        model = self.model
        tm = model.table(table)
        writes.check_delete(actor, tm)
        await self.gate(uow.conn, actor, tm, DELETE)
        row = await self.row(uow.conn, actor, tm, ref, DELETE)
        heir = access.deletion_heir(actor, table, row.id)  # a deleted user's rows pass to the administrator
        if heir is not None:
            for name in access.PERSONAL_TABLES:  # a user's own credentials go with them, never to the heir
                personal = model.tables.get(name)
                if personal is not None:
                    for owned in await records.fetch(uow.conn, model, personal, personal.sa.c[OWNER_COLUMN] == row.id):
                        await records.delete(uow, model, personal, owned, actor=actor.ref)
        await records.delete(uow, model, tm, row, actor=actor.ref, heir=heir)


def _client_ref(ref: str | None, attrs: Any) -> str | None:
    """The client-chosen id of a new row: `data.id` and/or `attributes.reference_id` (a UUID; both must agree)."""
    chosen = attrs.get("reference_id") if isinstance(attrs, dict) else None
    if chosen is not None:
        if not isinstance(chosen, str) or parse_uuid(chosen) is None:
            raise BadRequest("reference_id must be a UUID", pointer="/data/attributes/reference_id")
        if ref is not None and parse_uuid(ref) != parse_uuid(chosen):
            raise BadRequest("reference_id differs from data.id", pointer="/data/attributes/reference_id")
        ref = chosen
    if ref is not None and parse_uuid(ref) is None:
        raise BadRequest("data.id must be a UUID", pointer="/data/id")
    return parse_uuid(ref) if ref is not None else None


def _verb(right: int) -> str:
    return {PEEK: "see", READ: "read", CREATE: "create", UPDATE: "update", DELETE: "delete", REFER: "refer to"}.get(
        right, "use"
    )
