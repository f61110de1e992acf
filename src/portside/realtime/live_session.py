"""The /live session, protocol-neutral: verbs, topics, replay with `since`, per-subscriber rights.

An edge authenticates the caller, upgrades its socket, wraps it in a `Transport` (send one frame without
waiting, close with a code) and hands both to `LiveService.open`; then it feeds each received message to
`LiveConnection.handle` and calls `LiveService.leave` when the socket ends. Frames are dicts; how they are
written (JSON or base64 `data`, WebSocket frames, a direct write path) is the transport's business.

Verbs (Daptin's protocol, spec/realtime.md §A): `ping`, `subscribe` (with §A.8 filters and `since`),
`unsubscribe`, and the user-topic verbs `create-topicName`, `destroy-topicName`, `set-topic-permission`,
`get-topic-permission`, `new-message`. A refused request is answered `{"type": "response", "ok": false,
"error": <Daptin's text>, "code": <error kind>}` (`portside.errors.Kind`; clients decide by `code`).

Table gates and table topic permissions come from the row layer (L3), given by the runtime as `TableRights`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, cast

from portside import log
from portside.auth.permissions import CREATE, EXECUTE, PEEK, READ, Actor
from portside.core import db_errors, limits
from portside.core.catalog import Catalog
from portside.core.config import ConfigStore
from portside.core.db import Database
from portside.core.model import TableModel
from portside.errors import BadRequest, Forbidden, Kind
from portside.realtime import replay, topics
from portside.realtime.hub import LiveHub, LiveSession
from portside.tools import jsonutil

logger = log.get("live")

MAX_TOPICS_PER_CALL = 100
MAX_SUBSCRIPTIONS = 1000
MAX_DEPTH = 16
TOPIC_METHODS = frozenset(
    {"create-topicName", "destroy-topicName", "set-topic-permission", "get-topic-permission", "new-message"}
)


class Transport(Protocol):
    """One client's connection, as the live service sees it."""

    def send(self, frame: dict[str, Any]) -> bool:
        """Hand a frame to the client without waiting; False when the client does not keep up."""
        ...

    def close(self, code: int, reason: str) -> None:
        """End the connection soon with this close code (the transport closes it from its own loop)."""
        ...


class DirectTransport(Transport, Protocol):
    """A transport with a lean path for event frames (optional): `direct()` answers (encode, post) or None.
    `encode(frame)` must give the same result for every transport with the same `encode`; `post(encoded)` sends
    it without waiting, False when the client does not keep up (the transport then ends the connection)."""

    def direct(self) -> tuple[Callable[[dict[str, Any]], Any], Callable[[Any], bool]] | None: ...


class TableRights(Protocol):
    """Table gates, from the row layer (actions/live_access.py); each raises `Forbidden` when refused."""

    async def check_table(self, who: Actor, tm: TableModel, right: int) -> None: ...

    async def table_permission(self, who: Actor, tm: TableModel) -> int:
        """The table's own permission (its `world` row), for a caller who may peek at the table."""
        ...


def response(
    req_id: Any, method: str, ok: bool, *, error: str = "", data: Any = None, code: Kind | None = None
) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "response"}
    if isinstance(req_id, str) and req_id:
        frame["id"] = req_id
    if method:
        frame["method"] = method
    frame["ok"] = ok
    if error:
        frame["error"] = error
    if code is not None:
        frame["code"] = code.value
    if data is not None:
        frame["data"] = data
    return frame


def refused(req_id: Any, method: str, kind: Kind, error: str) -> dict[str, Any]:
    """A refusal: Daptin's `error` text plus the stable `code` of its kind."""
    return response(req_id, method, False, error=error, code=kind)


class LiveService:
    """The /live sessions of this node (the hub fans events out to them)."""

    def __init__(self, db: Database, catalog: Catalog, config: ConfigStore, hub: LiveHub, rights: TableRights):
        self.db = db
        self.catalog = catalog
        self.config = config
        self.hub = hub
        self.rights = rights
        self.topic_rows = topics.TopicRows()  # user-topic rows, dropped by change events (`Services.invalidate`)
        self.per_user: dict[str, int] = {}  # user ref -> open sessions (counted under the ref they opened with)

    def refusal(self, who: Actor) -> tuple[Kind, str] | None:
        """Why a new session for `who` is refused now (connection limits), or None."""
        hub = self.hub
        if len(hub.sessions) >= self.config.get_int("live.max_connections", 10_000):
            return Kind.UNAVAILABLE, "too many live connections"
        per_user = self.config.get_int("live.max_connections_per_user", 100)
        if who.ref is not None and self.per_user.get(who.ref, 0) >= per_user:
            return Kind.TOO_MANY_REQUESTS, "too many live connections for this user"
        return None

    def open(self, transport: Transport, who: Actor) -> LiveConnection:
        """Start a session: it joins the hub, and its first frame says who it is and the current offset."""
        conn = LiveConnection(self, transport, who)
        self.hub.sessions.add(conn.session)
        if conn.user is not None:
            self.per_user[conn.user] = self.per_user.get(conn.user, 0) + 1
        return conn

    def leave(self, conn: LiveConnection) -> None:
        self.hub.drop(conn.session)
        if conn.session in self.hub.sessions:
            self.hub.sessions.discard(conn.session)
            if conn.user is not None:
                left = self.per_user.pop(conn.user, 1) - 1
                if left > 0:
                    self.per_user[conn.user] = left


class LiveConnection:
    """One client's /live session."""

    def __init__(self, service: LiveService, transport: Transport, who: Actor):
        self.service = service
        self.hub = service.hub
        self.session = LiveSession(who, transport.send, transport.close)
        self.user = who.ref  # the user this connection counts against (`LiveService.per_user`)
        self.offer = transport.send
        direct = getattr(transport, "direct", None)
        lean = cast(DirectTransport, transport).direct() if callable(direct) else None
        if lean is not None:
            self.session.encode, self.session.post = lean

    def greet(self) -> None:
        who = self.session.actor
        data = {"user": who.ref, "groups": sorted(who.groups), "sessionId": self.session.id}
        self.offer({"type": "session", "status": "open", "data": {**data, "offset": self.hub.bus.head}})

    async def recheck(self, fresh: Actor) -> None:
        """The session registry: same credentials, new identity (groups, admin)."""
        await self.hub.recheck(self.session, fresh)

    def expel(self, reason: str) -> None:
        """The session registry: the credentials no longer hold."""
        self.hub.expel(self.session, reason)

    async def handle(self, raw: str | bytes) -> None:
        try:
            request = jsonutil.loads(raw, max_depth=MAX_DEPTH)
        except jsonutil.JSONError:
            self.offer(refused(None, "", Kind.BAD_REQUEST, "invalid JSON"))
            return
        if not isinstance(request, dict):
            self.offer(refused(None, "", Kind.BAD_REQUEST, "request must be a JSON object"))
            return
        req_id = request.get("id")
        raw_method = request.get("method")
        method = raw_method if isinstance(raw_method, str) else ""
        if req_id is not None and not isinstance(req_id, str):
            self.offer(refused(None, method, Kind.BAD_REQUEST, "id must be a string"))
            return
        attrs = request.get("attributes")
        attrs = attrs if isinstance(attrs, dict) else {}
        try:
            await self._handle(req_id, method, attrs)
        except Exception as exc:  # one request that fails must not end the session
            if db_errors.busy(exc):
                logger.warning("database busy: %s (live %s refused)", exc.__class__.__name__, method)
                self.offer(refused(req_id, method, Kind.UNAVAILABLE, "the database is busy; try again"))
            else:
                logger.exception("live %s failed", method)
                self.offer(refused(req_id, method, Kind.INTERNAL, "internal error"))

    async def _handle(self, req_id: Any, method: str, attrs: dict[str, Any]) -> None:
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
                    self.offer(refused(req_id, method, Kind.NOT_FOUND, f"not subscribed: {topic}"))
        else:
            self.offer(refused(req_id, method, Kind.BAD_REQUEST, "no such method"))

    async def topic_method(self, req_id: Any, method: str, attrs: dict[str, Any]) -> None:
        db, model, who = self.service.db, self.service.catalog.model, self.session.actor
        try:
            if method == "create-topicName":
                row = await topics.create(db, model, who, attrs.get("name"))
                data: Any = {"created": True, "topicName": row.attrs["name"]}
            elif method == "destroy-topicName":
                name = await topics.destroy(db, model, who, attrs.get("name"))
                data = {"destroyed": True, "topicName": name}
            elif method == "set-topic-permission":
                value = await topics.set_permission(db, model, who, attrs.get("topicName"), attrs.get("permission"))
                data = {"permission": value, "topicName": attrs.get("topicName")}
            elif method == "get-topic-permission":
                data = await self.topic_permission(attrs.get("topicName"))
            else:
                data = await self.new_message(attrs)
        except topics.TopicError as exc:
            self.offer(refused(req_id, method, exc.kind, str(exc)))
            return
        self.offer(response(req_id, method, True, data=data))

    async def topic_permission(self, name: Any) -> dict[str, Any]:
        svc = self.service
        if not isinstance(name, str) or not name:
            raise topics.TopicError("missing or invalid topicName")
        tm = svc.catalog.model.tables.get(name)
        if tm is None:
            row = await topics.user_topic(
                svc.db, svc.catalog.model, self.session.actor, name, PEEK, suffix=False, rows=svc.topic_rows
            )
            return {"owner": row.grants.owner, "permission": row.grants.permission, "topicName": name, "type": "user"}
        try:
            permission = await svc.rights.table_permission(self.session.actor, tm)
        except Forbidden:
            raise topics.TopicError("permission denied", Kind.FORBIDDEN) from None
        return {"permission": permission, "topicName": name, "type": "system"}

    async def new_message(self, attrs: dict[str, Any]) -> dict[str, Any]:
        svc = self.service
        name, message = attrs.get("topicName"), attrs.get("message")
        if not isinstance(name, str) or not name or "," in name:
            raise topics.TopicError("missing or invalid topicName")
        if not isinstance(message, dict):
            raise topics.TopicError("missing or invalid message")
        tm = svc.catalog.model.tables.get(name)
        if tm is None:
            try:
                await topics.user_topic(
                    svc.db, svc.catalog.model, self.session.actor, name, EXECUTE, suffix=True, rows=svc.topic_rows
                )
            except topics.TopicError as exc:
                if exc.kind is Kind.NOT_FOUND:  # Daptin's wording for new-message
                    raise topics.TopicError(f"topic does not exist: {name}", Kind.NOT_FOUND) from None
                raise
        else:
            try:
                await svc.rights.check_table(self.session.actor, tm, CREATE)
            except Forbidden:
                raise topics.TopicError(f"permission denied: {name}", Kind.FORBIDDEN) from None
        event = await topics.publish(svc.db, self.session.actor, name, message)
        return {"topic": name, "offset": event.offset}

    def topics(self, req_id: Any, method: str, attrs: dict[str, Any]) -> list[str]:
        raw = attrs.get("topicName")
        if not isinstance(raw, str) or not raw.strip():
            self.offer(refused(req_id, method, Kind.BAD_REQUEST, "missing or invalid topicName"))
            return []
        names = [t.strip() for t in raw.split(",") if t.strip()]
        if len(names) > MAX_TOPICS_PER_CALL:
            self.offer(refused(req_id, method, Kind.BAD_REQUEST, f"at most {MAX_TOPICS_PER_CALL} topics per request"))
            return []
        return names

    async def subscribe(self, req_id: Any, attrs: dict[str, Any]) -> None:
        """Subscribe to topics; with `since`, replay what the socket has not been sent after that offset: all of
        it for a new subscription, and for a topic already followed the part before its live coverage."""
        svc = self.service
        filters = attrs.get("filters")
        filters = filters if isinstance(filters, dict) else {}
        since = attrs.get("since")
        if since is not None:
            try:
                since = limits.whole_number(since, "since", 0, limits.MAX_OFFSET)
            except BadRequest:
                error = "since must be a non-negative integer offset"
                self.offer(refused(req_id, "subscribe", Kind.BAD_REQUEST, error))
                return
            if not await replay.offset_kept(svc.db, since):
                self.offer(refused(req_id, "subscribe", Kind.NOT_FOUND, "offset expired"))
                return
        fresh: set[str] = set()
        known: dict[str, int] = {}
        session = self.session
        if since is not None:
            session.hold = session.hold or []  # park live frames until the replay is out
        for topic in self.topics(req_id, "subscribe", attrs):
            if len(session.subscriptions) >= MAX_SUBSCRIPTIONS and topic not in session.subscriptions:
                self.offer(refused(req_id, "subscribe", Kind.TOO_MANY_REQUESTS, "too many subscriptions"))
                continue
            tm = svc.catalog.model.tables.get(topic)
            try:
                if tm is None:
                    await topics.user_topic(
                        svc.db, svc.catalog.model, session.actor, topic, READ, suffix=True, rows=svc.topic_rows
                    )
                else:
                    await svc.rights.check_table(session.actor, tm, PEEK)
            except Forbidden:
                self.offer(refused(req_id, "subscribe", Kind.FORBIDDEN, f"permission denied: {topic}"))
                continue
            except topics.TopicError as exc:
                self.offer(refused(req_id, "subscribe", exc.kind, str(exc)))
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
