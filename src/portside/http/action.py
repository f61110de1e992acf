"""/action/{type}/{name}: run an action. `/actions`: the actions a guest may run."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from portside.actions.builtin import CREDENTIAL_FREE
from portside.actions.registry import response as action_response
from portside.actions.runner import run_action
from portside.auth import access
from portside.auth.permissions import GUEST
from portside.errors import BadRequest, MethodNotAllowed, PortsideError
from portside.http.common import actor, json_response, read_body, services
from portside.http.peer import client_address, is_tls
from portside.tools import jsonutil
from portside.tools.wire_errors import action_error


async def _attributes(request: Request) -> dict[str, Any]:
    body = await read_body(request)
    attrs: dict[str, Any] = {}
    if body.strip():
        ctype = request.headers.get("content-type", "")
        if "application/x-www-form-urlencoded" in ctype and not body.lstrip().startswith(b"{"):
            attrs.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        else:
            try:
                doc = jsonutil.loads(body)
            except jsonutil.JSONError as exc:
                raise BadRequest(str(exc)) from None
            if not isinstance(doc, dict):
                raise BadRequest("expected a JSON object with attributes")
            inner = doc.get("attributes", {})
            if inner is None:
                inner = {}
            if not isinstance(inner, dict):
                raise BadRequest("attributes must be an object", pointer="/attributes")
            attrs.update({k: v for k, v in doc.items() if k != "attributes"})
            attrs.update(inner)
    for k, v in request.query_params.items():
        if k != "token":
            attrs.setdefault(k, v)
    return attrs


async def action(request: Request) -> Response:
    svc = services(request)
    on_type, name = request.path_params["type"], request.path_params["name"]
    try:
        if (on_type, name) in CREDENTIAL_FREE:
            # signin/signout change the session: never from a GET (a link or an <img> on another site, or a
            # password in a URL that ends up in logs)
            if request.method == "GET":
                raise MethodNotAllowed(f"{on_type}/{name} takes POST")
            who = GUEST
        else:
            who = await actor(request)
        attrs = await _attributes(request)
        result = await run_action(svc, who, on_type, name, attrs, client=client_address(request))
    except PortsideError as exc:
        status, attrs, headers = action_error(exc)
        return json_response([action_response("client.notify", attrs)], status, headers=headers)
    response = json_response(result.responses, result.status)
    secure = is_tls(request)
    for key, value in result.cookies:  # None: clear it, with the attributes it was set with
        if value is None:
            response.delete_cookie(key, path="/", secure=secure, httponly=True, samesite="strict")
        else:
            response.set_cookie(key, value, path="/", secure=secure, httponly=True, samesite="strict")
    return response


async def guest_actions(request: Request) -> Response:
    svc = services(request)
    out: dict[str, Any] = {}
    for (on_type, name), act in svc.model.actions.items():
        if access.guest_action(on_type, name):
            out[f"user:{name}"] = act.to_json()
    return json_response(out)


routes = [
    Route("/action/{type}/{name}", action, methods=["GET", "POST", "PATCH", "PUT", "DELETE"]),
    Route("/actions", guest_actions, methods=["GET"]),
]
