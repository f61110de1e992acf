"""/live over HTTP: authenticate, upgrade, adapt the socket, and run the live service (realtime/live_session.py,
which holds the protocol: verbs, topics, replay, per-subscriber rights).

A missing or bad token is refused with HTTP 401 before the upgrade (`live.allow_guests` admits anonymous
sessions that see what a guest may see); every refusal before the upgrade carries its error kind's code in
the `Portside-Error-Code` header (tools/wire_errors.py). `data` is base64 of JSON by default, plain JSON with
`?encoding=json`; every event frame carries its `offset`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from portside import log
from portside.actions.services import Services
from portside.auth import access
from portside.auth.permissions import GUEST, Actor
from portside.errors import Forbidden, Kind, PortsideError, Unauthorized, Unavailable
from portside.http.common import actor as caller
from portside.http.common import deny, json_response, open_session, origin_refusal, services, token_of
from portside.http.wire import DirectWire, text_frame
from portside.tools import jsonutil
from portside.tools.wire_errors import ws_close_code

logger = log.get("live")
QUEUE_SIZE = 1024
MAX_BACKLOG = 1 << 20  # bytes written to a socket but not yet taken by the kernel: beyond this, 1013
CLOSE_GRACE = 10.0  # seconds a close frame may wait behind a full buffer before the socket is aborted
CLOSE_TOO_SLOW = ws_close_code(Kind.TOO_SLOW)


def encode(frame: dict[str, Any], as_json: bool) -> str:
    """Serialise a frame; shared event frames memoise their text per encoding."""
    memo_key = "\x00json" if as_json else "\x00b64"
    memo = frame.get(memo_key)
    if isinstance(memo, str):
        return memo
    out = {k: v for k, v in frame.items() if not k.startswith("\x00")}
    if "data" in out and not as_json:
        out["data"] = base64.b64encode(jsonutil.dumps(out["data"])).decode()
    text = jsonutil.dumps_str(out)
    if frame.get("type") == "event":
        frame[memo_key] = text
    return text


def wire_bytes(frame: dict[str, Any], as_json: bool) -> bytes:
    """The whole WebSocket frame; shared event frames memoise it per encoding (built once per event)."""
    memo_key = "\x00json-wire" if as_json else "\x00b64-wire"
    memo = frame.get(memo_key)
    if isinstance(memo, bytes):
        return memo
    wire = text_frame(encode(frame, as_json).encode())
    if frame.get("type") == "event":
        frame[memo_key] = wire
    return wire


def wire_json(frame: dict[str, Any]) -> bytes:
    return wire_bytes(frame, True)


def wire_b64(frame: dict[str, Any]) -> bytes:
    return wire_bytes(frame, False)


class SocketTransport:
    """The live service's `Transport` over one WebSocket: frames go straight to the socket as pre-built
    WebSocket frames (`DirectWire`) while it keeps up, else (no direct path) through a queue and a writer task
    that sends them through ASGI. A peer that falls behind is closed by the connection loop (1013)."""

    def __init__(self, ws: WebSocket, as_json: bool):
        self.ws = ws
        self.as_json = as_json
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_SIZE)
        self.too_slow = asyncio.Event()
        self.closing: list[tuple[int, str]] = []
        self.wire = DirectWire.of(ws.scope)

    def send(self, frame: dict[str, Any]) -> bool:
        """Send a frame without waiting: straight to the socket on the direct path, else via the queue."""
        wire = self.wire
        if wire is not None:
            if wire.send(wire_bytes(frame, self.as_json), MAX_BACKLOG):
                return True
            self.too_slow.set()
            return False
        try:
            self.queue.put_nowait(frame)
            return True
        except asyncio.QueueFull:
            self.too_slow.set()
            return False

    def direct(self) -> tuple[Callable[[dict[str, Any]], bytes], Callable[[bytes], bool]] | None:
        """The hub's lean path for event frames: one encoder per encoding (the hub builds each event's WebSocket
        frame once per encoder) and a post to this socket; None without the direct path."""
        if self.wire is None:
            return None
        return (wire_json if self.as_json else wire_b64), self.wire.poster(MAX_BACKLOG, self.too_slow.set)

    def close(self, code: int, reason: str) -> None:
        self.closing.append((code, reason))
        self.too_slow.set()  # wakes the connection loop, which closes with the recorded code

    async def writer(self) -> None:
        """Send queued frames; under load each wake-up drains everything queued (fewer task switches)."""
        send = self.ws.send
        while True:
            batch = [await self.queue.get()]
            while not self.queue.empty() and len(batch) < 256:
                batch.append(self.queue.get_nowait())
            for frame in batch:
                if frame is None:
                    return
                await send({"type": "websocket.send", "text": encode(frame, self.as_json)})


def refusal(svc: Services, ws: WebSocket, who: Actor) -> tuple[Kind, str] | None:
    """Why this upgrade is refused (kind, text), or None. Checked before accepting the socket."""
    if svc.live is None:
        return Kind.UNAVAILABLE, "live is not running"
    refused = origin_refusal(ws)
    if refused is not None:
        return Kind.FORBIDDEN, refused
    return svc.live.refusal(who)


async def live(ws: WebSocket) -> None:
    svc = services(ws)
    try:
        if token_of(ws) is None and not svc.config.get_bool("live.allow_guests", False):
            raise Unauthorized("a token is required")
        who = await caller(ws) if token_of(ws) is not None else GUEST
    except PortsideError as exc:
        await deny(ws, exc.kind if exc.kind.status == 401 else Kind.UNAUTHORIZED, f"unauthorized: {exc.detail}")
        return
    refused = refusal(svc, ws, who)
    service = svc.live
    if refused is not None or service is None:
        await deny(ws, *(refused or (Kind.UNAVAILABLE, "live is not running")))
        return
    await ws.accept()
    transport = SocketTransport(ws, ws.query_params.get("encoding") == "json")
    conn = service.open(transport, who)
    unregister = open_session(ws, who, "live", recheck=conn.recheck, end=conn.expel)
    conn.greet()
    if transport.wire is None:
        logger.warning("live: direct frame path unavailable, using ASGI sends (slower fan-out)")
    slow = asyncio.create_task(transport.too_slow.wait())
    background = {slow} if transport.wire is not None else {slow, asyncio.create_task(transport.writer())}
    try:
        while True:
            receive = asyncio.create_task(ws.receive())
            done, _ = await asyncio.wait({receive, *background}, return_when=asyncio.FIRST_COMPLETED)
            if receive not in done:
                receive.cancel()
                if slow in done:
                    closing = transport.closing
                    code, reason = closing[0] if closing else (CLOSE_TOO_SLOW, "too slow: send queue full")
                    await close(ws, transport.wire, code, reason)
                return
            message = receive.result()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text") if message.get("text") is not None else message.get("bytes")
            if raw is not None:
                await conn.handle(raw)
    except WebSocketDisconnect:
        return
    finally:
        unregister()
        service.leave(conn)
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def close(ws: WebSocket, wire: DirectWire | None, code: int, reason: str) -> None:
    """Close with `code`; a peer that does not read lets the close frame wait at most CLOSE_GRACE seconds."""
    try:
        await asyncio.wait_for(ws.close(code, reason), CLOSE_GRACE)
    except (TimeoutError, RuntimeError, OSError):
        if wire is not None:
            wire.abort()


async def live_stats(request: Request) -> Response:
    """Administrators: this node's /live counters (sessions, subscriptions, events and frames, the CPU the
    fan-out took). Counters grow from process start; compare two readings."""
    who = await caller(request)
    if not access.administers(who):
        raise Forbidden("administrators only")
    hub = services(request).hub
    if hub is None:
        raise Unavailable("live is not running")
    return json_response({"data": hub.stats()})


routes = [WebSocketRoute("/live", live), Route("/live/stats", live_stats)]
