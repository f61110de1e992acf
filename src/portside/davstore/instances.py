"""The instance index: every occurrence of a recurring event with absolute times, up to a horizon, as rows of
`_dav_instance` (object id, start, end; naive UTC). Written by the object hook in the write's transaction,
so a time-range calendar-query decides those events in SQL instead of expanding each one per query.

`calendar.indexed_until` says how far an object's instances are listed (null: not indexed, e.g. floating
times or all-day events, which depend on the reader's time zone; those are still expanded per query).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import recurring_ical_events
import sqlalchemy as sa

from portside.core.db import Database, UnitOfWork
from portside.core.migrate import migrate_tables
from portside.davstore.items import parse_calendar, utc

HORIZON = dt.timedelta(days=5 * 366)  # past the later of the first start and now
MAX_INSTANCES = 2000

metadata = sa.MetaData()
INSTANCES = sa.Table(
    "_dav_instance",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("object_id", sa.Integer, nullable=False, index=True),
    sa.Column("starts", sa.DateTime, nullable=False, index=True),
    sa.Column("ends", sa.DateTime, nullable=False),
)


async def create_table(db: Database) -> None:
    """Create `_dav_instance` when missing (called by the runtime at start-up)."""
    await migrate_tables(db, metadata)


def _absolute(comp: Any) -> bool:
    for key in ("DTSTART", "DTEND", "RECURRENCE-ID"):
        p = comp.get(key)
        if p is not None and not (isinstance(p.dt, dt.datetime) and p.dt.tzinfo is not None):
            return False
    return comp.get("DTSTART") is not None


def compute(text: str, first: dt.datetime | None) -> tuple[list[tuple[dt.datetime, dt.datetime]], dt.datetime] | None:
    """(instances, horizon) of a recurring VEVENT object with absolute times, or None when it is not indexed."""
    cal = parse_calendar(text)
    comps = [c for c in cal.subcomponents if c.name == "VEVENT"]
    if not comps or len(comps) != len([c for c in cal.subcomponents if c.name in ("VEVENT", "VTODO", "VJOURNAL")]):
        return None
    if not any("RRULE" in c or "RDATE" in c for c in comps) or not all(_absolute(c) for c in comps):
        return None
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    horizon = max(first or now, now) + HORIZON
    found: list[tuple[dt.datetime, dt.datetime]] = []
    for inst in recurring_ical_events.of(cal, components=["VEVENT"]).between(dt.datetime(1, 1, 2), horizon):
        start = utc(inst["DTSTART"].dt)
        if inst.get("DTEND") is not None:
            end = utc(inst["DTEND"].dt)
        elif inst.get("DURATION") is not None:
            end = start + inst["DURATION"].dt
        else:
            end = start
        found.append((start, max(start, end)))
        if len(found) >= MAX_INSTANCES:
            horizon = start  # listed up to here; later ranges expand the object per query
            break
    return found, horizon


async def replace(uow: UnitOfWork, object_id: int, rows: list[tuple[dt.datetime, dt.datetime]] | None) -> None:
    await uow.conn.execute(INSTANCES.delete().where(INSTANCES.c.object_id == object_id))
    if rows:
        await uow.conn.execute(INSTANCES.insert(), [{"object_id": object_id, "starts": s, "ends": e} for s, e in rows])


def overlap_clause(t: sa.Table, start: dt.datetime, end: dt.datetime) -> Any:
    """Rows whose listed instances reach past `end` and one of which overlaps [start, end) (RFC 4791 §9.9)."""
    i = INSTANCES
    hit = (
        sa.select(i.c.object_id)
        .where(
            i.c.object_id == t.c.id,
            i.c.starts < end,
            sa.or_(i.c.ends > start, sa.and_(i.c.ends == i.c.starts, i.c.starts >= start)),
        )
        .exists()
    )
    return sa.and_(t.c.indexed_until >= end, hit)
