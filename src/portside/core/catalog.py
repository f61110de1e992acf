"""The catalog: where the live Model comes from and how it changes without a restart.

Sources, merged in this order: table/action declarations persisted in `world`/`action` rows, the
built-in documents (system tables, built-in actions), then schema files. Applying a schema at runtime
migrates the database, persists the declarations in `world`/`action` (emitting change events, which make
every other node reload) and swaps the Model in at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from portside import log
from portside.core import masks, records
from portside.core.config import ConfigStore
from portside.core.db import Database, UnitOfWork
from portside.core.migrate import migrate
from portside.core.model import MEMBERSHIP, Model, build, check_reserved
from portside.core.schema import SchemaDoc, Table, discover, load_files, parse_action, parse_table
from portside.errors import SchemaError
from portside.tools import jsonutil

logger = log.get("catalog")
BOOT_GROUPS = (masks.GUESTS_GROUP, masks.ADMIN_GROUP, masks.USERS_GROUP)
# access grants a release added to a built-in table's declaration (name -> (table, usergroup) pairs): new
# databases get them with the table; older ones once, at the next start (`Catalog._late_grants`)
LATE_GRANTS: dict[str, tuple[tuple[str, str], ...]] = {
    "2026-12-users-manage-sites": (("site", masks.USERS_GROUP),),
}
LATE_GRANTS_KEY = "catalog.late_grants"


class Catalog:
    def __init__(
        self,
        db: Database,
        config: ConfigStore,
        builtin: list[SchemaDoc],
        data_dir: Path,
        schema_paths: tuple[str, ...] = (),
    ):
        self.db = db
        self.config = config
        self.builtin = builtin
        self.data_dir = data_dir
        self.schema_paths = schema_paths
        self._model: Model | None = None
        self._lock = asyncio.Lock()
        self.open_mode = True  # no administrator yet: everything is open, as in Daptin
        self.listeners: list[Callable[[Model], None]] = []
        self.extra_docs: list[SchemaDoc] = []

    @property
    def model(self) -> Model:
        if self._model is None:
            raise RuntimeError("catalog not started")
        return self._model

    def _swap(self, model: Model) -> None:
        self._model = model
        for fn in self.listeners:
            fn(model)

    def default_permission(self, table: Table) -> int:
        if table.default_permission:
            return table.default_permission
        return masks.ALLOW_ALL if self.open_mode else masks.DEFAULT_PERMISSION

    # -- loading -------------------------------------------------------------------------------

    def file_docs(self) -> list[SchemaDoc]:
        return load_files(discover(self.data_dir, self.schema_paths))

    async def persisted_docs(self) -> list[SchemaDoc]:
        """Declarations stored in world/action rows (absent on a fresh database)."""
        async with self.db.read() as conn:
            tables = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
            if "world" not in tables:
                return []
            doc = SchemaDoc(source="<database>")
            rows = await conn.execute(sa.text("SELECT table_name, world_schema_json FROM world"))
            for name, raw in rows:
                if "_has_" in name or not raw:
                    continue
                try:
                    data = jsonutil.loads(raw, max_depth=32)
                    doc.tables.append(parse_table(data, f"world({name})"))
                    doc.relations += parse_table(
                        {"TableName": name, "Relations": data.get("Relations") or []}, f"world({name})"
                    ).relations
                except (SchemaError, jsonutil.JSONError, AttributeError) as exc:
                    logger.warning("ignoring stored schema of %s: %s", name, exc)
            if "action" in tables:
                rows = await conn.execute(sa.text("SELECT action_name, action_schema FROM action"))
                for name, raw in rows:
                    try:
                        doc.actions.append(parse_action(jsonutil.loads(raw or "{}"), f"action({name})"))
                    except (SchemaError, jsonutil.JSONError) as exc:
                        logger.warning("ignoring stored action %s: %s", name, exc)
            return [doc]

    async def start(self) -> None:
        docs = await self.persisted_docs() + self.builtin + self.file_docs()
        model = build(docs)
        await migrate(self.db, model)
        self._swap(model)
        await self.refresh_open_mode()
        await self.seed()
        await self.sync(model)

    async def reload(self) -> None:
        """Rebuild from the database after another node changed world/action rows."""
        async with self._lock:
            docs = await self.persisted_docs() + self.builtin + self.file_docs() + self.extra_docs
            model = build(docs)
            await migrate(self.db, model)
            self._swap(model)
            await self.refresh_open_mode()
            await self.sync(model)

    def check(self, doc: SchemaDoc) -> Model:
        """Build (without applying) the model that `doc` would give; raises SchemaError if invalid."""
        check_reserved(doc)
        current = self.model
        docs = [
            SchemaDoc(
                tables=list(current.decls.values()),
                relations=list(current.relations),
                actions=list(current.actions.values()),
            ),
            doc,
        ]
        return build(docs)

    async def apply(self, doc: SchemaDoc, actor: str | None = None) -> Model:
        """Apply a schema at runtime: validate, migrate, persist, swap. Raises SchemaError, changes nothing."""
        async with self._lock:
            docs = await self.persisted_docs() + self.builtin + self.file_docs() + self.extra_docs + [doc]
            model = build(docs)  # SchemaError here leaves everything as it was
            await migrate(self.db, model)
            self.extra_docs.append(doc)
            self._swap(model)
            await self.sync(model, actor)
            return model

    async def refresh_open_mode(self) -> None:
        async with self.db.read() as conn:
            self.open_mode = not await admin_exists(conn, self.model)

    # -- persisted rows --------------------------------------------------------------------------

    async def seed(self) -> None:
        """Bootstrap data on an empty database: groups, the guest user, the local store."""
        model = self.model
        g = model.table("usergroup")
        async with self.db.transaction(exclusive=True) as uow:
            have = await records.group_ids(uow.conn, model, BOOT_GROUPS)
            for name in BOOT_GROUPS:
                if name not in have:
                    await records.insert(uow, model, g, {"name": name}, permission=masks.DEFAULT_PERMISSION, actor=None)
            u = model.table("user_account")
            guest = await uow.conn.scalar(sa.select(u.sa.c.id).where(u.sa.c.email == "guest@cms.go"))
            if guest is None:
                row = await records.insert(
                    uow,
                    model,
                    u,
                    {"name": "guest", "email": "guest@cms.go", "confirmed": False, "auth_version": 1},
                    permission=masks.DEFAULT_PERMISSION,
                    actor=None,
                )
                await records.link_groups(
                    uow, model, u, row.id, [(masks.USERS_GROUP, masks.DEFAULT_PERMISSION)], actor=None
                )
            cs = model.table("cloud_store")
            store = await uow.conn.scalar(sa.select(cs.sa.c.id).where(cs.sa.c.name == "localstore"))
            if store is None:
                root = str((self.data_dir / "storage").resolve())
                await records.insert(
                    uow,
                    model,
                    cs,
                    {"name": "localstore", "store_type": "local", "store_provider": "local", "root_path": root},
                    permission=masks.DEFAULT_PERMISSION,
                    actor=None,
                )

    async def sync(self, model: Model, actor: str | None = None) -> None:
        """Write one world row per table and one action row per action, as declared."""
        async with self.db.transaction(exclusive=True) as uow:
            created = await self._sync_world(uow, model, actor)
            await self._late_grants(uow, model, created, actor)
            await self._sync_actions(uow, model, actor)

    async def _late_grants(self, uow: UnitOfWork, model: Model, created: set[str], actor: str | None) -> None:
        """Give databases made before a release the table access grants that release added (`LATE_GRANTS`),
        once: what was given is recorded in the config, so an administrator who later takes a grant away
        keeps it away. A table created just now got its grants with its world row."""
        done = set((self.config.get(LATE_GRANTS_KEY) or "").split())
        todo = [name for name in LATE_GRANTS if name not in done]
        if not todo:
            return
        w = model.table("world")
        for name in todo:
            for table, group in LATE_GRANTS[name]:
                tm = model.tables.get(table)
                if tm is None or table in created:
                    continue
                perm = next((g.permission for g in tm.decl.access_groups if g.name == group), None)
                row_id = await uow.conn.scalar(sa.select(w.sa.c.id).where(w.sa.c.table_name == table))
                if perm is not None and row_id is not None:
                    await records.link_groups(uow, model, w, int(row_id), [(group, perm)], actor=actor)
                    logger.info("table %s: usergroup %s given its access (added by a later release)", table, group)
            done.add(name)
        await self.config.set(LATE_GRANTS_KEY, " ".join(sorted(done)), uow=uow)

    async def _sync_world(self, uow: UnitOfWork, model: Model, actor: str | None) -> set[str]:
        """Returns the tables whose world row was created now."""
        created: set[str] = set()
        w = model.table("world")
        existing = {
            r.table_name: r
            for r in await uow.conn.execute(sa.select(w.sa.c.id, w.sa.c.table_name, w.sa.c.world_schema_json))
        }
        for name, tm in model.tables.items():
            decl = tm.decl
            data = decl.to_json()
            data["Relations"] = [r.to_json() for r in model.relations if r.subject == name]
            text = jsonutil.dumps_str(data)
            old = existing.get(name)
            if old is None:
                perm = decl.permission or (masks.ALLOW_ALL if self.open_mode else masks.DEFAULT_PERMISSION)
                row = await records.insert(
                    uow,
                    model,
                    w,
                    {
                        "table_name": name,
                        "world_schema_json": text,
                        "is_top_level": not tm.is_join,
                        "is_hidden": decl.is_hidden,
                        "is_join_table": tm.is_join,
                        "default_order": decl.default_order or "+id",
                        "icon": decl.icon or "fa-star",
                    },
                    permission=perm,
                    actor=actor,
                )
                grants = [(gr.name, gr.permission or masks.DEFAULT_PERMISSION) for gr in decl.access_groups]
                await records.link_groups(uow, model, w, row.id, grants, actor=actor)
                created.add(name)
            elif old.world_schema_json != text:
                await records.update(uow, model, w, old.id, {"world_schema_json": text}, actor=actor)
        return created

    async def _sync_actions(self, uow: UnitOfWork, model: Model, actor: str | None) -> None:
        w, a = model.table("world").sa, model.table("action")
        worlds = {r.table_name: r.id for r in await uow.conn.execute(sa.select(w.c.id, w.c.table_name))}
        existing: dict[tuple[str, int], Any] = {
            (r.action_name, r.world_id): r
            for r in await uow.conn.execute(
                sa.select(a.sa.c.id, a.sa.c.action_name, a.sa.c.world_id, a.sa.c.action_schema)
            )
        }
        for (on_type, name), act in model.actions.items():
            wid = worlds[on_type]
            text = jsonutil.dumps_str(act.to_json())
            old = existing.get((name, wid))
            if old is None:
                default = masks.ACTION_SCHEMA_DEFAULT if not self.open_mode else masks.ALLOW_ALL
                await records.insert(
                    uow,
                    model,
                    a,
                    {
                        "action_name": name,
                        "label": act.label or name,
                        "instance_optional": act.instance_optional,
                        "action_schema": text,
                        "world_id": wid,
                    },
                    permission=act.permission or default,
                    actor=actor,
                )
            elif old.action_schema != text:
                await records.update(
                    uow,
                    model,
                    a,
                    old.id,
                    {"action_schema": text, "label": act.label or name, "instance_optional": act.instance_optional},
                    actor=actor,
                )


async def admin_exists(conn: Any, model: Model, *, lock: bool = False) -> bool:
    """Whether any user is a member of the `administrators` group (not guessed from a user count).

    `lock`: a locking read (FOR UPDATE), which sees the latest committed rows even inside a REPEATABLE READ
    snapshot (MariaDB) and keeps them until the transaction ends."""
    m, g = model.table(MEMBERSHIP).sa, model.table("usergroup").sa
    q = sa.select(m.c.id).select_from(m.join(g, g.c.id == m.c.usergroup_id)).where(g.c.name == masks.ADMIN_GROUP)
    q = q.limit(1)
    if lock:
        q = q.with_for_update()
    return (await conn.scalar(q)) is not None
