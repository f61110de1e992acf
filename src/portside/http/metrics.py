"""GET /metrics (Prometheus text format) and the HTTP request metrics.

`RequestMetrics` wraps the whole HTTP application (DAV included): one count and one latency observation
per answered request, labelled by method, route *template* (`/api/{table}/{ref}`, never the raw path) and
status class. WebSocket and lifespan scopes pass straight through (/live and Yjs have their own metrics).

`/metrics` on the HTTP port is for administrators: a token (Authorization: Bearer or the cookie, never in
the URL) or HTTP Basic (email and password, or an application password, through `auth.login`); no
credentials or bad ones is 401, a signed-in user who is not an administrator 403. `scrape_app` is the same
text without any check, for the separate listener of config `metrics.listen_interface` (runtime.py).
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from portside.auth import access
from portside.auth.login import login
from portside.auth.permissions import Actor
from portside.errors import Forbidden, Unauthorized
from portside.http.common import JSONAPI, actor, credential, json_response, services
from portside.http.listener import UvicornListener
from portside.tools import metrics
from portside.tools.lifecycle import Listeners
from portside.tools.wire_errors import jsonapi_error

METRICS_KEY = "metrics.listen_interface"  # host:port of the unauthenticated scrape listener; "" = none
LISTENER = "metrics"
UNMATCHED = "other"
PREFIXES = frozenset({"caldav", "carddav", ".well-known"})  # paths served outside the router (DAV)
REALM = 'Basic realm="metrics", charset="UTF-8"'
# debug switch (not an option): the HTTP application without `RequestMetrics`, for bench/metrics.py only
DEBUG_NO_REQUEST_METRICS = "PORTSIDE_DEBUG_NO_REQUEST_METRICS"


def instrument(app: ASGIApp, routes: list[BaseRoute]) -> ASGIApp:
    """`app` with every HTTP request counted (unless the bench's debug switch says otherwise)."""
    if os.environ.get(DEBUG_NO_REQUEST_METRICS) == "1":
        return app
    return RequestMetrics(app, routes)


class RequestMetrics:
    """ASGI wrapper counting HTTP requests; `routes` are the router's, for the template of an endpoint."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute], recorder: metrics.HttpRecorder = metrics.HTTP):
        self.app = app
        self.recorder = recorder
        self._templates: dict[Any, list[tuple[frozenset[str], str]]] = {}
        for route in routes:
            if isinstance(route, Route | WebSocketRoute):
                entry = (frozenset(route.param_convertors), route.path)
                self._templates.setdefault(route.endpoint, []).append(entry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self.recorder.record(scope["method"], self.template(scope), status, time.perf_counter() - started)

    def template(self, scope: Scope) -> str:
        found = self._templates.get(scope.get("endpoint"))
        if found is not None:
            if len(found) == 1:
                return found[0][1]
            params = frozenset(scope.get("path_params") or ())
            for keys, path in found:
                if keys == params:
                    return path
        first = str(scope.get("path") or "/").lstrip("/").split("/", 1)[0]
        return f"/{first}/*" if first in PREFIXES else UNMATCHED


def exposition() -> Response:
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)


async def _basic(request: Request, value: str) -> Actor:
    try:
        email, sep, secret = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Unauthorized("malformed Basic credentials") from None
    if not sep:
        raise Unauthorized("malformed Basic credentials")
    svc = services(request)
    address = request.client.host if request.client is not None else ""
    done = await login(
        svc.db, svc.model, svc.logins, identifier=email, secret=secret, address=address, protocol="metrics"
    )
    return done.actor


async def scraper(request: Request) -> Actor | None:
    """The caller of /metrics; None when no credentials were presented."""
    scheme, _, value = (request.headers.get("authorization") or "").strip().partition(" ")
    if scheme.lower() == "basic" and value.strip():
        return await _basic(request, value)
    if credential(request, url_token=False) is None:
        return None
    return await actor(request, url_token=False)


async def metrics_page(request: Request) -> Response:
    try:
        who = await scraper(request)
        if who is None:
            raise Unauthorized("sign in as an administrator to read the metrics")
    except Unauthorized as exc:  # the usual error document, plus the challenge a Basic client waits for
        status, doc, headers = jsonapi_error(exc)
        return json_response(doc, status, JSONAPI, headers={**(headers or {}), "WWW-Authenticate": REALM})
    if not access.administers(who):
        raise Forbidden("the metrics are for administrators")
    await metrics.refresh()
    return exposition()


routes = [Route("/metrics", metrics_page, methods=["GET"])]


def scrape_app() -> Callable[[Scope, Receive, Send], Any]:
    """The unauthenticated scrape endpoint of the separate metrics listener: GET /metrics only."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; a WebSocket handshake is refused by the server
        if scope.get("path") != "/metrics":
            response: Response = PlainTextResponse("not found", 404)
        elif scope.get("method") not in ("GET", "HEAD"):
            response = PlainTextResponse("method not allowed", 405, headers={"Allow": "GET, HEAD"})
        else:
            await metrics.refresh()
            response = exposition()
        await response(scope, receive, send)

    return app


def parse_interface(value: str) -> tuple[str, int]:
    """`host:port` (IPv6 in brackets; port 0 picks one); ValueError with a sentence otherwise."""
    host, sep, port = value.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not (port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535):
        raise ValueError(f"{METRICS_KEY}: {value!r} is not host:port")
    return host, int(port)


class ScrapePort:
    """Starts, moves and stops the scrape listener (`metrics`, listed in /_ports) as config asks, live."""

    def __init__(self, listeners: Listeners, config: Callable[[ASGIApp, int], uvicorn.Config]):
        self.listeners, self.config = listeners, config

    def _listener(self, host: str, port: int) -> UvicornListener:
        return UvicornListener(LISTENER, host, port, lambda real: self.config(scrape_app(), real))

    async def apply(self, value: str | None) -> None:
        text = (value or "").strip()
        if not text:
            await self.listeners.stop(LISTENER)
            return
        try:
            host, port = parse_interface(text)
        except ValueError as exc:
            await self.listeners.fail(self._listener("127.0.0.1", 0), str(exc))
            return
        running = self.listeners.get(LISTENER)
        if running is None or running.host != host or port not in (running.port, running.bound_port):
            await self.listeners.start(self._listener(host, port))
