"""Request helpers shared by the HTTP routes: bounded body reading, JSON responses, the caller."""

from __future__ import annotations

from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from portside.actions.services import Services
from portside.auth.identity import actor_from_token
from portside.auth.permissions import GUEST, Actor
from portside.errors import BadRequest, PayloadTooLarge, Unauthorized
from portside.tools import jsonutil

JSONAPI = "application/vnd.api+json"
DEFAULT_MAX_BODY = 4 * 1024 * 1024


def services(request: HTTPConnection) -> Services:
    svc: Services = request.app.state.services
    return svc


def json_response(
    data: Any, status: int = 200, media_type: str = "application/json", headers: dict[str, str] | None = None
) -> Response:
    return Response(jsonutil.dumps(data), status_code=status, media_type=media_type, headers=headers)


def token_of(request: HTTPConnection) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer":
            return value.strip() or None
    token = request.query_params.get("token")
    if token:
        return token
    return request.cookies.get("token") or None


async def actor(request: HTTPConnection) -> Actor:
    """The caller: absent token → guest; a token that is present but bad → 401."""
    cached = request.scope.get("portside.actor")
    if isinstance(cached, Actor):
        return cached
    token = token_of(request)
    if token is None:
        result = GUEST
    else:
        svc = services(request)
        result = await actor_from_token(
            svc.db, svc.actors, svc.model, token, secret=svc.jwt_secret, issuer=svc.jwt_issuer
        )
    request.scope["portside.actor"] = result
    return result


async def read_body(request: Request) -> bytes:
    svc = services(request)
    limit = svc.config.get_int("limit.max_body_bytes", DEFAULT_MAX_BODY)
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise PayloadTooLarge(f"request body larger than {limit} bytes")
        except ValueError:
            raise BadRequest("invalid Content-Length") from None
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


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


__all__ = ["Unauthorized"]
