"""The rights check long-lived /live subscriptions are re-run through when table gates or topic permissions
change (the runtime gives it to the live hub at construction): whether a user may still follow a topic. Changes
to the user themselves (password, groups) reach sessions through the session registry (auth/sessions.py)."""

from __future__ import annotations

from portside.actions.crud import Crud
from portside.auth.identity import actor_for_user
from portside.auth.permissions import PEEK, READ, Actor
from portside.core.catalog import Catalog
from portside.core.db import Database
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
