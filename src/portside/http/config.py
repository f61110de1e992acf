"""/_config: live configuration for administrators (plain-text values)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from portside.core.config import MAX_VALUE_BYTES, unquote
from portside.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge
from portside.http.common import actor, json_response, read_body, services

HIDDEN = frozenset({"jwt.secret", "encryption.secret", "acme.account_key"})


async def _admin(request: Request) -> None:
    who = await actor(request)
    if not who.is_admin:
        raise Forbidden("configuration is for administrators")


async def list_config(request: Request) -> Response:
    await _admin(request)
    svc = services(request)
    return json_response({k: ("********" if k in HIDDEN else v) for k, v in svc.config.items().items()})


async def config_key(request: Request) -> Response:
    await _admin(request)
    svc = services(request)
    end, key = request.path_params["end"], request.path_params["key"]
    if len(key) > 100 or len(end) > 100:
        raise BadRequest("config key too long")
    if request.method == "GET":
        value = svc.config.get(key, None, end)
        if value is None:
            raise NotFound(f"no config key {end}/{key}")
        return PlainTextResponse(value)
    who = await actor(request)
    if request.method == "DELETE":
        if not await svc.config.delete(key, end, actor=who.ref):
            raise NotFound(f"no config key {end}/{key}")
        return Response(status_code=204)
    body = await read_body(request)
    if len(body) > MAX_VALUE_BYTES:
        raise PayloadTooLarge(f"config values are limited to {MAX_VALUE_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("config values are UTF-8 text") from None
    await svc.config.set(key, unquote(text), end, actor=who.ref)
    return PlainTextResponse("", status_code=200)


routes = [
    Route("/_config", list_config, methods=["GET"]),
    Route("/_config/{end}/{key}", config_key, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
]
