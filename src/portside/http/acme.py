"""ACME HTTP-01: `GET /.well-known/acme-challenge/{token}` answers the key authorization of a pending order
(this node's or another's: they are in the database). A malformed, unknown or expired token is a 404."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from portside.errors import NotFound
from portside.http.common import services


async def challenge(request: Request) -> Response:
    certs = services(request).certs
    token = request.path_params["token"]
    validation = await certs.challenges.get(token) if certs is not None else None
    if validation is None:
        raise NotFound("no pending ACME challenge with this token")
    return PlainTextResponse(validation, media_type="application/octet-stream")


routes = [Route("/.well-known/acme-challenge/{token}", challenge, methods=["GET"])]
