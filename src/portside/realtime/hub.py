"""The live hub: one bus subscription per node, fanned out to /live sessions with per-row filtering.

For each event the hub decides visibility once per distinct principal (user + groups) among the sessions
subscribed to that table, from the grants the event carries — no database query per subscriber — then
applies each subscription's filters and enqueues the frame. Enqueueing never waits: a session whose queue
is full is marked overflowed and its socket is closed by its writer (close code 1013).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from portside import log
from portside.auth.permissions import READ, Actor, allowed
from portside.core.events import Event
from portside.realtime.bus import Bus

logger = log.get("live")
_session_ids = itertools.count(1)
NODE = os.urandom(4).hex()
EVENT_TYPE_KEY = "EventType"

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
        "source": "database",
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
    id: str = field(default_factory=new_session_id)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)  # topic -> filters
    overflowed: bool = False
    hold: list[dict[str, Any]] | None = None  # live frames parked while a replay runs
    floor: int = 0  # frames at or below this offset were replayed already

    def accepts(self, topic: str, event: Event) -> bool:
        return matches(self.subscriptions.get(topic, {}), event.type, event.data)

    @property
    def principal(self) -> Principal:
        return principal(self.actor)


class LiveHub:
    def __init__(self, bus: Bus):
        self.bus = bus
        self.topics: dict[str, set[LiveSession]] = {}
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0

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
        self.topics.setdefault(topic, set()).add(session)
        return True

    def unsubscribe(self, session: LiveSession, topic: str) -> bool:
        if session.subscriptions.pop(topic, None) is None:
            return False
        members = self.topics.get(topic)
        if members is not None:
            members.discard(session)
            if not members:
                del self.topics[topic]
        return True

    def drop(self, session: LiveSession) -> None:
        for topic in list(session.subscriptions):
            self.unsubscribe(session, topic)

    async def _run(self) -> None:
        while True:
            try:
                async with self.bus.subscribe() as sub:
                    async for event in sub:
                        self.dispatch(event)
            except asyncio.CancelledError:
                raise
            except Exception:  # e.g. Lagged: resubscribe live; sessions resume with `since`
                logger.exception("live hub subscription failed; resubscribing")
                await asyncio.sleep(0.5)

    def dispatch(self, event: Event) -> int:
        members = self.topics.get(event.table)
        if not members:
            return 0
        decided: dict[Principal, bool] = {}
        frame: dict[str, Any] | None = None
        sent = 0
        for session in list(members):
            key = session.principal
            ok = decided.get(key)
            if ok is None:
                ok = decided[key] = allowed(session.actor, READ, event.grants)
            if not ok or not matches(session.subscriptions.get(event.table, {}), event.type, event.data):
                continue
            if frame is None:
                frame = {
                    "type": "event",
                    "topic": event.table,
                    "event": event.type,
                    "source": "database",
                    "offset": event.offset,
                    "data": event.data,
                }
            if session.send(frame):
                sent += 1
            else:
                session.overflowed = True
                self.drop(session)
        self.delivered += sent
        return sent
