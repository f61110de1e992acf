"""/_config: live configuration for administrators (plain-text values).

Secret keys (core.config.is_secret) are write-only: reads show SECRET_MARKER. A key whose last dotted part
is `port` (`https.port`) takes only a port number, "" or `off` (tools.lifecycle.parse_port). The token must come from
the Authorization header or the cookie: a `?token=` in the URL (which ends up in logs and histories) is
refused with 401.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from portside.auth import access
from portside.auth.tokens import MIN_SECRET_CHARS
from portside.core.config import MAX_VALUE_BYTES, SECRET_KEYS, SECRET_MARKER, is_secret, unquote
from portside.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge
from portside.http.common import actor, json_response, read_body, services
from portside.tools import names
from portside.tools.lifecycle import parse_port


async def _admin(request: Request) -> None:
    who = await actor(request, url_token=False)
    if not access.administers(who):
        raise Forbidden("configuration is for administrators")


async def list_config(request: Request) -> Response:
    await _admin(request)
    svc = services(request)
    return json_response({k: (SECRET_MARKER if is_secret(k) else v) for k, v in svc.config.items().items()})


async def config_key(request: Request) -> Response:
    await _admin(request)
    svc = services(request)
    try:  # NFC, exact (`tools.names`): no look-alike ever aliases another key
        end = names.identifier(request.path_params["end"], "config section", 100)
        key = names.identifier(request.path_params["key"], "config key", 100)
    except names.BadName as exc:
        raise BadRequest(str(exc)) from None
    if request.method == "GET":
        value = svc.config.get(key, None, end)
        if value is None:
            raise NotFound(f"no config key {end}/{key}")
        return PlainTextResponse(SECRET_MARKER if is_secret(key) else value)
    who = await actor(request)
    if request.method == "DELETE":
        if key in SECRET_KEYS:  # without it tokens could not be checked, or encrypted columns not read
            raise BadRequest(f"{key} cannot be deleted; set a new value instead")
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
    value = unquote(text)
    if key in SECRET_KEYS and len(value.strip()) < MIN_SECRET_CHARS:
        raise BadRequest(f"{key} must be at least {MIN_SECRET_CHARS} characters")
    if is_secret(key) and value.strip() in ("", SECRET_MARKER):
        raise BadRequest(f"{key} is a secret: send the new value (not empty, not the {SECRET_MARKER} marker)")
    if key.rsplit(".", 1)[-1] == "port":  # a listener's port: checked here, so only usable values are stored
        try:
            parse_port(value, None)
        except ValueError as exc:
            raise BadRequest(f"{key}: {exc}") from None
    await svc.config.set(key, value, end, actor=who.ref)
    return PlainTextResponse("", status_code=200)


routes = [
    Route("/_config", list_config, methods=["GET"]),
    Route("/_config/{end}/{key}", config_key, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
]
