"""Scrape-time readings of one app's services for `tools.metrics` (sockets, rooms, queues, sessions).

Everything here reads counters the services already keep, when /metrics is scraped; nothing runs on a hot
path. The outbox depth is one database count per scrape (`probe`).
"""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy as sa

from portside.actions.services import Services
from portside.mail.outbox import TABLE as OUTBOX
from portside.tools import metrics


def source(svc: Services) -> metrics.Source:
    """The metrics source of `svc` (register it with `metrics.SAMPLED_COLLECTOR.add`)."""

    def read() -> Iterator[metrics.Sample]:
        hub = svc.hub
        if hub is not None:
            yield "portside_live_sockets_open", (), float(len(hub.sessions))
            yield "portside_live_subscriptions", (), float(sum(len(s.subscriptions) for s in hub.sessions))
            yield "portside_live_events_dispatched", (), float(hub.dispatched)
            yield "portside_live_frames_delivered", (), float(hub.delivered)
            yield "portside_live_sessions_dropped", (), float(hub.dropped)
            yield "portside_live_dispatch_cpu_seconds", (), hub.dispatch_cpu
        depth, overflows = svc.bus.backlog()
        yield "portside_bus_queue_depth", (), float(depth)
        yield "portside_bus_overflows", (), float(overflows)
        yjs = svc.yjs
        if yjs is not None:
            rooms = list(yjs.rooms.values())
            yield "portside_yjs_rooms_open", (), float(len(rooms))
            yield "portside_yjs_clients", (), float(sum(len(r.peers) for r in rooms))
            yield "portside_yjs_updates_applied", (), float(yjs.updates_applied)
            yield "portside_yjs_write_queue_depth", (), float(len(yjs.writer.pending))
            yield "portside_yjs_write_batches", (), float(yjs.writer.commits)
        if svc.sessions is not None:
            for kind, n in svc.sessions.stats().items():
                yield "portside_sessions_open", (kind if kind in SESSION_KINDS else metrics.OTHER,), float(n)

    async def probe() -> list[metrics.Sample]:
        table = svc.model.tables.get(OUTBOX)
        if table is None:
            return []
        t = table.sa
        q = sa.select(sa.func.count()).select_from(t).where(t.c.sent == sa.false(), t.c.failed == sa.false())
        async with svc.db.read() as conn:
            waiting = int((await conn.scalar(q)) or 0)
        return [("portside_mail_outbox_waiting", (), float(waiting))]

    return metrics.Source(read, probe)


SESSION_KINDS = frozenset({"live", "yjs", "smtp", "imap", "ftp", "dav"})
