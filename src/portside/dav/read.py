"""PROPFIND, GET and HEAD."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from starlette.responses import Response

from portside.auth import access
from portside.auth.permissions import PEEK, READ
from portside.dav import fast, xml
from portside.dav.context import HOMES, Ctx
from portside.dav.props import ALLPROP, Res, properties
from portside.dav.xml import DAV, tag
from portside.davstore.store import check_preconditions
from portside.errors import BadRequest, NotFound

MULTISTATUS = "application/xml; charset=utf-8"


async def target_res(ctx: Ctx) -> Res:
    """The resource the request path names (404 when it names nothing the caller may see)."""
    t = ctx.target
    path = ctx.request.url.path
    if t.kind in ("root", "users", "group"):
        return Res(t.kind, path if path.endswith("/") else path + "/")
    if t.kind == "principal" and t.user is not None:
        return Res("principal", ctx.principal_url(t.user[1]), t.user)
    if t.kind == "home" and t.user is not None and t.home is not None:
        return Res("home", ctx.url(*t.segments[:3]), t.user, HOMES[t.home])
    if t.kind == "collection" and t.coll is not None:
        return Res("collection", ctx.coll_url(t.coll), t.user, coll=t.coll)
    if t.kind == "object" and t.coll is not None and t.href is not None:
        obj = await ctx.store.object(t.coll, t.href)
        if obj is not None:
            ctx.require(READ)
            return Res("object", ctx.coll_url(t.coll) + t.href, t.user, coll=t.coll, obj=obj)
    raise NotFound("no such resource")


async def children(ctx: Ctx, res: Res) -> list[Res]:
    store = ctx.store
    if res.kind == "root":
        return [Res("users", ctx.url("users"))]
    if res.kind == "users":
        user = await store.user(ctx.actor.ref or "")
        return [Res("principal", ctx.principal_url(), user)] if user is not None else []
    if res.kind == "principal" and res.user is not None:
        return [Res("home", ctx.url("users", res.user[1], name), res.user, kind) for name, kind in HOMES.items()]
    if res.kind == "home" and res.user is not None and res.home is not None:
        colls = await store.collections(res.user[0], res.home)
        if res.user[1] == ctx.actor.ref:
            colls += await store.shared(ctx.actor, res.home)
        seen = [c for c in colls if access.calendar_right(ctx.actor, ctx.gates, c.grants, PEEK, objects=False)]
        return [Res("collection", ctx.coll_url(c), res.user, coll=c) for c in seen]
    if res.kind == "collection" and res.coll is not None:
        ctx.require(READ, res.coll)
        base = ctx.coll_url(res.coll)
        return [Res("object", base + o.href, res.user, coll=res.coll, obj=o) for o in await store.objects(res.coll)]
    return []


def propfind_request(body: bytes) -> tuple[str, list[str]]:
    """("allprop" | "propname" | "prop", requested Clark names [+ include names for allprop])."""
    if not body.strip():
        return "allprop", []
    root = xml.parse(body)
    if root.tag != tag(DAV, "propfind"):
        raise BadRequest("the body is not a DAV:propfind")
    for child in root:
        if child.tag == tag(DAV, "propname"):
            return "propname", []
        if child.tag == tag(DAV, "allprop"):
            include = root.find(tag(DAV, "include"))
            return "allprop", [c.tag for c in include] if include is not None else []
        if child.tag == tag(DAV, "prop"):
            return "prop", [c.tag for c in child]
    raise BadRequest("DAV:propfind needs prop, allprop or propname")


OBJECT_ALLPROP = [
    tag(DAV, n) for n in ("resourcetype", "getetag", "getcontenttype", "getcontentlength", "getlastmodified")
]


def response_part(ctx: Ctx, res: Res, mode: str, names: list[str]) -> xml.Part:
    """`prop_response`, through the object fast path where it applies."""
    if res.kind == "object" and res.obj is not None and (mode == "prop" or (mode == "allprop" and not names)):
        written = fast.object_response(res.path, res.obj, names if mode == "prop" else OBJECT_ALLPROP, None, None)
        if written is not None:
            return written
    return prop_response(ctx, res, mode, names)


def prop_response(ctx: Ctx, res: Res, mode: str, names: list[str]) -> ET.Element:
    have = properties(ctx, res)
    if mode == "propname":
        return xml.response(res.path, [ET.Element(n) for n in have])
    if mode == "allprop":
        wanted = list(dict.fromkeys([n for n in have if n in ALLPROP] + names))
        return xml.response(res.path, [have[n]() for n in wanted if n in have])
    found = [have[n]() for n in names if n in have]
    return xml.response(res.path, found, [n for n in names if n not in have])


async def do_PROPFIND(ctx: Ctx) -> Response:
    depth = ctx.depth("1")
    mode, names = propfind_request(await ctx.body())
    res = await target_res(ctx)
    resources = [res]
    if depth != "0":
        resources += await children(ctx, res)
    body = xml.multistatus(response_part(ctx, r, mode, names) for r in resources)
    return Response(body, 207, media_type=MULTISTATUS)


async def do_GET(ctx: Ctx) -> Response:
    t = ctx.target
    if t.kind != "object":
        res = await target_res(ctx)
        return Response(f"{res.kind}\n".encode(), 200, media_type="text/plain; charset=utf-8")
    coll = ctx.require(READ) if t.coll is not None else None
    obj = await ctx.store.object(coll, t.href or "") if coll is not None else None
    if obj is None or obj.content is None:
        raise NotFound("no such object")
    headers = {"ETag": f'"{obj.etag}"'}
    inm = ctx.request.headers.get("if-none-match")
    if inm is not None:
        try:
            check_preconditions(obj.etag, None, inm)
        except Exception:
            return Response(status_code=304, headers=headers)
    ctype = "text/vcard; charset=utf-8" if obj.component == "VCARD" else "text/calendar; charset=utf-8"
    return Response(obj.content.encode("utf-8"), 200, headers=headers, media_type=ctype)


async def do_HEAD(ctx: Ctx) -> Response:
    full = await do_GET(ctx)
    return Response(b"", full.status_code, headers={k: v for k, v in full.headers.items() if k != "content-length"})
