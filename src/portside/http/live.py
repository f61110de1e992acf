"""/live: the realtime WebSocket (Daptin's protocol, spec/realtime.md §A).

This first slice serves table topics: `subscribe` (with §A.8 filters), `unsubscribe`, `ping`, and event
frames filtered per row by the caller's rights. A missing or bad token is refused with HTTP 401 before
the upgrade (`live.allow_guests` admits anonymous sessions that see what a guest may see). `data` is
base64 of JSON by default, plain JSON with `?encoding=json`; every event frame carries its `offset`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from portside import log
from portside.actions.services import Services
from portside.auth import access
from portside.auth.permissions import CREATE, EXECUTE, GUEST, PEEK, READ, Actor
from portside.core import limits, records
from portside.errors import BadRequest, Forbidden, Kind, PortsideError, Unavailable
from portside.http.common import actor as caller
from portside.http.common import json_response, open_session, origin_refusal, services, token_of
from portside.http.wire import DirectWire, text_frame
from portside.realtime import replay, topics
from portside.realtime.hub import LiveHub, LiveSession
from portside.tools import jsonutil
from portside.tools.wire_errors import ws_close_code

logger = log.get("live")
QUEUE_SIZE = 1024
MAX_BACKLOG = 1 << 20  # bytes written to a socket but not yet taken by the kernel: beyond this, 1013
CLOSE_GRACE = 10.0  # seconds a close frame may wait behind a full buffer before the socket is aborted
MAX_TOPICS_PER_CALL = 100
MAX_SUBSCRIPTIONS = 1000
CLOSE_TOO_SLOW = ws_close_code(Kind.TOO_SLOW)
TOPIC_METHODS = frozenset(
    {"create-topicName", "destroy-topicName", "set-topic-permission", "get-topic-permission", "new-message"}
)


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


def response(req_id: Any, method: str, ok: bool, *, error: str = "", data: Any = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "response"}
    if isinstance(req_id, str) and req_id:
        frame["id"] = req_id
    if method:
        frame["method"] = method
    frame["ok"] = ok
    if error:
        frame["error"] = error
    if data is not None:
        frame["data"] = data
    return frame


class Connection:
    def __init__(self, ws: WebSocket, hub: LiveHub, who: Actor, as_json: bool):
        self.ws = ws
        self.hub = hub
        self.as_json = as_json
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_SIZE)
        self.session = LiveSession(who, self.offer)
        self.too_slow = asyncio.Event()
        self.wire = DirectWire.of(ws.scope)

    def offer(self, frame: dict[str, Any]) -> bool:
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

    async def handle(self, raw: str | bytes) -> None:
        try:
            request = jsonutil.loads(raw, max_depth=16)
        except jsonutil.JSONError:
            self.offer(response(None, "", False, error="invalid JSON"))
            return
        if not isinstance(request, dict):
            self.offer(response(None, "", False, error="request must be a JSON object"))
            return
        req_id = request.get("id")
        raw_method = request.get("method")
        method = raw_method if isinstance(raw_method, str) else ""
        if req_id is not None and not isinstance(req_id, str):
            self.offer(response(None, method, False, error="id must be a string"))
            return
        attrs = request.get("attributes")
        attrs = attrs if isinstance(attrs, dict) else {}
        if method == "ping":
            self.offer({"type": "pong"})
        elif method == "subscribe":
            await self.subscribe(req_id, attrs)
        elif method in TOPIC_METHODS:
            await self.topic_method(req_id, method, attrs)
        elif method == "unsubscribe":
            for topic in self.topics(req_id, method, attrs):
                if self.hub.unsubscribe(self.session, topic):
                    self.offer(response(req_id, method, True, data={"topic": topic}))
                else:
                    self.offer(response(req_id, method, False, error=f"not subscribed: {topic}"))
        else:
            self.offer(response(req_id, method, False, error="no such method"))

    async def topic_method(self, req_id: Any, method: str, attrs: dict[str, Any]) -> None:
        svc = services(self.ws)
        who = self.session.actor
        try:
            if method == "create-topicName":
                row = await topics.create(svc.db, svc.model, who, attrs.get("name"))
                data: Any = {"created": True, "topicName": row.attrs["name"]}
            elif method == "destroy-topicName":
                name = await topics.destroy(svc.db, svc.model, who, attrs.get("name"))
                data = {"destroyed": True, "topicName": name}
            elif method == "set-topic-permission":
                value = await topics.set_permission(
                    svc.db, svc.model, who, attrs.get("topicName"), attrs.get("permission")
                )
                data = {"permission": value, "topicName": attrs.get("topicName")}
            elif method == "get-topic-permission":
                data = await self.topic_permission(attrs.get("topicName"))
            else:
                data = await self.new_message(attrs)
        except topics.TopicError as exc:
            self.offer(response(req_id, method, False, error=str(exc)))
            return
        self.offer(response(req_id, method, True, data=data))

    async def topic_permission(self, name: Any) -> dict[str, Any]:
        svc = services(self.ws)
        if not isinstance(name, str) or not name:
            raise topics.TopicError("missing or invalid topicName")
        tm = svc.model.tables.get(name)
        if tm is None:
            row = await topics.user_topic(svc.db, svc.model, self.session.actor, name, PEEK, suffix=False)
            return {"owner": row.grants.owner, "permission": row.grants.permission, "topicName": name, "type": "user"}
        w = svc.model.table("world")
        async with svc.db.read() as conn:
            try:
                await svc.crud.gate(conn, self.session.actor, tm, PEEK)
            except Forbidden:
                raise topics.TopicError("permission denied") from None
            rows = await records.fetch(conn, svc.model, w, w.sa.c.table_name == name, groups=False)
        return {"permission": rows[0].grants.permission if rows else 0, "topicName": name, "type": "system"}

    async def new_message(self, attrs: dict[str, Any]) -> dict[str, Any]:
        svc = services(self.ws)
        name, message = attrs.get("topicName"), attrs.get("message")
        if not isinstance(name, str) or not name or "," in name:
            raise topics.TopicError("missing or invalid topicName")
        if not isinstance(message, dict):
            raise topics.TopicError("missing or invalid message")
        tm = svc.model.tables.get(name)
        if tm is None:
            try:
                await topics.user_topic(svc.db, svc.model, self.session.actor, name, EXECUTE, suffix=True)
            except topics.TopicError as exc:
                if exc.kind is Kind.NOT_FOUND:  # Daptin's wording for new-message
                    raise topics.TopicError(f"topic does not exist: {name}") from None
                raise
        else:
            try:
                await svc.crud.check_gate(self.session.actor, tm, CREATE)
            except Forbidden:
                raise topics.TopicError(f"permission denied: {name}") from None
        event = await topics.publish(svc.db, self.session.actor, name, message)
        return {"topic": name, "offset": event.offset}

    def topics(self, req_id: Any, method: str, attrs: dict[str, Any]) -> list[str]:
        raw = attrs.get("topicName")
        if not isinstance(raw, str) or not raw.strip():
            self.offer(response(req_id, method, False, error="missing or invalid topicName"))
            return []
        names = [t.strip() for t in raw.split(",") if t.strip()]
        if len(names) > MAX_TOPICS_PER_CALL:
            self.offer(response(req_id, method, False, error=f"at most {MAX_TOPICS_PER_CALL} topics per request"))
            return []
        return names

    async def subscribe(self, req_id: Any, attrs: dict[str, Any]) -> None:
        """Subscribe to topics; with `since`, replay what the socket has not been sent after that offset: all of
        it for a new subscription, and for a topic already followed the part before its live coverage."""
        svc = services(self.ws)
        filters = attrs.get("filters")
        filters = filters if isinstance(filters, dict) else {}
        since = attrs.get("since")
        if since is not None:
            try:
                since = limits.whole_number(since, "since", 0, limits.MAX_OFFSET)
            except BadRequest:
                self.offer(response(req_id, "subscribe", False, error="since must be a non-negative integer offset"))
                return
            if not await replay.offset_kept(svc.db, since):
                self.offer(response(req_id, "subscribe", False, error="offset expired"))
                return
        fresh: set[str] = set()
        known: dict[str, int] = {}
        session = self.session
        if since is not None:
            session.hold = session.hold or []  # park live frames until the replay is out
        for topic in self.topics(req_id, "subscribe", attrs):
            if len(session.subscriptions) >= MAX_SUBSCRIPTIONS and topic not in session.subscriptions:
                self.offer(response(req_id, "subscribe", False, error="too many subscriptions"))
                continue
            tm = svc.model.tables.get(topic)
            try:
                if tm is None:
                    await topics.user_topic(svc.db, svc.model, session.actor, topic, READ, suffix=True)
                else:
                    await svc.crud.check_gate(session.actor, tm, PEEK)
            except Forbidden:
                self.offer(response(req_id, "subscribe", False, error=f"permission denied: {topic}"))
                continue
            except topics.TopicError as exc:
                self.offer(response(req_id, "subscribe", False, error=str(exc)))
                continue
            if self.hub.subscribe(session, topic, dict(filters)):
                session.forget(topic)
                if since is None:
                    session.covered[topic] = self.hub.bus.head  # later events reach it live
                else:
                    fresh.add(topic)
            elif since is not None and topic in session.covered and since < session.covered[topic]:
                known[topic] = session.covered[topic]
            self.offer(response(req_id, "subscribe", True, data={"topic": topic}))
        if since is not None:
            await replay.replay(svc.db, session, since, fresh, known)


def refusal(svc: Services, ws: WebSocket, who: Actor) -> tuple[int, str] | None:
    """Why this upgrade is refused (status, text), or None. Checked before accepting the socket."""
    hub = svc.hub
    if hub is None:
        return 503, "live is not running"
    refused = origin_refusal(ws)
    if refused is not None:
        return 403, refused
    if len(hub.sessions) >= svc.config.get_int("live.max_connections", 10_000):
        return 503, "too many live connections"
    per_user = svc.config.get_int("live.max_connections_per_user", 100)
    if who.ref is not None and sum(1 for s in hub.sessions if s.actor.ref == who.ref) >= per_user:
        return 429, "too many live connections for this user"
    return None


async def live(ws: WebSocket) -> None:
    svc = services(ws)
    hub = svc.hub
    try:
        if token_of(ws) is None and not svc.config.get_bool("live.allow_guests", False):
            raise PortsideError("a token is required")
        who = await caller(ws) if token_of(ws) is not None else GUEST
    except PortsideError as exc:
        await ws.send_denial_response(PlainTextResponse(f"unauthorized: {exc.detail}", status_code=401))
        return
    refused = refusal(svc, ws, who)
    if refused is not None or hub is None:
        status, text = refused or (503, "live is not running")
        await ws.send_denial_response(PlainTextResponse(text, status_code=status))
        return
    await ws.accept()
    conn = Connection(ws, hub, who, ws.query_params.get("encoding") == "json")
    closing: list[tuple[int, str]] = []

    def close_later(code: int, reason: str) -> None:
        closing.append((code, reason))
        conn.too_slow.set()  # wakes the connection loop, which closes with the recorded code

    conn.session.close = close_later
    hub.sessions.add(conn.session)
    session = conn.session
    unregister = open_session(
        ws, who, "live", recheck=lambda fresh: hub.recheck(session, fresh), end=lambda r: hub.expel(session, r)
    )
    conn.offer(
        {
            "type": "session",
            "status": "open",
            "data": {
                "user": who.ref,
                "groups": sorted(who.groups),
                "sessionId": conn.session.id,
                "offset": svc.bus.head,
            },
        }
    )
    if conn.wire is None:
        logger.warning("live: direct frame path unavailable, using ASGI sends (slower fan-out)")
    slow = asyncio.create_task(conn.too_slow.wait())
    background = {slow} if conn.wire is not None else {slow, asyncio.create_task(conn.writer())}
    try:
        while True:
            receive = asyncio.create_task(ws.receive())
            done, _ = await asyncio.wait({receive, *background}, return_when=asyncio.FIRST_COMPLETED)
            if receive not in done:
                receive.cancel()
                if slow in done:
                    code, reason = closing[0] if closing else (CLOSE_TOO_SLOW, "too slow: send queue full")
                    await close(ws, conn.wire, code, reason)
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
        hub.drop(conn.session)
        hub.sessions.discard(conn.session)
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
