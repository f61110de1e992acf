"""The write hook of the `calendar` table: every write, from DAV, /api or an action, runs it inside its
transaction (core.records.row_hooks, registered by the runtime).

It validates `content` for its collection's kind (a malformed object fails the whole write), refuses a
second object with the same UID in one collection, derives the indexed columns and the ETag, and appends the
change to the collection's log with the next sequence number (the ctag / sync token), deletions included.
Each bump also emits an `update` event of the collection row (its /api fields plus the new `sync_seq`, the
number in the ctag and sync token), so /live followers of a collection see its ctag move as DAV clients do;
a collection being deleted emits none for its objects.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from typing import Any

import sqlalchemy as sa

from portside.core import records
from portside.core.db import UnitOfWork
from portside.core.events import EventDraft
from portside.core.model import Model, TableModel
from portside.davstore import instances, shares
from portside.davstore.items import Invalid, derive
from portside.davstore.tables import CHANGE, COLLECTION, KIND_ADDRESSBOOK, KIND_CALENDAR, OBJECT
from portside.errors import BadRequest, Conflict, Kind, PayloadTooLarge
from portside.tools.ids import uuid7_str

MAX_OBJECT_BYTES = 1024 * 1024  # max-resource-size
NAME_RE = re.compile(r"[^/\\\x00-\x1f\x7f]{1,200}")


class UidConflict(Conflict):
    """Another object of the collection has this UID (RFC 4791/6352 no-uid-conflict)."""

    def __init__(self, href: str):
        super().__init__(f"an object with this UID exists: {href}", kind=Kind.UNIQUE_VIOLATION)
        self.href = href


class TooLarge(PayloadTooLarge):
    precondition = "max-resource-size"


# collections whose delete is running in this task: their objects' deletes log and announce nothing
_deleting: ContextVar[frozenset[int]] = ContextVar("dav_deleting", default=frozenset())


async def bump(
    uow: UnitOfWork, model: Model, collection_id: int, href: str, *, deleted: bool, actor: str | None = None
) -> int:
    """Log one change of `href` in the collection and announce the collection's new ctag (its update event);
    returns the collection's new sequence number."""
    if collection_id in _deleting.get():
        return 0
    ctm = model.table(COLLECTION)
    c = ctm.sa
    bumped = sa.func.coalesce(c.c.sync_seq, 0) + 1
    await uow.conn.execute(c.update().where(c.c.id == collection_id).values(sync_seq=bumped))
    row = (await uow.conn.execute(sa.select(c.c.sync_seq, c.c.reference_id).where(c.c.id == collection_id))).first()
    if row is None:
        return 0
    seq = int(row.sync_seq or 0)
    stamp = records.now()
    log = model.table(CHANGE).sa
    await uow.conn.execute(
        log.insert().values(
            reference_id=uuid7_str(),
            created_at=stamp,
            updated_at=stamp,
            version=1,
            permission=0,
            collection_ref=row.reference_id,
            seq=seq,
            href=href,
            deleted=deleted,
        )
    )
    fresh = await records.fetch_one(uow.conn, model, ctm, row_id=collection_id)
    if fresh is not None:  # the /api row (sync_seq is not an /api field) plus the new sequence number
        payload = {**records.event_payload(ctm, fresh.attrs), "sync_seq": seq}
        await uow.emit(EventDraft(COLLECTION, "update", fresh.ref, payload, fresh.grants, actor))
    return seq


async def object_hook(
    uow: UnitOfWork,
    model: Model,
    tm: TableModel,
    row_id: int,
    kind: str,
    before: dict[str, Any] | None,
    actor: str | None = None,
) -> None:
    t = tm.sa
    if kind == "delete":
        if before is not None and before.get("indexed_until") is not None:
            await instances.replace(uow, row_id, None)
        if before is not None and before.get("collection_id") is not None:
            coll_id = int(before["collection_id"])
            await bump(uow, model, coll_id, str(before.get("href") or ""), deleted=True, actor=actor)
        return
    row = (await uow.conn.execute(sa.select(t).where(t.c.id == row_id))).mappings().first()
    if row is None:
        return
    if not valid_name(str(row["href"] or "")):
        raise BadRequest("an object name is 1-200 characters without '/', '\\' or control characters")
    content = row["content"] or ""
    if len(content.encode("utf-8")) > MAX_OBJECT_BYTES:
        raise TooLarge(f"an object is at most {MAX_OBJECT_BYTES} bytes")
    coll_id = row["collection_id"]
    coll_kind = None
    allowed = None
    if coll_id is not None:
        c = model.table(COLLECTION).sa
        coll = (await uow.conn.execute(sa.select(c.c.kind, c.c.components).where(c.c.id == coll_id))).first()
        if coll is not None:
            coll_kind, allowed = coll.kind, str(coll.components or "")
    derived = derive(content, coll_kind)
    listed = instances.compute(content, derived.dtstart) if derived.kind == KIND_CALENDAR else None
    if coll_kind == KIND_CALENDAR and allowed and derived.component not in allowed.split(","):
        raise Invalid(f"this calendar does not hold {derived.component}", "supported-calendar-component")
    values = derived.columns()
    if coll_id is not None:
        other = await uow.conn.scalar(
            sa.select(t.c.href).where(t.c.collection_id == coll_id, t.c.uid == values["uid"], t.c.id != row_id)
        )
        if other is not None:
            raise UidConflict(str(other))
        moved = before is not None and (before.get("collection_id") != coll_id or before.get("href") != row["href"])
        if moved and before is not None and before.get("collection_id") is not None:
            old = int(before["collection_id"])
            await bump(uow, model, old, str(before.get("href") or ""), deleted=True, actor=actor)
        values["sync_seq"] = await bump(uow, model, int(coll_id), str(row["href"] or ""), deleted=False, actor=actor)
        if kind == "create":
            await shares.copy_links(uow, model, row_id, int(coll_id), actor)
    values["indexed_until"] = listed[1] if listed is not None else None
    await uow.conn.execute(t.update().where(t.c.id == row_id).values(**values))
    if listed is not None or (before is not None and before.get("indexed_until") is not None):
        await instances.replace(uow, row_id, listed[0] if listed is not None else None)


async def collection_hook(
    uow: UnitOfWork,
    model: Model,
    tm: TableModel,
    row_id: int,
    kind: str,
    before: dict[str, Any] | None,
    actor: str | None = None,
) -> None:
    """A collection's name is a path segment (checked on every write path); deleting a collection deletes its
    objects (each with its event) and its change log first, whoever deletes it (DAV or /api)."""
    t = tm.sa
    if kind != "delete":
        row = (await uow.conn.execute(sa.select(t.c.name, t.c.kind).where(t.c.id == row_id))).first()
        if row is None:
            return
        if not valid_name(str(row.name or "")):
            raise BadRequest("a collection name is 1-200 characters without '/', '\\' or control characters")
        if row.kind not in (KIND_CALENDAR, KIND_ADDRESSBOOK):
            raise BadRequest("kind is calendar or addressbook")
        if before is not None and before.get("kind") != row.kind:
            raise BadRequest("the kind of a collection cannot change")
        return
    objects = model.table(OBJECT)
    token = _deleting.set(_deleting.get() | {row_id})
    try:
        for obj in await records.fetch(uow.conn, model, objects, objects.sa.c.collection_id == row_id, groups=False):
            await records.delete(uow, model, objects, obj, actor=actor)
    finally:
        _deleting.reset(token)
    if before is not None:
        log = model.table(CHANGE).sa
        await uow.conn.execute(log.delete().where(log.c.collection_ref == before.get("reference_id")))


def valid_name(name: str) -> bool:
    return bool(NAME_RE.fullmatch(name)) and name not in (".", "..") and name.strip() == name


def register() -> None:
    """Install the hooks (idempotent); called by the runtime."""
    records.row_hooks[OBJECT] = object_hook
    records.row_hooks[COLLECTION] = collection_hook
    records.row_hooks[shares.COLLECTION_LINKS] = shares.link_hook
