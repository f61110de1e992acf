"""Request helpers shared by the HTTP routes: bounded body reading, JSON responses, the caller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response
from starlette.websockets import WebSocket

from portside.actions.services import Services
from portside.auth import tokens
from portside.auth.identity import actor_from_token
from portside.auth.permissions import GUEST, Actor
from portside.auth.sessions import token_credential
from portside.errors import BadRequest, Kind, PayloadTooLarge, Unauthorized
from portside.tools import jsonutil
from portside.tools.wire_errors import ERROR_CODE_HEADER

JSONAPI = "application/vnd.api+json"
DEFAULT_MAX_BODY = 4 * 1024 * 1024


def services(request: HTTPConnection) -> Services:
    svc: Services = request.app.state.services
    return svc


def json_response(
    data: Any, status: int = 200, media_type: str = "application/json", headers: dict[str, str] | None = None
) -> Response:
    return Response(jsonutil.dumps(data), status_code=status, media_type=media_type, headers=headers)


Source = Literal["header", "query", "cookie"]


@dataclass(frozen=True)
class Credential:
    """The token a request authenticates with and where it came from (decided once, in credential())."""

    token: str
    source: Source


def _present(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def credential(conn: HTTPConnection, *, url_token: bool = True) -> Credential | None:
    """The caller's token: `Authorization: Bearer`, then `?token=`, then the `token` cookie.

    An empty or blank value is absent at every step, so it can never make a cookie look like something
    else. `url_token=False` (routes that must not take a token in the URL) refuses any `?token=` with 401.
    """
    if not url_token and "token" in conn.query_params:
        raise Unauthorized("a token in the URL is not accepted here; send it as Authorization: Bearer or cookie")
    scheme, _, value = (conn.headers.get("authorization") or "").strip().partition(" ")
    token = _present(value) if scheme.lower() == "bearer" else None
    if token is not None:
        return Credential(token, "header")
    token = _present(conn.query_params.get("token"))
    if token is not None:
        return Credential(token, "query")
    token = _present(conn.cookies.get("token"))
    return Credential(token, "cookie") if token is not None else None


def token_of(conn: HTTPConnection) -> str | None:
    found = credential(conn)
    return found.token if found is not None else None


def same_origin(conn: HTTPConnection, origin: str) -> bool:
    parts = urlsplit(origin)
    host = (conn.headers.get("host") or "").strip().lower()
    return bool(parts.scheme and parts.netloc) and parts.netloc.lower() == host


def origin_refusal(conn: HTTPConnection) -> str | None:
    """Why a cookie-authenticated upgrade is refused (cross-site WebSocket hijacking), or None.

    Checked whenever the `token` cookie is what authenticates: the Origin must be this server's own or
    listed in config `live.allowed_origins` (comma-separated). A client that sends no Origin is not a
    browser and is not refused here.
    """
    found = credential(conn)
    if found is None or found.source != "cookie":
        return None
    origin = conn.headers.get("origin")
    if origin is None or same_origin(conn, origin):
        return None
    allowed = services(conn).config.get("live.allowed_origins") or ""
    if origin.strip() in {o.strip() for o in allowed.split(",") if o.strip()}:
        return None
    return "origin not allowed"


async def deny(ws: WebSocket, kind: Kind, text: str, status: int | None = None) -> None:
    """Refuse a WebSocket upgrade: an HTTP status (the kind's unless given), a plain-text reason, and the kind's
    stable code in the `Portside-Error-Code` header (tools/wire_errors.py)."""
    headers = {ERROR_CODE_HEADER: kind.value}
    await ws.send_denial_response(PlainTextResponse(text, status_code=status or kind.status, headers=headers))


def open_session(
    conn: HTTPConnection,
    who: Actor,
    kind: str,
    *,
    recheck: Callable[[Actor], Awaitable[None]],
    end: Callable[[str], None],
) -> Callable[[], None]:
    """Register a long-lived session with the session registry (password, group and credential changes
    re-check or end it, auth/sessions.py); returns the call that unregisters it."""
    registry = services(conn).sessions
    if registry is None:
        return lambda: None
    session = registry.open(who, kind, session_credential(conn), recheck=recheck, end=end)
    return lambda: registry.close(session)


def session_credential(conn: HTTPConnection) -> str:
    """What a long-lived session authenticated with, for the session registry: its token's id, or guest."""
    found = credential(conn)
    if found is None:
        return "guest"
    svc = services(conn)
    try:
        jti = tokens.decode(found.token, secret=svc.jwt_secret, issuer=svc.jwt_issuer).get("jti")
    except Unauthorized:
        jti = None
    return token_credential(jti if isinstance(jti, str) else "")


async def actor(request: HTTPConnection, *, url_token: bool = True) -> Actor:
    """The caller: absent token → guest; a token that is present but bad → 401."""
    found = credential(request, url_token=url_token)
    cached = request.scope.get("portside.actor")
    if isinstance(cached, Actor):
        return cached
    if found is None:
        result = GUEST
    else:
        svc = services(request)
        result = await actor_from_token(
            svc.db, svc.actors, svc.model, found.token, secret=svc.jwt_secret, issuer=svc.jwt_issuer
        )
    request.scope["portside.actor"] = result
    return result


async def read_body(request: Request) -> bytes:
    svc = services(request)
    limit = svc.config.get_int("limit.max_body_bytes", DEFAULT_MAX_BODY)
    declared = request.headers.get("content-length")
    if declared is not None:
        # ASCII digits only: int() would also take signs, underscores, spaces and other scripts' digits
        if not (declared.isascii() and declared.isdigit() and len(declared) <= 20):
            raise BadRequest("invalid Content-Length")
        if int(declared) > limit:
            raise PayloadTooLarge(f"request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, *, allow_empty: bool = False) -> Any:
    body = await read_body(request)
    if not body.strip():
        if allow_empty:
            return None
        raise BadRequest("request body is empty; expected a JSON document")
    try:
        return jsonutil.loads(body)
    except jsonutil.JSONError as exc:
        raise BadRequest(str(exc)) from None


__all__ = ["Unauthorized"]
