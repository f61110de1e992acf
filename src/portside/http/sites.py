"""Static sites by `Host`: an enabled `site` row's hostname serves its folder of the cloud store.

ASGI middleware in front of the application: a request whose host (port stripped) names an enabled site
with a store, and whose path is not an API path, is answered from the store; everything else goes on to
the routes. The caller needs Execute on the site row (`auth.access.site_right`), signed in by token
(header or cookie) or HTTP Basic (email:password or an application password), else 401 with
`WWW-Authenticate: Basic realm="<host>"`. `/` and folders serve their `index.html`; a missing path without
a file extension serves the root `index.html` (client-side routes); files stream from the store with
their content type, `ETag` (`If-None-Match` -> 304), `Last-Modified` and single byte ranges (206/416).

The path form (spec core §10.3): on any other host, `/<site hostname>/<rest>` serves `<rest>` of that site
(the first segment must contain a dot and be followed by `/`, so neither a one-word route nor a file such
as `/index.html` of the main host is ever taken). A visitor
without Execute gets 403 there, with no Basic challenge (the browser's credentials for the main host are
not a site's); signing in by token header or cookie works as on the site's own host.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import mimetypes
import re
from collections.abc import AsyncIterator
from email.utils import formatdate
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from portside.actions.services import Services
from portside.auth import access
from portside.auth.login import login
from portside.auth.permissions import EXECUTE, Actor
from portside.errors import NotFound, PortsideError, Unauthorized
from portside.http.common import actor
from portside.storage import paths
from portside.storage.sites import Site
from portside.storage.store import Entry, Store

API_PREFIXES = frozenset(
    {"api", "action", "meta", "stats", "feed", "asset", "jsmodel", "integration", "_config", ".well-known"}
    | {"_ports", "live", "yjs", "ping", "openapi.yaml", "websub", "metrics"}
)
CHUNK = 64 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def _host(scope: Scope) -> str:
    raw = Headers(scope=scope).get("host") or ""
    if raw.startswith("["):
        return raw[1 : raw.find("]")].lower() if "]" in raw else ""
    return raw.rsplit(":", 1)[0].lower().rstrip(".")


class SiteHosts:
    def __init__(self, app: ASGIApp, services: Services):
        self.app, self.services = app, services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        directory = self.services.sites
        if scope["type"] != "http" or directory is None:
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path") or "/")
        first, slash, rest = path.lstrip("/").partition("/")
        if first in API_PREFIXES:
            await self.app(scope, receive, send)
            return
        site = await directory.by_host(_host(scope))
        path_form = site is None and "." in first and bool(slash)  # `/a.com/...`, never a bare `/index.html`
        if path_form:
            site = await directory.by_host(first)
            path = "/" + rest
        if site is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await self._serve(request, site, path)
        except Unauthorized as exc:
            if path_form:
                response = PlainTextResponse(exc.detail, 403)
            else:
                challenge = {"WWW-Authenticate": f'Basic realm="{site.hostname}"'}
                response = PlainTextResponse(exc.detail, 401, headers=challenge)
        except PortsideError as exc:
            response = PlainTextResponse(exc.detail, exc.status)
        await response(scope, receive, send)

    async def _visitor(self, request: Request) -> Actor:
        scheme, _, value = (request.headers.get("authorization") or "").strip().partition(" ")
        if scheme.lower() != "basic":
            return await actor(request, url_token=False)
        try:
            email, sep, secret = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise Unauthorized("malformed Basic credentials") from None
        if not sep:
            raise Unauthorized("malformed Basic credentials")
        svc = self.services
        address = request.client.host if request.client else ""
        result = await login(
            svc.db, svc.model, svc.logins, identifier=email, secret=secret, address=address, protocol="site"
        )
        return result.actor

    async def _serve(self, request: Request, site: Site, path: str) -> Response:
        if request.method not in ("GET", "HEAD"):
            return PlainTextResponse("method not allowed", 405, headers={"Allow": "GET, HEAD"})
        visitor = await self._visitor(request)
        if not access.site_right(visitor, site.grants, EXECUTE):
            raise Unauthorized("sign in to visit this site")
        stores = self.services.stores
        assert stores is not None and site.store_ref is not None
        store = (await stores.by_ref(site.store_ref)).view(site.folder)
        try:
            parts = paths.segments(path.strip("/"))
        except paths.UnsafePath:
            raise NotFound("not found") from None
        found = await asyncio.to_thread(self._resolve, store, parts)
        if found is None:
            raise NotFound("not found")
        parts, entry = found
        return self._file(request, store, parts, entry)

    @staticmethod
    def _resolve(store: Store, parts: paths.Segments) -> tuple[paths.Segments, Entry] | None:
        entry = store.info(parts)
        if entry is not None and entry.is_dir:
            parts = (*parts, "index.html")
            entry = store.info(parts)
        if entry is None and parts and "." not in parts[-1]:
            parts = ("index.html",)  # a client-side route: the application's page
            entry = store.info(parts)
        return (parts, entry) if entry is not None and not entry.is_dir else None

    def _file(self, request: Request, store: Store, parts: paths.Segments, entry: Entry) -> Response:
        kind = mimetypes.guess_type(parts[-1])[0] or "application/octet-stream"
        if kind.startswith("text/") or kind in ("application/javascript", "application/json"):
            kind += "; charset=utf-8"
        etag = f'"{entry.size:x}-{int(entry.mtime * 1000):x}"'
        headers = {
            "ETag": etag,
            "Accept-Ranges": "bytes",
            "Last-Modified": formatdate(entry.mtime, usegmt=True),
            "Cache-Control": "no-cache" if parts[-1] == "index.html" else "public, max-age=300",
        }
        if etag in [t.strip() for t in (request.headers.get("if-none-match") or "").split(",")]:
            return Response(status_code=304, headers=headers)
        start, end, status = 0, entry.size - 1, 200
        wanted = request.headers.get("range")
        if wanted:
            m = _RANGE.fullmatch(wanted.strip())
            if m and (m.group(1) or m.group(2)):
                if m.group(1):
                    start = int(m.group(1))
                    end = min(int(m.group(2)), entry.size - 1) if m.group(2) else entry.size - 1
                else:
                    start = max(0, entry.size - int(m.group(2)))
                if start >= entry.size or start > end:
                    headers["Content-Range"] = f"bytes */{entry.size}"
                    return Response(status_code=416, headers=headers)
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
        length = max(0, end - start + 1)
        headers["Content-Length"] = str(length)
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers, media_type=kind)
        return StreamingResponse(_stream(store, parts, start, length), status, headers, media_type=kind)


async def _stream(store: Store, parts: paths.Segments, start: int, length: int) -> AsyncIterator[bytes]:
    f: Any = await asyncio.to_thread(store.open_read, parts)
    try:
        if start:
            await asyncio.to_thread(f.seek, start)
        left = length
        while left > 0:
            chunk = await asyncio.to_thread(f.read, min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
    finally:
        await asyncio.to_thread(f.close)
