"""PUT, DELETE, MKCOL (RFC 5689 extended), MKCALENDAR, PROPPATCH, COPY and MOVE."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import unquote, urlsplit

from starlette.responses import Response

from portside.auth import access
from portside.auth.permissions import CREATE, DELETE, READ, UPDATE
from portside.dav import xml
from portside.dav.context import HOMES, MAX_OBJECT_BODY, Ctx, resolve
from portside.dav.props import dead_value
from portside.dav.read import MULTISTATUS
from portside.dav.xml import CALDAV, CARDDAV, CS, DAV, ICAL, tag
from portside.davstore.items import Invalid, decode, derive
from portside.davstore.tables import KIND_ADDRESSBOOK, KIND_CALENDAR
from portside.errors import BadRequest, Conflict, Forbidden, NotFound, UnsupportedMediaType

COMPONENTS = ("VEVENT", "VTODO", "VJOURNAL")
MAX_DEAD_PROPS = 50
MAX_DEAD_VALUE = 4096
PROTECTED = {
    tag(DAV, n)
    for n in (
        "resourcetype",
        "getetag",
        "getcontenttype",
        "getcontentlength",
        "getlastmodified",
        "sync-token",
        "current-user-privilege-set",
        "acl",
        "owner",
        "supported-report-set",
        "current-user-principal",
        "resource-id",
    )
} | {
    tag(CS, "getctag"),
    tag(CALDAV, "supported-calendar-data"),
    tag(CALDAV, "max-resource-size"),
    tag(CARDDAV, "supported-address-data"),
    tag(CARDDAV, "max-resource-size"),
}


class ValidPrecondition(Forbidden):
    """A 403 naming an RFC precondition element."""

    def __init__(self, detail: str, precondition: str):
        super().__init__(detail)
        self.precondition = precondition


def _created(etag: str, created: bool) -> Response:
    return Response(status_code=201 if created else 204, headers={"ETag": f'"{etag}"'})


async def do_PUT(ctx: Ctx) -> Response:
    t = ctx.target
    if t.kind == "missing":
        raise Conflict("no such collection")
    if t.kind != "object" or t.href is None:
        raise Forbidden("PUT needs an object path inside a collection")
    if t.coll is None:
        raise Conflict("no such collection")
    coll = t.coll
    exists = await ctx.store.object(coll, t.href)
    ctx.require(UPDATE if exists is not None else CREATE)
    text = decode(await ctx.body(MAX_OBJECT_BODY))
    try:
        derive(text, coll.kind)
    except Invalid as exc:
        if coll.kind == KIND_ADDRESSBOOK and exc.precondition == "valid-calendar-data":
            exc.precondition = "valid-address-data"
        raise
    h = ctx.request.headers
    etag, created = await ctx.store.put(
        ctx.actor, coll, t.href, text, if_match=h.get("if-match"), if_none_match=h.get("if-none-match")
    )
    return _created(etag, created)


async def do_DELETE(ctx: Ctx) -> Response:
    t = ctx.target
    if t.kind == "object" and t.coll is not None and t.href is not None:
        ctx.require(DELETE)
        await ctx.store.delete_object(ctx.actor, t.coll, t.href, if_match=ctx.request.headers.get("if-match"))
        return Response(status_code=204)
    if t.kind == "collection" and t.coll is not None:
        ctx.require(DELETE, objects=False)
        if not access.owns_or_administers(ctx.actor, t.coll.owner_ref):
            raise Forbidden("only the owner deletes a collection")
        await ctx.store.delete_collection(ctx.actor, t.coll)
        return Response(status_code=204)
    if t.kind == "missing":
        raise NotFound("no such resource")
    raise Forbidden("this resource cannot be deleted")


def _collection_values(props: list[ET.Element]) -> dict[str, Any]:
    """Column values (and dead properties) from DAV:set properties; refuses protected ones."""
    values: dict[str, Any] = {}
    dead: dict[str, str] = {}
    for p in props:
        if p.tag == tag(DAV, "displayname"):
            values["display_name"] = (p.text or "")[:500]
        elif p.tag in (tag(CALDAV, "calendar-description"), tag(CARDDAV, "addressbook-description")):
            values["description"] = (p.text or "")[:10000]
        elif p.tag == tag(ICAL, "calendar-color"):
            values["color"] = (p.text or "")[:30]
        elif p.tag == tag(CALDAV, "calendar-timezone"):
            values["timezone"] = (p.text or "")[:100_000]
        elif p.tag == tag(CALDAV, "supported-calendar-component-set"):
            comps = [c.get("name", "").upper() for c in p if c.tag == tag(CALDAV, "comp")]
            if not comps or any(c not in COMPONENTS for c in comps):
                raise ValidPrecondition("unsupported component", "supported-calendar-component")
            values["components"] = ",".join(comps)
        elif p.tag in PROTECTED:
            raise ValidPrecondition(f"{p.tag} is protected", "cannot-modify-protected-property")
        else:
            value = dead_value(p)
            if len(value) > MAX_DEAD_VALUE:
                raise BadRequest("property value too large")
            dead[p.tag] = value
    if dead:
        if len(dead) > MAX_DEAD_PROPS:
            raise BadRequest("too many properties")
        values["properties"] = dead
    return values


def _set_props(root: ET.Element) -> list[ET.Element]:
    out: list[ET.Element] = []
    for s in root.findall(tag(DAV, "set")):
        prop = s.find(tag(DAV, "prop"))
        if prop is not None:
            out.extend(prop)
    return out


async def _make(ctx: Ctx, calendar_only: bool) -> Response:
    t = ctx.target
    ctype = (ctx.request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype not in ("", "text/xml", "application/xml"):  # RFC 4918 9.3.1: a body type MKCOL does not know
        raise UnsupportedMediaType("MKCOL/MKCALENDAR take an XML body only")
    if t.kind != "missing" or len(t.segments) != 4 or t.user is None or t.home is None:
        if t.kind in ("collection", "home", "principal", "root", "users"):
            return Response(status_code=405, headers={"Allow": "PROPFIND, PROPPATCH, DELETE"})
        raise Conflict("a collection is made inside a home set")
    if not access.may_make_collection(ctx.actor, ctx.gates, t.user[1]):
        raise Forbidden("not your home set")
    kind = HOMES[t.home]
    body = await ctx.body()
    props: list[ET.Element] = []
    if body.strip():
        root = xml.parse(body)
        expected = tag(CALDAV, "mkcalendar") if calendar_only else tag(DAV, "mkcol")
        if root.tag != expected:
            raise BadRequest("unexpected request body")
        props = _set_props(root)
    wanted = kind
    for p in props:
        if p.tag == tag(DAV, "resourcetype"):
            types = {c.tag for c in p}
            if tag(CALDAV, "calendar") in types:
                wanted = KIND_CALENDAR
            elif tag(CARDDAV, "addressbook") in types:
                wanted = KIND_ADDRESSBOOK
            elif types - {tag(DAV, "collection")}:
                raise ValidPrecondition("unsupported resource type", "valid-resourcetype")
    if calendar_only:
        wanted = KIND_CALENDAR
    if wanted != kind:
        raise ValidPrecondition(f"a {wanted} is made in the {kind} home set", "valid-resourcetype")
    values = _collection_values([p for p in props if p.tag != tag(DAV, "resourcetype")])
    name = t.segments[3]
    await ctx.store.create_collection(ctx.actor, t.user[0], kind, name, values)
    return Response(status_code=201, headers={"Cache-Control": "no-cache"})


async def do_MKCOL(ctx: Ctx) -> Response:
    return await _make(ctx, calendar_only=False)


async def do_MKCALENDAR(ctx: Ctx) -> Response:
    if ctx.target.home != "calendars":
        raise Forbidden("calendars are made in the calendar home set")
    return await _make(ctx, calendar_only=True)


async def do_PROPPATCH(ctx: Ctx) -> Response:
    t = ctx.target
    if t.kind != "collection" or t.coll is None:
        if t.kind == "missing":
            raise NotFound("no such resource")
        raise Forbidden("only collections have writable properties")
    coll = ctx.require(UPDATE, objects=False)
    root = xml.parse(await ctx.body())
    if root.tag != tag(DAV, "propertyupdate"):
        raise BadRequest("the body is not a DAV:propertyupdate")
    touched: list[str] = []
    values: dict[str, Any] = {}
    dead = dict(coll.properties)
    refused: str | None = None
    for op in root:
        prop = op.find(tag(DAV, "prop"))
        if prop is None:
            continue
        for p in prop:
            touched.append(p.tag)
            try:
                if op.tag == tag(DAV, "set"):
                    found = _collection_values([p])
                    dead.update(found.pop("properties", {}))
                    values.update(found)
                elif op.tag == tag(DAV, "remove"):
                    if p.tag in PROTECTED:
                        raise ValidPrecondition("protected", "cannot-modify-protected-property")
                    column = _removable(p.tag)
                    if column is not None:
                        values[column] = None
                    dead.pop(p.tag, None)
            except (ValidPrecondition, BadRequest):
                refused = refused or p.tag
    if refused is not None:
        failed = [ET.Element(n) for n in touched if n == refused]
        others = [ET.Element(n) for n in dict.fromkeys(touched) if n != refused]
        body = xml.multistatus([xml.response(ctx.coll_url(coll), [], s403=failed, s424=others)])
        return Response(body, 207, media_type=MULTISTATUS)
    if dead != coll.properties:
        values["properties"] = dead
    if values:
        await ctx.store.update_collection(ctx.actor, coll, values)
    ok = [ET.Element(n) for n in dict.fromkeys(touched)]
    return Response(xml.multistatus([xml.response(ctx.coll_url(coll), ok)]), 207, media_type=MULTISTATUS)


def _removable(name: str) -> str | None:
    return {
        tag(DAV, "displayname"): "display_name",
        tag(CALDAV, "calendar-description"): "description",
        tag(CARDDAV, "addressbook-description"): "description",
        tag(ICAL, "calendar-color"): "color",
        tag(CALDAV, "calendar-timezone"): "timezone",
    }.get(name)


async def _transfer(ctx: Ctx, move: bool) -> Response:
    t = ctx.target
    if t.kind != "object" or t.coll is None or t.href is None:
        if t.kind == "missing":
            raise NotFound("no such resource")
        raise Forbidden("only objects are copied or moved")
    src = ctx.require(DELETE if move else READ)
    ctx.require(READ)
    dest_header = ctx.request.headers.get("destination")
    if not dest_header:
        raise BadRequest("Destination header missing")
    path = unquote(urlsplit(dest_header).path)
    prefix = next((p for p in ("/caldav", "/carddav") if path.startswith(p + "/")), None)
    if prefix is None:
        raise ValidPrecondition("the destination is not on this DAV server", "cannot-modify-protected-property")
    dest = await resolve(ctx.store, ctx.actor, path[len(prefix) :], ctx.gates)
    if dest.kind != "object" or dest.coll is None or dest.href is None:
        raise Conflict("the destination collection does not exist")
    if dest.coll.kind != src.kind:
        raise Forbidden("objects move between collections of one kind")
    overwrite = (ctx.request.headers.get("overwrite") or "T").strip().upper() != "F"
    exists = await ctx.store.object(dest.coll, dest.href)
    ctx.require(UPDATE if exists is not None else CREATE, dest.coll)
    created = await ctx.store.copy_object(ctx.actor, src, t.href, dest.coll, dest.href, overwrite=overwrite, move=move)
    return Response(status_code=201 if created else 204)


async def do_COPY(ctx: Ctx) -> Response:
    return await _transfer(ctx, move=False)


async def do_MOVE(ctx: Ctx) -> Response:
    return await _transfer(ctx, move=True)
