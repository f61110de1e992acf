"""The Starlette application. Middleware, outermost first: errors → CORS → routes.

Errors become wire format here only (through `tools.wire_errors`): PortsideError → JSON:API error document
with its status and code; a database that stays busy (a lock or pool wait that timed out, a deadlock
victim) → 503 with Retry-After, as the write path already answers; anything else → a generic 500
`internal` (logged with its traceback, never sent to the client).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from portside import log
from portside.actions.services import Services
from portside.core import db_errors
from portside.errors import PortsideError, Unavailable, kind_for_status
from portside.http import acme, action, api, assets, config, feed, live, metrics, openapi, ports, yjs
from portside.http.common import JSONAPI, json_response
from portside.http.cors import CorsMiddleware
from portside.http.sites import SiteHosts
from portside.tools.wire_errors import jsonapi_error

logger = log.get("http")


def error_response(exc: PortsideError) -> Response:
    status, doc, headers = jsonapi_error(exc)
    return json_response(doc, status, JSONAPI, headers=headers)


async def on_portside_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PortsideError)
    return error_response(exc)


async def on_http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(PortsideError(exc.detail, kind=kind_for_status(exc.status_code)))


async def on_error(_request: Request, exc: Exception) -> Response:
    if db_errors.busy(exc):
        logger.warning("database busy: %s (answered 503)", exc.__class__.__name__)
        return error_response(Unavailable("the database is busy; try again", retry_after=1))
    logger.exception("unhandled error", exc_info=exc)
    return error_response(PortsideError("internal error"))


async def ping(_request: Request) -> Response:
    return PlainTextResponse("pong")


def build_app(services: Services) -> Starlette:
    routes = [
        Route("/ping", ping),
        *api.routes,
        *action.routes,
        *config.routes,
        *ports.routes,
        *metrics.routes,
        *openapi.routes,
        *live.routes,
        *feed.routes,
        *yjs.routes,
        *acme.routes,
        *assets.routes,
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(SiteHosts, services=services),  # a site's own host name is served from its store
            Middleware(CorsMiddleware, config_value=lambda: services.config.get("cors.config")),
        ],
        exception_handlers={PortsideError: on_portside_error, HTTPException: on_http_error, Exception: on_error},
    )
    app.state.services = services
    return app
