"""Table rights for /live, from the row layer: the runtime gives `LiveAccess` to the live service (its
`TableRights`: table gates for subscribe and new-message, a table topic's permission) and its `may_subscribe`
to the live hub, which re-runs it when table gates or topic permissions change: whether a user may still
follow a topic. Changes to the user themselves (password, groups) reach sessions through the session
registry (auth/sessions.py)."""

from __future__ import annotations

from portside.actions.crud import Crud
from portside.auth.identity import actor_for_user
from portside.auth.permissions import PEEK, READ, Actor
from portside.core import records
from portside.core.catalog import Catalog
from portside.core.db import Database
from portside.core.model import TableModel
from portside.errors import Forbidden
from portside.realtime import topics


async def fresh_actor(db: Database, catalog: Catalog, ref: str) -> Actor | None:
    """The user's identity as stored now (None: the user is gone)."""
    async with db.read() as conn:
        return await actor_for_user(conn, catalog.model, ref=ref)


class LiveAccess:
    def __init__(self, db: Database, catalog: Catalog, crud: Crud):
        self.db = db
        self.catalog = catalog
        self.crud = crud

    async def may_subscribe(self, who: Actor, topic: str) -> bool:
        """Whether `who` may (still) follow `topic`: a table's gate (peek), or a user topic's read right."""
        model = self.catalog.model
        tm = model.tables.get(topic)
        try:
            if tm is None:
                await topics.user_topic(self.db, model, who, topic, READ, suffix=False)
            else:
                await self.crud.check_gate(who, tm, PEEK)
        except (Forbidden, topics.TopicError):
            return False
        return True

    async def check_table(self, who: Actor, tm: TableModel, right: int) -> None:
        """The table's gate for `right` (raises Forbidden)."""
        await self.crud.check_gate(who, tm, right)

    async def table_permission(self, who: Actor, tm: TableModel) -> int:
        """The permission of the table's `world` row, for a caller who may peek at the table (else Forbidden)."""
        model = self.catalog.model
        w = model.table("world")
        async with self.db.read() as conn:
            await self.crud.gate(conn, who, tm, PEEK)
            rows = await records.fetch(conn, model, w, w.sa.c.table_name == tm.name, groups=False)
        return rows[0].grants.permission if rows else 0
