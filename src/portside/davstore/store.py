"""Collections and objects for the DAV edge: lookups, writes through core.records (so the write hook and the
change events are the same as for /api) and the change log. Rights are decided by the caller through
`auth.access` on the collection's grants; this module checks none.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from portside.auth.permissions import Actor
from portside.core import records
from portside.core.catalog import Catalog
from portside.core.db import Database, UnitOfWork
from portside.core.events import Grants
from portside.core.model import OWNER_COLUMN, Model
from portside.davstore.hooks import valid_name
from portside.davstore.tables import CHANGE, COLLECTION, OBJECT
from portside.errors import BadRequest, Conflict, Forbidden, Kind, MethodNotAllowed, NotFound, PortsideError
from portside.tools import jsonutil

MAX_COLLECTION_OBJECTS = 100_000
MAX_COLLECTIONS = 500  # per user and kind


class PreconditionFailed(PortsideError):
    """If-Match / If-None-Match did not hold (HTTP 412)."""

    kind = Kind.PRECONDITION_FAILED


@dataclass
class Coll:
    id: int
    ref: str
    name: str
    kind: str
    owner_id: int | None
    owner_ref: str | None
    grants: Grants
    permission: int
    display_name: str | None
    description: str | None
    color: str | None
    components: str
    timezone: str | None
    properties: dict[str, str]
    sync_seq: int
    updated_at: dt.datetime | None


@dataclass
class Obj:
    id: int
    ref: str
    href: str
    etag: str
    component: str | None
    updated_at: dt.datetime | None
    length: int = 0
    content: str | None = None
    seq: int = 0  # the collection's sequence number of this object's last change


class DavStore:
    def __init__(self, db: Database, catalog: Catalog):
        self.db = db
        self.catalog = catalog

    @property
    def model(self) -> Model:
        return self.catalog.model

    # -- reads -------------------------------------------------------------------------------------------

    async def user(self, ref: str) -> tuple[int, str, str, str] | None:
        """(id, ref, email, name) of a user by reference id."""
        u = self.model.table("user_account").sa
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(u.c.id, u.c.reference_id, u.c.email, u.c.name).where(u.c.reference_id == ref)
                )
            ).first()
        return None if row is None else (int(row.id), str(row.reference_id), str(row.email), str(row.name or ""))

    async def _colls(self, where: Any) -> list[Coll]:
        """Collections matching `where`, with their owner's reference id and grants (two queries)."""
        model = self.model
        tm = model.table(COLLECTION)
        t = tm.sa
        u = model.table("user_account").sa
        q = (
            sa.select(
                t.c.id,
                t.c.reference_id,
                t.c.name,
                t.c.kind,
                t.c.user_account_id,
                u.c.reference_id.label("owner_ref"),
                t.c.permission,
                t.c.display_name,
                t.c.description,
                t.c.color,
                t.c.components,
                t.c.timezone,
                t.c.properties,
                t.c.sync_seq,
                t.c.updated_at,
            )
            .select_from(t.outerjoin(u, u.c.id == t.c.user_account_id))
            .where(where)
            .order_by(t.c.id)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
            links = await records.load_group_grants(conn, model, tm, [int(r.id) for r in rows])
        out = []
        for r in rows:
            perm = int(r.permission or 0)
            owner_ref = str(r.owner_ref) if r.owner_ref is not None else None
            grants = Grants(owner_ref, perm, tuple(links.get(int(r.id), [])))
            out.append(
                Coll(
                    int(r.id),
                    str(r.reference_id),
                    str(r.name),
                    str(r.kind or "calendar"),
                    int(r.user_account_id) if r.user_account_id is not None else None,
                    owner_ref,
                    grants,
                    perm,
                    r.display_name,
                    r.description,
                    r.color,
                    str(r.components or ""),
                    r.timezone,
                    _props(r.properties),
                    int(r.sync_seq or 0),
                    _time(r.updated_at),
                )
            )
        return out

    async def collection_at(self, owner_ref: str, kind: str, name: str) -> Coll | None:
        """The collection at /users/<owner_ref>/<kind home>/<name>/ (one lookup, no user query first)."""
        t = self.model.table(COLLECTION).sa
        u = self.model.table("user_account").sa
        found = await self._colls(sa.and_(u.c.reference_id == owner_ref, t.c.kind == kind, t.c.name == name))
        return found[0] if found else None

    async def collections(self, owner_id: int, kind: str) -> list[Coll]:
        t = self.model.table(COLLECTION).sa
        return await self._colls(sa.and_(t.c.user_account_id == owner_id, t.c.kind == kind))

    async def shared(self, actor: Actor, kind: str) -> list[Coll]:
        """Collections of other users linked to one of the actor's groups."""
        model = self.model
        tm = model.table(COLLECTION)
        if not actor.group_ids or tm.group_join is None:
            return []
        j = model.table(tm.group_join).sa
        t = tm.sa
        linked = sa.select(j.c[f"{COLLECTION}_id"]).where(j.c.usergroup_id.in_(actor.group_ids))
        return await self._colls(
            sa.and_(t.c.kind == kind, t.c.id.in_(linked), t.c.user_account_id != (actor.user_id or 0))
        )

    def _obj_select(self, content: bool) -> sa.Select[Any]:
        t = self.model.table(OBJECT).sa
        cols: list[Any] = [t.c.id, t.c.reference_id, t.c.href, t.c.etag, t.c.component, t.c.updated_at, t.c.sync_seq]
        cols.append(t.c.content if content else sa.func.length(t.c.content).label("length"))
        return sa.select(*cols)

    @staticmethod
    def _obj(row: Any, content: bool) -> Obj:
        text = row.content if content else None
        length = len(text.encode("utf-8")) if text is not None else int(row.length or 0)
        return Obj(
            int(row.id),
            row.reference_id,
            row.href,
            row.etag or "",
            row.component,
            row.updated_at,
            length,
            text,
            int(row.sync_seq or 0),
        )

    async def objects(
        self, coll: Coll, *, hrefs: list[str] | None = None, content: bool = False, where: Any = None
    ) -> list[Obj]:
        t = self.model.table(OBJECT).sa
        q = self._obj_select(content).where(t.c.collection_id == coll.id)
        if hrefs is not None:
            q = q.where(t.c.href.in_(hrefs))
        if where is not None:
            q = q.where(where)
        async with self.db.read() as conn:
            rows = (await conn.execute(q.order_by(t.c.id).limit(MAX_COLLECTION_OBJECTS))).all()
        return [self._obj(r, content) for r in rows]

    async def object(self, coll: Coll, href: str) -> Obj | None:
        found = await self.objects(coll, hrefs=[href], content=True)
        return found[0] if found else None

    async def changes(self, coll: Coll, since: int) -> list[tuple[str, bool, int]]:
        """(href, deleted, seq) of every object changed after `since`, each once, oldest change first."""
        log = self.model.table(CHANGE).sa
        q = (
            sa.select(log.c.href, log.c.deleted, log.c.seq)
            .where(log.c.collection_ref == coll.ref, log.c.seq > since)
            .order_by(log.c.seq)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
        last: dict[str, tuple[bool, int]] = {}
        for href, deleted, seq in rows:
            last.pop(href, None)
            last[href] = (bool(deleted), int(seq))
        return [(h, d, s) for h, (d, s) in last.items()]

    # -- writes ------------------------------------------------------------------------------------------

    async def put(
        self, actor: Actor, coll: Coll, href: str, text: str, *, if_match: str | None, if_none_match: str | None
    ) -> tuple[str, bool]:
        """Create or replace an object; returns (etag, created). Raises PreconditionFailed on ETag mismatch."""
        async with self.db.transaction() as uow:
            return await self._put(uow, actor, coll, href, text, if_match=if_match, if_none_match=if_none_match)

    async def _put(
        self,
        uow: UnitOfWork,
        actor: Actor,
        coll: Coll,
        href: str,
        text: str,
        *,
        if_match: str | None,
        if_none_match: str | None,
    ) -> tuple[str, bool]:
        if not valid_name(href):
            raise BadRequest("invalid object name")
        model = self.model
        tm = model.table(OBJECT)
        t = tm.sa
        row = (
            await uow.conn.execute(sa.select(t.c.id, t.c.etag).where(t.c.collection_id == coll.id, t.c.href == href))
        ).first()
        check_preconditions(row.etag if row is not None else None, if_match, if_none_match)
        if row is not None:
            fresh = await records.update(uow, model, tm, int(row.id), {"content": text}, actor=actor.ref)
            return str(fresh.attrs.get("etag") or ""), False
        count = await uow.conn.scalar(sa.select(sa.func.count()).where(t.c.collection_id == coll.id))
        if int(count or 0) >= MAX_COLLECTION_OBJECTS:
            raise Conflict("the collection is full")
        values = {"collection_id": coll.id, "href": href, "content": text, OWNER_COLUMN: coll.owner_id}
        fresh = await records.insert(uow, model, tm, values, permission=coll.permission, actor=actor.ref)
        return str(fresh.attrs.get("etag") or ""), True

    async def delete_object(self, actor: Actor, coll: Coll, href: str, *, if_match: str | None) -> None:
        async with self.db.transaction() as uow:
            await self._delete(uow, actor, coll, href, if_match=if_match)

    async def _delete(self, uow: UnitOfWork, actor: Actor, coll: Coll, href: str, *, if_match: str | None) -> None:
        model = self.model
        tm = model.table(OBJECT)
        t = tm.sa
        obj_id = await uow.conn.scalar(sa.select(t.c.id).where(t.c.collection_id == coll.id, t.c.href == href))
        if obj_id is None:
            raise NotFound("no such object")
        row = await records.fetch_one(uow.conn, model, tm, row_id=int(obj_id))
        assert row is not None
        check_preconditions(row.attrs.get("etag"), if_match, None)
        await records.delete(uow, model, tm, row, actor=actor.ref)

    async def copy_object(
        self, actor: Actor, src: Coll, href: str, dest: Coll, dest_href: str, *, overwrite: bool, move: bool
    ) -> bool:
        """Copy or move one object in one transaction (a MOVE that cannot put the copy keeps the source);
        returns True when the destination was created (False: replaced)."""
        if src.id == dest.id and href == dest_href:
            raise Forbidden("source and destination are the same")
        t = self.model.table(OBJECT).sa
        async with self.db.transaction() as uow:
            content = await uow.conn.scalar(sa.select(t.c.content).where(t.c.collection_id == src.id, t.c.href == href))
            if content is None:
                raise NotFound("no such object")
            exists = await uow.conn.scalar(sa.select(t.c.id).where(t.c.collection_id == dest.id, t.c.href == dest_href))
            if exists is not None and not overwrite:
                raise PreconditionFailed("the destination exists")
            if move:
                await self._delete(uow, actor, src, href, if_match=None)
            _, created = await self._put(uow, actor, dest, dest_href, str(content), if_match=None, if_none_match=None)
            return created

    async def create_collection(
        self, actor: Actor, owner_id: int, kind: str, name: str, values: dict[str, Any]
    ) -> None:
        if not valid_name(name):
            raise BadRequest("invalid collection name")
        model = self.model
        tm = model.table(COLLECTION)
        t = tm.sa
        async with self.db.transaction() as uow:
            existing = await uow.conn.scalar(
                sa.select(sa.func.count()).where(t.c.user_account_id == owner_id, t.c.kind == kind)
            )
            if int(existing or 0) >= MAX_COLLECTIONS:
                raise Conflict("too many collections")
            taken = await uow.conn.scalar(
                sa.select(t.c.id).where(t.c.user_account_id == owner_id, t.c.kind == kind, t.c.name == name)
            )
            if taken is not None:
                raise MethodNotAllowed("the collection exists")
            row = {"name": name, "kind": kind, "sync_seq": 0, OWNER_COLUMN: owner_id, **_coll_values(values)}
            perm = self.catalog.default_permission(tm.decl)
            await records.insert(uow, model, tm, row, permission=perm, actor=actor.ref)

    async def update_collection(self, actor: Actor, coll: Coll, values: dict[str, Any]) -> None:
        model = self.model
        async with self.db.transaction() as uow:
            await records.update(uow, model, model.table(COLLECTION), coll.id, _coll_values(values), actor=actor.ref)

    async def delete_collection(self, actor: Actor, coll: Coll) -> None:
        model = self.model
        async with self.db.transaction() as uow:  # its objects and change log go with it (davstore.hooks)
            ctm = model.table(COLLECTION)
            crow = await records.fetch_one(uow.conn, model, ctm, row_id=coll.id)
            if crow is not None:
                await records.delete(uow, model, ctm, crow, actor=actor.ref)


def _coll_values(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    if "properties" in out:
        out["properties"] = jsonutil.dumps(out["properties"]).decode() if out["properties"] else None
    return out


def check_preconditions(etag: str | None, if_match: str | None, if_none_match: str | None) -> None:
    """RFC 7232 on one resource: `etag` None means it does not exist."""
    if if_match is not None:
        tags = _tags(if_match)
        if etag is None or ("*" not in tags and etag not in tags):
            raise PreconditionFailed("If-Match does not hold")
    if if_none_match is not None:
        tags = _tags(if_none_match)
        if etag is not None and ("*" in tags or etag in tags):
            raise PreconditionFailed("If-None-Match does not hold")


def _tags(header: str) -> set[str]:
    out = set()
    for part in header.split(","):
        part = part.strip()
        if part.startswith("W/"):
            part = part[2:]
        out.add(part.strip('"'))
    return out


def _props(value: Any) -> dict[str, str]:
    if isinstance(value, str) and value:
        try:
            value = jsonutil.loads(value)
        except jsonutil.JSONError:
            return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _time(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).replace(tzinfo=None)
        except ValueError:
            return None
    return None
