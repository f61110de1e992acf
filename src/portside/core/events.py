"""Change events: facts about committed writes, appended to the event log in the writing transaction.

An event carries the API-visible row (never secrets) and the row's grants (owner, permission, group
grants) so any port can decide visibility without querying the database.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from portside.core import pgdirect
from portside.core.loopsql import direct
from portside.tools import jsonutil

EVENT_TYPES = ("create", "update", "delete")

event_metadata = sa.MetaData()
event_log = sa.Table(
    "_event_log",
    event_metadata,
    sa.Column("offset", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("table_name", sa.String(100), nullable=False),
    sa.Column("event_type", sa.String(20), nullable=False),
    # a row UUID, or a longer key such as `backend/<config key>` (config names have up to 100 characters)
    sa.Column("reference_id", sa.String(255), nullable=False),
    sa.Column("data", sa.Text().with_variant(mysql.LONGTEXT(), "mysql"), nullable=False),
    sa.Column("grants", sa.Text(), nullable=False),
    sa.Column("actor", sa.String(36), nullable=True),
    sa.Column("created_at", sa.DateTime(), nullable=False),
)

_INSERT = event_log.insert()


@dataclass(frozen=True)
class Grants:
    """Who may see a row: its owner's ref, its permission mask, and (group ref, link mask) pairs."""

    owner: str | None
    permission: int
    groups: tuple[tuple[str, int], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "permission": self.permission,
            "groups": [{"group": g, "permission": p} for g, p in self.groups],
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Grants:
        return cls(
            owner=raw.get("owner"),
            permission=int(raw.get("permission") or 0),
            groups=tuple((str(g["group"]), int(g["permission"])) for g in raw.get("groups") or ()),
        )


@dataclass(frozen=True)
class EventDraft:
    table: str
    type: str
    ref: str
    data: dict[str, Any]
    grants: Grants
    actor: str | None


@dataclass(frozen=True)
class Event:
    offset: int
    table: str
    type: str
    ref: str
    data: dict[str, Any]
    grants: Grants
    actor: str | None
    at: str = field(default="")

    def to_json(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "table": self.table,
            "type": self.type,
            "ref": self.ref,
            "data": self.data,
            "grants": self.grants.to_json(),
            "actor": self.actor,
            "at": self.at,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Event:
        return cls(
            offset=int(raw["offset"]),
            table=str(raw["table"]),
            type=str(raw["type"]),
            ref=str(raw["ref"]),
            data=dict(raw.get("data") or {}),
            grants=Grants.from_json(raw.get("grants") or {}),
            actor=raw.get("actor"),
            at=str(raw.get("at") or ""),
        )

    @classmethod
    def from_row(cls, row: Any) -> Event:
        return cls(
            offset=int(row.offset),
            table=row.table_name,
            type=row.event_type,
            ref=row.reference_id,
            data=jsonutil.loads(row.data, max_depth=1000),
            grants=Grants.from_json(jsonutil.loads(row.grants)),
            actor=row.actor,
            at=jsonutil.iso(row.created_at) or "",
        )


def _values(draft: EventDraft, now: dt.datetime) -> dict[str, Any]:
    return {
        "table_name": draft.table,
        "event_type": draft.type,
        "reference_id": draft.ref,
        "data": jsonutil.dumps_str(draft.data),
        "grants": jsonutil.dumps_str(draft.grants.to_json()),
        "actor": draft.actor,
        "created_at": now,
    }


def _event(offset: int, draft: EventDraft, now: dt.datetime) -> Event:
    at = jsonutil.iso(now) or ""
    return Event(offset, draft.table, draft.type, draft.ref, draft.data, draft.grants, draft.actor, at)


async def append(conn: Any, draft: EventDraft) -> Event:
    """Insert the event into the log inside the caller's transaction; returns it with its offset."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    fast = direct(conn)
    if fast is not None:
        return _event(fast.insert(event_log, _values(draft, now)), draft, now)
    on_pg = pgdirect.pg(conn)
    if on_pg is not None:
        offset = await on_pg.insert(event_log, _values(draft, now))
        if offset is not None:
            return _event(offset, draft, now)
    result = await conn.execute(_INSERT, _values(draft, now))  # one statement, compiled once
    pk = result.inserted_primary_key
    assert pk is not None
    return _event(int(pk[0]), draft, now)


_INSERT_RETURNING = event_log.insert().returning(event_log.c.offset)  # built and keyed once


async def append_many(conn: Any, drafts: list[EventDraft]) -> list[Event]:
    """`append` for several events, offsets ascending in the order given, in one multi-row INSERT ...
    RETURNING where the dialect allows. On SQLite the offsets are read back unordered and sorted: asking
    SQLAlchemy for parameter order there makes it send one INSERT per row, and SQLite numbers the rows of
    one INSERT in the order of its VALUES (the transaction holds the only write lock: nothing interleaves)."""
    if len(drafts) < 2 or not conn.dialect.insert_executemany_returning:
        return [await append(conn, d) for d in drafts]
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    values = [_values(d, now) for d in drafts]
    if conn.dialect.name == "sqlite":
        rows = await conn.execute(_INSERT_RETURNING, values)
        offsets = sorted(int(r[0]) for r in rows)
    elif conn.dialect.insert_executemany_returning_sort_by_parameter_order:
        stmt = event_log.insert().returning(event_log.c.offset, sort_by_parameter_order=True)
        offsets = [int(r[0]) for r in await conn.execute(stmt, values)]
    else:
        return [await append(conn, d) for d in drafts]
    return [_event(o, d, now) for o, d in zip(offsets, drafts, strict=True)]


async def read_since(conn: Any, after: int, limit: int = 1000) -> list[Event]:
    rows = await conn.execute(
        sa.select(event_log).where(event_log.c.offset > after).order_by(event_log.c.offset).limit(limit)
    )
    return [Event.from_row(r) for r in rows]


async def latest_offset(conn: Any) -> int:
    value = await conn.scalar(sa.select(sa.func.max(event_log.c.offset)))
    return int(value or 0)


async def trim(conn: Any, keep: int) -> int:
    """Drop events older than the newest `keep`; returns how many were removed."""
    top = await latest_offset(conn)
    if top <= keep:
        return 0
    result = await conn.execute(event_log.delete().where(event_log.c.offset <= top - keep))
    return int(result.rowcount or 0)
