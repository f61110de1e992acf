"""The live hub: one bus subscription per node, fanned out to /live sessions with per-row filtering.

For each event the hub decides visibility once per distinct principal (user + groups) among the sessions
subscribed to that table, from the grants the event carries — no database query per subscriber — then
applies each subscription's filters and enqueues the frame. Enqueueing never waits: a session whose queue
is full is marked overflowed and its socket is closed by its writer (close code 1013).

A session whose transport has a direct path (`LiveSession.post`) and that has no filters, no replay floor and
no replay running gets the event encoded once per encoding and posted as is (the lean path).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from portside import log
from portside.auth import access
from portside.auth.permissions import Actor
from portside.core.events import Event
from portside.errors import Kind
from portside.realtime.bus import Bus
from portside.realtime.lag import Lag
from portside.tools import gctend, gcwatch
from portside.tools.wire_errors import ws_close_code

logger = log.get("live")
_session_ids = itertools.count(1)
NODE = os.urandom(4).hex()
EVENT_TYPE_KEY = "EventType"
MAX_LATE = 4096  # per topic and socket: out-of-order live events remembered so a later replay skips them

Principal = tuple[str | None, frozenset[str], bool]


def principal(actor: Actor) -> Principal:
    return (actor.ref, actor.groups, actor.is_admin)


def new_session_id() -> str:
    """Unique across nodes and restarts: node nonce + per-process counter."""
    return f"{NODE}-{next(_session_ids)}"


def event_frame(event: Event) -> dict[str, Any]:
    return {
        "type": "event",
        "topic": event.table,
        "event": event.type,
        "source": (event.actor or "") if event.type == "new-message" else "database",
        "offset": event.offset,
        "data": event.data,
    }


def matches(filters: dict[str, Any], event_type: str, data: dict[str, Any]) -> bool:
    """§A.8 subscribe filters: `EventType` plus equality on top-level fields; never raises."""
    for key, want in filters.items():
        if key == EVENT_TYPE_KEY:
            if isinstance(want, str) and want != event_type:
                return False
            continue
        have = data.get(key)
        if isinstance(want, bool) or isinstance(have, bool):
            if want is not have:
                return False
        elif isinstance(want, int | float) and isinstance(have, int | float):
            if float(want) != float(have):
                return False
        elif want != have:
            return False
    return True


@dataclass(eq=False)
class LiveSession:
    actor: Actor
    send: Callable[[dict[str, Any]], bool]  # enqueue a frame without waiting; False when the queue is full
    close: Callable[[int, str], None] = lambda code, reason: None
    id: str = field(default_factory=new_session_id)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)  # topic -> filters
    overflowed: bool = False
    hold: list[dict[str, Any]] | None = None  # live frames parked while a replay runs
    floors: dict[str, int] = field(default_factory=dict)  # topic -> offsets up to here were replayed
    # topic -> C: every event of the topic after offset C that this socket may see was sent to it (by a replay
    # or live); a re-subscribe with `since` below C replays (since, C] only, so nothing arrives twice
    covered: dict[str, int] = field(default_factory=dict)
    late: dict[str, set[int]] = field(default_factory=dict)  # topic -> offsets <= C that arrived live anyway
    # the transport's direct path for shared event frames (None: every frame goes through `send`): `encode(frame)`
    # is the same for every session with the same `encode`, so the hub builds it once per event and encoding;
    # `post(encoded)` hands it to the socket, False (and the transport closes the socket) when it does not keep up
    encode: Callable[[dict[str, Any]], Any] | None = None
    post: Callable[[Any], bool] | None = None

    def accepts(self, topic: str, event: Event) -> bool:
        return matches(self.subscriptions.get(topic, {}), event.type, event.data)

    def sent(self, topic: str, offset: int) -> None:
        """Note a live event frame handed to the socket when it is at or below the topic's coverage."""
        covered = self.covered.get(topic)
        if covered is not None and offset <= covered:
            late = self.late.setdefault(topic, set())
            if len(late) >= MAX_LATE:
                late.discard(min(late))
            late.add(offset)

    def forget(self, topic: str) -> None:
        self.covered.pop(topic, None)
        self.late.pop(topic, None)

    @property
    def principal(self) -> Principal:
        return principal(self.actor)


class Subscribers:
    """The sessions of one topic, grouped by principal and indexed by what a grant can name (user ref, group
    ref, administrator), so an event is decided only for the principals that could possibly read it."""

    __slots__ = ("admins", "buckets", "by_group", "by_ref")

    def __init__(self) -> None:
        self.buckets: dict[Principal, set[LiveSession]] = {}
        self.by_ref: dict[str, set[Principal]] = {}
        self.by_group: dict[str, set[Principal]] = {}
        self.admins: set[Principal] = set()

    def __bool__(self) -> bool:
        return bool(self.buckets)

    def add(self, session: LiveSession) -> None:
        key = session.principal
        members = self.buckets.get(key)
        if members is None:
            members = self.buckets[key] = set()
            ref, groups, admin = key
            if admin:
                self.admins.add(key)
            if ref is not None:
                self.by_ref.setdefault(ref, set()).add(key)
            for g in groups:
                self.by_group.setdefault(g, set()).add(key)
        members.add(session)

    def discard(self, session: LiveSession) -> None:
        """Remove a session under the principal it was added with (`LiveHub.rekey` drops a session before
        changing its actor, so that is its current principal)."""
        key = session.principal
        members = self.buckets.get(key)
        if members is None:
            return
        members.discard(session)
        if members:
            return
        del self.buckets[key]
        ref, groups, _ = key
        self.admins.discard(key)
        for index, names in ((self.by_ref, (ref,) if ref is not None else ()), (self.by_group, groups)):
            for name in names:
                keys = index.get(name)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[name]

    def sessions(self) -> list[LiveSession]:
        return [s for members in self.buckets.values() for s in members]

    def readers(self, event: Event) -> list[set[LiveSession]]:
        """The buckets whose principal may read the event: one `access.may_read_event` decision per candidate."""
        who = access.event_readers(event.grants)
        if who.everyone:
            keys: Any = self.buckets.keys()
        else:
            keys = set(self.admins)
            if who.owner is not None:
                keys.update(self.by_ref.get(who.owner, ()))
            for g in who.groups:
                keys.update(self.by_group.get(g, ()))
        out = []
        for key in keys:
            members = self.buckets.get(key)
            if members and access.may_read_event(next(iter(members)).actor, event.grants):
                out.append(members)
        return out


MaySubscribe = Callable[[Actor, str], Awaitable[bool]]
TOPIC_TABLE = "live_topic"
CLOSE_POLICY = ws_close_code(Kind.TOKEN_REVOKED)  # a session whose credentials changed


def ended(topic: str, reason: str) -> dict[str, Any]:
    """The event telling a client its subscription is over."""
    return {"type": "event", "topic": topic, "event": "unsubscribed", "source": "server", "data": {"reason": reason}}


class LiveHub:
    """Per-node fan-out. Sessions follow changes to table gates and topic permissions here, and changes to
    their user (password, groups) through the session registry (`recheck`, `expel`), without reconnecting."""

    def __init__(self, bus: Bus, may_subscribe: MaySubscribe | None = None):
        self.bus = bus
        # topic -> its subscribers by principal: rights are decided once per principal, filters only where set
        self.topics: dict[str, Subscribers] = {}
        self.sessions: set[LiveSession] = set()
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.may_subscribe = may_subscribe
        self.delivered = 0  # event frames handed to sockets
        self.dispatched = 0  # events dispatched to at least one subscriber
        self.dispatch_cpu = 0.0  # this thread's CPU seconds spent in dispatch (decisions + socket writes)
        self.dispatch_sys = 0.0  # the part of it spent in the kernel (the sockets' send calls)
        self.dispatch_wall = Lag("dispatch_wall")  # how long each dispatch held the loop, ms
        self.gc = gcwatch.watch()  # cyclic-GC pauses of this process (they hold the loop too)
        self.dropped = 0  # sessions dropped because their send queue was full
        self.lag = Lag("hub_lag")  # insert into the log -> dispatch here starts (events some socket follows)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="portside-live-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    def subscribe(self, session: LiveSession, topic: str, filters: dict[str, Any]) -> bool:
        """False when the session was already subscribed to `topic`."""
        if topic in session.subscriptions:
            return False
        session.subscriptions[topic] = filters
        subscribers = self.topics.get(topic)
        if subscribers is None:
            subscribers = self.topics[topic] = Subscribers()
        subscribers.add(session)
        return True

    def unsubscribe(self, session: LiveSession, topic: str, *, keep_coverage: bool = False) -> bool:
        if session.subscriptions.pop(topic, None) is None:
            return False
        if not keep_coverage:
            session.forget(topic)
        subscribers = self.topics.get(topic)
        if subscribers is not None:
            subscribers.discard(session)
            if not subscribers:
                del self.topics[topic]
        return True

    def members(self, topic: str) -> list[LiveSession]:
        subscribers = self.topics.get(topic)
        return subscribers.sessions() if subscribers is not None else []

    def rekey(self, session: LiveSession, actor: Actor) -> None:
        """The session's identity changed (groups, admin): move it to its new principal's buckets."""
        subscriptions = dict(session.subscriptions)
        for topic in subscriptions:
            self.unsubscribe(session, topic, keep_coverage=True)
        session.actor = actor
        for topic, filters in subscriptions.items():
            self.subscribe(session, topic, filters)

    def drop(self, session: LiveSession) -> None:
        for topic in list(session.subscriptions):
            self.unsubscribe(session, topic)

    def end(self, session: LiveSession, topic: str, reason: str) -> None:
        if self.unsubscribe(session, topic):
            session.send(ended(topic, reason))

    def react(self, event: Event) -> None:
        """Rights changed: topic destroyed or re-permissioned, table gate changed, user or membership changed."""
        if event.table == TOPIC_TABLE:
            name = event.data.get("name")
            for session in self.members(str(name)):
                if event.type == "delete":
                    self.end(session, str(name), "topic destroyed")
                elif not access.may_read_event(session.actor, event.grants):
                    self.end(session, str(name), "permission revoked")
        elif event.table == "world" and event.type == "update":
            table = str(event.data.get("table_name"))
            for session in self.members(table):
                if not access.may_follow_table(session.actor, event.grants):
                    self.end(session, table, "permission revoked")

    # identity changes (password, groups) reach sessions through the session registry (auth/sessions.py)

    def expel(self, session: LiveSession, reason: str) -> None:
        """The session's credentials no longer hold: close it (policy violation)."""
        self.drop(session)
        session.close(CLOSE_POLICY, reason)

    async def recheck(self, session: LiveSession, fresh: Actor) -> None:
        """Same credentials, new identity (groups, admin): keep the topics it may still read, end the others."""
        self.rekey(session, fresh)
        if self.may_subscribe is None:
            return
        for topic in list(session.subscriptions):
            if not await self.may_subscribe(fresh, topic):
                self.end(session, topic, "permission revoked")

    async def _run(self) -> None:
        while True:
            try:
                async with self.bus.subscribe() as sub:
                    async for event in sub:
                        self.dispatch(event)
                        self.react(event)
                        # a buffered subscription yields without suspending: hand the loop back after every
                        # event, so requests (an HTTP create's next step, its commit) never queue behind a
                        # whole backlog of fan-out (bench/live.py: p99 from client send)
                        await asyncio.sleep(0)
            except asyncio.CancelledError:
                raise
            except Exception:  # e.g. Lagged: resubscribe live; sessions resume with `since`
                logger.exception("live hub subscription failed; resubscribing")
                await asyncio.sleep(0.5)

    def dispatch(self, event: Event) -> int:
        subscribers = self.topics.get(event.table)
        if not subscribers:
            return 0
        self.lag.note(event.at)
        wall, started = time.perf_counter(), time.thread_time()
        sys_started = resource.getrusage(resource.RUSAGE_THREAD).ru_stime
        try:
            return self._dispatch(event, subscribers)
        finally:
            self.dispatch_cpu += time.thread_time() - started
            self.dispatch_sys += resource.getrusage(resource.RUSAGE_THREAD).ru_stime - sys_started
            self.dispatch_wall.note_ms(1000 * (time.perf_counter() - wall))
            self.dispatched += 1

    def stats(self) -> dict[str, Any]:
        return {
            "sessions": len(self.sessions),
            "topics": len(self.topics),
            "subscriptions": sum(len(s.subscriptions) for s in self.sessions),
            "events_dispatched": self.dispatched,
            "frames_delivered": self.delivered,
            "dispatch_cpu_seconds": round(self.dispatch_cpu, 6),
            "dispatch_sys_seconds": round(self.dispatch_sys, 6),
            **self.bus.lag.stats(),
            **self.lag.stats(),
            **self.dispatch_wall.stats(),
            **self.gc.stats(),
            **gctend.tender().stats(),
        }

    def _dispatch(self, event: Event, subscribers: Subscribers) -> int:
        """Send the event to every session that may read it and wants it. Sessions with a direct path, no
        filters, no replay floor and no replay running (the common case) take a lean path: the frame is encoded
        once per encoding and posted as is."""
        table, offset = event.table, event.offset
        frame: dict[str, Any] | None = None
        encode: Callable[[dict[str, Any]], Any] | None = None
        encoded: Any = None
        by_encoding: dict[Callable[[dict[str, Any]], Any], Any] = {}
        sent = 0
        for members in subscribers.readers(event):  # one decision for every socket of a principal
            for session in list(members):
                if frame is None:
                    frame = event_frame(event)
                post = session.post
                if (
                    post is not None
                    and session.hold is None
                    and not session.floors
                    and not session.subscriptions.get(table)
                ):
                    if session.encode is not encode:  # sockets of one encoding mostly follow each other
                        encode = session.encode
                        assert encode is not None
                        encoded = by_encoding.get(encode)
                        if encoded is None:
                            encoded = by_encoding[encode] = encode(frame)
                    ok = post(encoded)
                else:
                    filters = session.subscriptions.get(table)
                    if offset <= session.floors.get(table, 0) or (
                        filters and not matches(filters, event.type, event.data)
                    ):
                        continue
                    if session.hold is not None:  # a replay is running for this session: park, it flushes after
                        session.hold.append(frame)
                        continue
                    ok = session.send(frame)
                if ok:
                    sent += 1
                    covered = session.covered.get(table)
                    if covered is not None and offset <= covered:
                        session.sent(table, offset)
                else:
                    session.overflowed = True
                    self.dropped += 1
                    self.drop(session)
        self.delivered += sent
        return sent
