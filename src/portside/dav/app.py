"""The CalDAV/CardDAV edge, mounted on the HTTP port: `/caldav/...`, `/carddav/...` (one tree under both
prefixes, as in Daptin) and the RFC 6764 `/.well-known/caldav|carddav` redirects, while config
`caldav.enable` is "true" (read per request, so switching it takes effect at once).

`mount(inner, svc, store)` wraps the HTTP application: DAV paths go to `DavApp`, everything else to `inner`.
Verbs are methods `do_<VERB>` (dav/read.py, dav/write.py, dav/report.py); errors become DAV replies here only
(status from `tools.wire_errors.dav_error`, plus a `DAV:error` precondition body where one applies).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from portside import log
from portside.actions.services import Services
from portside.auth.identity import actor_for_user, actor_from_token
from portside.auth.login import login
from portside.auth.permissions import Actor
from portside.dav import read, report, write, xml
from portside.dav.context import Ctx, load_gates, resolve
from portside.davstore.store import DavStore
from portside.errors import PortsideError, Unauthorized
from portside.tools.wire_errors import dav_error

logger = log.get("dav")
ENABLE_KEY = "caldav.enable"
PREFIXES = ("/caldav", "/carddav")
WELL_KNOWN = {"/.well-known/caldav": "/caldav/", "/.well-known/carddav": "/carddav/"}
REALM = 'Basic realm="caldav", charset="UTF-8"'
ALLOW = "OPTIONS, GET, HEAD, PUT, DELETE, PROPFIND, PROPPATCH, MKCOL, MKCALENDAR, REPORT, COPY, MOVE"

Handler = Callable[[Ctx], Awaitable[Response]]


class DavApp:
    """The DAV request handler: authenticate, resolve the path, dispatch to `do_<VERB>`."""

    def __init__(self, svc: Services, store: DavStore):
        self.svc = svc
        self.store = store
        self.methods: dict[str, Handler] = {}
        for module in (read, write, report):
            for name in dir(module):
                if name.startswith("do_"):
                    self.methods[name[3:]] = getattr(module, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await self.handle(request)
        except PortsideError as exc:
            response = error_response(exc, request)
        except Exception:
            logger.exception("DAV %s %s failed", request.method, request.url.path)
            response = Response(b"internal error", 500, media_type="text/plain")
        peer = request.client.host if request.client is not None else "-"
        logger.info("%s %s %s %d", peer, request.method, request.url.path[:300], response.status_code)  # no headers
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        path = request.url.path
        if path in WELL_KNOWN:
            return Response(status_code=301, headers={"Location": WELL_KNOWN[path]})
        method = request.method.upper()
        if method == "OPTIONS":  # capability discovery works before login
            return options_response()
        handler = self.methods.get(method)
        if handler is None:
            return Response(status_code=405, headers={"Allow": ALLOW})
        actor = await self.authenticate(request)
        prefix = next(p for p in PREFIXES if path == p or path.startswith(p + "/"))
        gates = await load_gates(self.svc)
        target = await resolve(self.store, actor, path[len(prefix) :] or "/", gates)
        ctx = Ctx(request, self.svc, self.store, actor, prefix, target, gates)
        return await handler(ctx)

    async def authenticate(self, request: Request) -> Actor:
        header = request.headers.get("authorization") or ""
        scheme, _, value = header.strip().partition(" ")
        scheme = scheme.lower()
        svc = self.svc
        if scheme == "bearer" and value.strip():
            return await actor_from_token(
                svc.db, svc.actors, svc.model, value.strip(), secret=svc.jwt_secret, issuer=svc.jwt_issuer
            )
        if scheme != "basic" or not value.strip():
            raise Unauthorized("authentication required")
        cached = svc.basic_logins.get(header)
        if cached is not None:
            actor = await self._actor(cached.user)
            if actor is not None and actor.auth_version == cached.auth_version:
                return actor
            svc.basic_logins.forget(header)
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise Unauthorized("malformed Basic credentials") from None
        user, sep, password = decoded.partition(":")  # the password may contain ':'
        if not sep:
            raise Unauthorized("malformed Basic credentials")
        address = request.client.host if request.client is not None else ""
        done = await login(
            svc.db, svc.model, svc.logins, identifier=user, secret=password, address=address, protocol="dav"
        )
        assert done.actor.ref is not None
        svc.basic_logins.put(header, done.actor.ref, done.actor.auth_version, done.credential)
        return done.actor

    async def _actor(self, ref: str) -> Actor | None:
        cache = self.svc.actors
        actor = cache.get(ref)
        if actor is None:
            generation = cache.generation
            async with self.svc.db.read() as conn:
                actor = await actor_for_user(conn, self.svc.model, ref=ref)
            if actor is None:
                return None
            cache.put(ref, actor, generation)
        return actor


def options_response() -> Response:
    return Response(
        status_code=200,
        headers={
            "Allow": ALLOW,
            "DAV": "1, 3, access-control, calendar-access, addressbook, extended-mkcol",
            "Content-Length": "0",
        },
    )


PRECONDITION_NS = {
    **dict.fromkeys(
        ("valid-sync-token", "supported-report", "cannot-modify-protected-property", "valid-resourcetype"), xml.DAV
    ),
    **dict.fromkeys(("valid-address-data", "supported-address-data"), xml.CARDDAV),
    **dict.fromkeys(
        (
            "valid-calendar-data",
            "valid-calendar-object-resource",
            "supported-calendar-data",
            "supported-calendar-component",
        ),
        xml.CALDAV,
    ),
}


def error_response(exc: PortsideError, request: Request) -> Response:
    status, precondition, headers = dav_error(exc)
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = REALM
    if precondition is None:
        return Response(exc.detail.encode(), status, headers=headers, media_type="text/plain; charset=utf-8")
    ns = PRECONDITION_NS.get(precondition)
    if ns is None:  # defined by both CalDAV and CardDAV: the one the request went to
        ns = xml.CARDDAV if "/addressbooks/" in request.url.path else xml.CALDAV
    body = xml.error_document(ns, precondition)
    return Response(body, status, headers=headers, media_type="application/xml; charset=utf-8")


def mount(inner: ASGIApp, svc: Services, store: DavStore) -> ASGIApp:
    """`inner` with the DAV edge in front of it for DAV paths while `caldav.enable` is "true"."""
    dav = DavApp(svc, store)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _is_dav(scope.get("path", "")) and svc.config.get(ENABLE_KEY) == "true":
            await dav(scope, receive, send)
            return
        await inner(scope, receive, send)

    return app


def _is_dav(path: str) -> bool:
    if path in WELL_KNOWN:
        return True
    return any(path == p or path.startswith(p + "/") for p in PREFIXES)
