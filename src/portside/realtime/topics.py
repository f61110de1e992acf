"""User topics for /live: durable rows of `live_topic` (owner + permission), and `new-message` publishing.

Topic names share one name space with tables: a table name is reserved. A create is one insert against a
unique name, so of two concurrent creates exactly one wins. Messages are written to the event log like
row events (type `new-message`, source = publisher), so they cross nodes and can be resumed by offset.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from portside.auth import access
from portside.auth.permissions import DELETE, PEEK, READ, Actor
from portside.core import db_errors, masks, records
from portside.core.cache import EventCache
from portside.core.db import Database, UnitOfWork
from portside.core.db_errors import Fault
from portside.core.events import Event, EventDraft, Grants
from portside.core.masks import OWNER_ALL
from portside.core.model import Model
from portside.core.records import RowData
from portside.errors import Kind
from portside.tools import names
from portside.tools.ids import uuid7_str

TABLE = "live_topic"
# what a topic row's rights are read from: the row (owner, permission), its group links, the groups
RIGHTS_TABLES = (TABLE, f"{TABLE}_{TABLE}_id_has_usergroup_usergroup_id", "usergroup")
MAX_NAME = 200
DEFAULT_TOPIC_PERMISSION = OWNER_ALL  # 16256: the owner may do everything, as in Daptin
# a message is delivered to every subscriber of its topic (they passed the topic check when subscribing)
MESSAGE_GRANTS = Grants(None, masks.guest(PEEK, READ))


class TopicError(Exception):
    """A topic request that cannot be done; `str(exc)` is the protocol's error string (Daptin's exact wording),
    `kind` what it is (decide by the kind, never by the string)."""

    def __init__(self, message: str, kind: Kind = Kind.BAD_REQUEST):
        super().__init__(message)
        self.kind = kind


def check_name(model: Model, name: object) -> str:
    """The topic name to create (NFC, exact; `tools.names`); a table's name or a look-alike of one is reserved."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        raise TopicError("missing or invalid topicName")
    try:
        name = names.identifier(name, "topic name", MAX_NAME)
    except names.BadName:
        raise TopicError("invalid topic name") from None
    if "," in name:
        raise TopicError("invalid topic name")
    if name in model.tables or names.skeleton(name) in {names.skeleton(t) for t in model.tables}:
        raise TopicError("cannot create topic with reserved name", Kind.CONFLICT)
    return name


class TopicRows:
    """User-topic rows by name as last read (None: no such topic), kept until a change event on the topics, their
    group links or the groups drops them all (core/cache.py: this node's writes before their response, other
    nodes' from the bus). A fleet of sockets subscribing to one topic then reads it once, not once each; the
    rights are still decided per caller from the row's grants."""

    def __init__(self, max_entries: int = 10_000):
        self.cache: EventCache[str, tuple[RowData | None]] = EventCache(RIGHTS_TABLES, max_entries)
        self.reads = 0  # database reads done (tests)

    def on_events(self, events: list[Event]) -> None:
        self.cache.on_events(events)


async def find(db: Database, model: Model, name: str, rows: TopicRows | None = None) -> RowData | None:
    try:
        name = names.identifier(name, "topic name", MAX_NAME)
    except names.BadName:
        return None
    hit = rows.cache.get(name) if rows is not None else None
    if hit is not None:
        return hit[0]
    generation = rows.cache.generation if rows is not None else 0
    tm = model.table(TABLE)
    async with db.read() as conn:
        found = await records.fetch(conn, model, tm, tm.sa.c.name == name)
    row = found[0] if found else None
    if rows is not None:
        rows.reads += 1
        rows.cache.put(name, (row,), generation)
    return row


async def create(db: Database, model: Model, actor: Actor, name: object) -> RowData:
    if actor.user_id is None:
        raise TopicError("sign in to create topics", Kind.UNAUTHORIZED)
    name = check_name(model, name)
    tm = model.table(TABLE)
    try:
        async with db.transaction() as uow:
            return await records.insert(
                uow,
                model,
                tm,
                {"name": name, "user_account_id": actor.user_id},
                permission=DEFAULT_TOPIC_PERMISSION,
                actor=actor.ref,
            )
    except IntegrityError as exc:
        if db_errors.classify(exc) is not Fault.UNIQUE:
            raise
        raise TopicError("topic already exists", Kind.UNIQUE_VIOLATION) from None


async def destroy(db: Database, model: Model, actor: Actor, name: object) -> str:
    if isinstance(name, str) and name in model.tables:
        raise TopicError("cannot delete system topic", Kind.FORBIDDEN)
    if not isinstance(name, str) or not name:
        raise TopicError("missing or invalid topicName")
    row = await find(db, model, name)
    if row is None:
        raise TopicError("topic not found", Kind.NOT_FOUND)
    if not access.may(actor, DELETE, row.grants):
        raise TopicError("permission denied", Kind.FORBIDDEN)
    async with db.transaction() as uow:
        await records.delete(uow, model, model.table(TABLE), row, actor=actor.ref)
    return name


async def set_permission(db: Database, model: Model, actor: Actor, name: object, permission: object) -> int:
    if not isinstance(name, str) or not name:
        raise TopicError("missing or invalid topicName")
    if permission is None:
        raise TopicError("missing permission value", Kind.VALIDATION_FAILED)
    if isinstance(permission, bool) or not isinstance(permission, int | float):
        raise TopicError("invalid permission value", Kind.VALIDATION_FAILED)
    value = int(permission)
    if not masks.is_mask(value):
        raise TopicError("invalid permission value", Kind.VALIDATION_FAILED)
    if name in model.tables:
        raise TopicError("cannot modify system topic permissions", Kind.FORBIDDEN)
    row = await find(db, model, name)
    if row is None:
        raise TopicError("topic not found", Kind.NOT_FOUND)
    if not access.may_set_topic_permission(actor, row.grants):
        raise TopicError("only owner or admin can change permissions", Kind.FORBIDDEN)
    async with db.transaction() as uow:
        await records.update(uow, model, model.table(TABLE), row.id, {"permission": value}, actor=actor.ref)
    return value


async def user_topic(
    db: Database, model: Model, actor: Actor, name: str, right: int, suffix: bool, rows: TopicRows | None = None
) -> RowData:
    """The topic's row if `actor` has `right` on it (else TopicError); `rows`: read through that cache."""
    row = await find(db, model, name, rows)
    tail = f": {name}" if suffix else ""
    if row is None:
        raise TopicError(f"topic not found{tail}", Kind.NOT_FOUND)
    if not access.may(actor, right, row.grants):
        raise TopicError(f"permission denied{tail}", Kind.FORBIDDEN)
    return row


async def publish(db: Database, actor: Actor, topic: str, message: dict[str, object]) -> Event:
    async with db.transaction() as uow:
        return await publish_in(uow, actor, topic, message)


async def publish_in(uow: UnitOfWork, actor: Actor, topic: str, message: dict[str, object]) -> Event:
    """Append a `new-message` event inside the caller's transaction (delivered after its commit)."""
    return await uow.emit(EventDraft(topic, "new-message", uuid7_str(), dict(message), MESSAGE_GRANTS, actor.ref))
