"""/feed/{name}.{rss|atom|json} and the WebSub hub endpoint /websub."""

from __future__ import annotations

import datetime as dt
from email.utils import format_datetime, parsedate_to_datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from portside.core import limits
from portside.errors import BadRequest, NotFound
from portside.feeds.render import FORMATS
from portside.feeds.service import MAX_PAGE, FeedService, Rendered
from portside.feeds.websub import WebSubHub
from portside.http.common import actor, read_body


def feeds(request: Request) -> FeedService:
    fs = getattr(request.app.state, "feeds", None)
    if not isinstance(fs, FeedService):
        raise NotFound("feeds are not enabled")
    return fs


def hub(request: Request) -> WebSubHub:
    h = getattr(request.app.state, "websub", None)
    if not isinstance(h, WebSubHub):
        raise NotFound("the WebSub hub is not enabled")
    return h


def parse_page(raw: str | None) -> int:
    return 1 if raw is None else limits.whole_number(raw, "page", 1, MAX_PAGE)


def split_name(segment: str) -> tuple[str, str]:
    """`blog.rss` → ("blog", "rss"); an unknown or missing extension is a 404 (not Daptin's RSS fallback)."""
    name, dot, ext = segment.rpartition(".")
    fmt = ext.lower()
    if not dot or not name or fmt not in FORMATS or len(name) > 100 or not name.isprintable():
        raise NotFound("no such feed; feed URLs end in .rss, .atom or .json")
    return name, fmt


def not_modified(request: Request, r: Rendered) -> bool:
    inm = request.headers.get("if-none-match")
    if inm is not None:  # RFC 9110 13.1.2: If-Modified-Since is ignored when If-None-Match is present
        tags = {t.strip() for t in inm.split(",")}
        return "*" in tags or r.etag in tags or f"W/{r.etag}" in tags
    ims = request.headers.get("if-modified-since")
    if ims:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError, IndexError):
            return False
        if since.tzinfo is None:
            since = since.replace(tzinfo=dt.UTC)
        return r.last_modified <= since
    return False


async def feed(request: Request) -> Response:
    name, fmt = split_name(request.path_params["name"])
    page = parse_page(request.query_params.get("page"))
    fs = feeds(request)
    who = await actor(request)
    r = await fs.page(who, name, fmt, page, fs.base_url(str(request.base_url)))
    headers = {
        "ETag": r.etag,
        "Last-Modified": format_datetime(r.last_modified, usegmt=True),
        "Cache-Control": "private, no-cache" if r.private else "no-cache",
        "Vary": "Authorization, Cookie",
    }
    if not_modified(request, r):
        return Response(status_code=304, headers=headers)
    return Response(r.body, media_type=r.media_type, headers=headers)


async def websub(request: Request) -> Response:
    h = hub(request)
    body = await read_body(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("application/x-www-form-urlencoded", ""):
        raise BadRequest("WebSub requests are application/x-www-form-urlencoded")
    who = await actor(request)
    try:
        message = await h.request(who, body.decode("utf-8"), str(request.base_url))
    except UnicodeDecodeError:
        raise BadRequest("the request body is not UTF-8") from None
    return Response(message, status_code=202, media_type="text/plain; charset=utf-8")


routes = [
    Route("/feed/{name}", feed, methods=["GET", "HEAD"]),
    Route("/websub", websub, methods=["POST"]),
]
