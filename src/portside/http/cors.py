"""CORS from the live config key `cors.config` (Daptin's JSON shape); no origin is allowed by default.

`{"version":"1","allowed_origins":["https://app.example"],"allowed_methods":[],"allowed_headers":[],
"exposed_headers":[],"allow_credentials":false,"max_age":0}` — `"*"` allows any origin (never together
with credentials). Read on every request, so a change applies at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from portside.tools import jsonutil

DEFAULT_METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS")
DEFAULT_HEADERS = ("authorization", "content-type", "accept")


@dataclass(frozen=True)
class CorsPolicy:
    origins: frozenset[str]
    methods: tuple[str, ...]
    headers: tuple[str, ...]
    exposed: tuple[str, ...]
    credentials: bool
    max_age: int

    def allows(self, origin: str) -> bool:
        return origin in self.origins or ("*" in self.origins and not self.credentials)


def _strings(raw: Any) -> tuple[str, ...]:
    return tuple(str(x) for x in raw if isinstance(x, str)) if isinstance(raw, list) else ()


_parsed: dict[str, CorsPolicy | None] = {}


def policy(text: str | None) -> CorsPolicy | None:
    if not text:
        return None
    if text in _parsed:
        return _parsed[text]
    try:
        raw = jsonutil.loads(text)
    except jsonutil.JSONError:
        raw = None
    result = None
    if isinstance(raw, dict) and _strings(raw.get("allowed_origins")):
        result = CorsPolicy(
            origins=frozenset(_strings(raw.get("allowed_origins"))),
            methods=tuple(m.upper() for m in _strings(raw.get("allowed_methods"))) or DEFAULT_METHODS,
            headers=tuple(h.lower() for h in _strings(raw.get("allowed_headers"))) or DEFAULT_HEADERS,
            exposed=_strings(raw.get("exposed_headers")),
            credentials=raw.get("allow_credentials") is True,
            max_age=int(raw.get("max_age") or 0) if isinstance(raw.get("max_age"), int) else 0,
        )
    if len(_parsed) > 64:
        _parsed.clear()
    _parsed[text] = result
    return result


class CorsMiddleware:
    def __init__(self, app: ASGIApp, config_value: Any):
        self.app = app
        self.config_value = config_value  # () -> str | None, read per request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        pol = policy(self.config_value()) if origin else None
        if origin is None or pol is None or not pol.allows(origin):
            await self.app(scope, receive, send)
            return
        common = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        if pol.credentials:
            common["Access-Control-Allow-Credentials"] = "true"
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            preflight = dict(common)
            preflight["Access-Control-Allow-Methods"] = ", ".join(pol.methods)
            preflight["Access-Control-Allow-Headers"] = ", ".join(pol.headers)
            if pol.max_age:
                preflight["Access-Control-Max-Age"] = str(pol.max_age)
            await Response(status_code=204, headers=preflight)(scope, receive, send)
            return
        if pol.exposed:
            common["Access-Control-Expose-Headers"] = ", ".join(pol.exposed)

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                raw += [(k.lower().encode(), v.encode()) for k, v in common.items()]
                message["headers"] = raw
            await send(message)

        await self.app(scope, receive, send_with_cors)
