"""Replaying the event log to one /live session (`subscribe` with `since`), without gaps or duplicates.

While a replay runs, the hub parks the session's live frames (`LiveSession.hold`); afterwards they are sent,
minus what the replay already sent. Per topic the session remembers its coverage (`covered`: every event
after that offset that it may see was sent), so a second `since` on a topic it follows replays only the part
below its coverage, and never an event twice.
"""

from __future__ import annotations

import sqlalchemy as sa

from portside.auth import access
from portside.core import events as ev
from portside.core.db import Database
from portside.realtime.hub import LiveSession, event_frame

PAGE = 500  # events per event-log read


async def offset_kept(db: Database, since: int) -> bool:
    """Whether every event after `since` is still in the log (or none was ever trimmed after it)."""
    async with db.read() as conn:
        oldest = await conn.scalar(sa.select(sa.func.min(ev.event_log.c.offset)))
    return oldest is None or since >= int(oldest) - 1


async def replay(db: Database, session: LiveSession, since: int, fresh: set[str], known: dict[str, int]) -> None:
    """Send the permitted events after `since`: every one for the `fresh` (just subscribed) topics, and for the
    `known` ones (topic -> coverage C) those up to C that were not sent live; then the parked live frames."""
    last = since
    stop = None if fresh else max(known.values(), default=since)
    try:
        done = not (fresh or known)
        while not done:
            async with db.read() as conn:
                batch = await ev.read_since(conn, last, limit=PAGE)
            done = not batch
            for event in batch:
                if stop is not None and event.offset > stop:
                    done = True
                    break
                last = event.offset
                t = event.table
                wanted = t in fresh or (
                    t in known and event.offset <= known[t] and event.offset not in session.late.get(t, ())
                )
                if wanted and access.may_read_event(session.actor, event.grants) and session.accepts(t, event):
                    session.send(event_frame(event))
    finally:
        parked, session.hold = session.hold or [], None
        for topic in fresh:
            session.floors[topic] = max(session.floors.get(topic, 0), last)
            session.covered[topic] = since
        for topic in known:
            session.covered[topic] = since
            session.late[topic] = {o for o in session.late.get(topic, ()) if o <= since}
        for frame in parked:  # live frames that arrived meanwhile, minus what the replay already sent
            topic, offset = frame["topic"], frame["offset"]
            if topic in fresh and offset <= last:
                continue
            if topic in known and since < offset <= min(known[topic], last):
                continue
            if session.send(frame):
                session.sent(topic, offset)
