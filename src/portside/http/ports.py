"""/_ports: the listeners this node runs (and the ones that failed to start), for administrators.

A token must come from the Authorization header or the cookie, as for /_config. No token or a bad one is
401, a signed-in user who is not an administrator 403.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from portside.auth import access
from portside.errors import Forbidden, Unauthorized
from portside.http.common import actor, credential, json_response
from portside.tools.lifecycle import Listeners


async def list_ports(request: Request) -> Response:
    if credential(request, url_token=False) is None:
        raise Unauthorized("sign in as an administrator to see the listeners")
    if not access.administers(await actor(request, url_token=False)):
        raise Forbidden("the listeners are for administrators")
    registry: Listeners | None = getattr(request.app.state, "listeners", None)
    entries = registry.entries() if registry is not None else []
    return json_response([e.as_json() for e in entries])


routes = [Route("/_ports", list_ports, methods=["GET"])]
