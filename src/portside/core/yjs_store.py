"""Stored Yjs documents: per room, a log of binary Yjs updates, compacted into snapshots.

A room's document is the merge of all its rows (`snapshot` rows are merged updates too, so order does not
matter: Yjs updates commute). Compaction replaces exactly the rows it read by one snapshot row, in one
transaction, so concurrent writers on other nodes never lose an update.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.asyncio import AsyncConnection

from portside.core.db import Database

MAX_ROOM_NAME = 255

yjs_metadata = sa.MetaData()
yjs_document = sa.Table(
    "_yjs_document",
    yjs_metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("room", sa.String(MAX_ROOM_NAME), nullable=False),
    sa.Column("kind", sa.String(10), nullable=False),  # snapshot | update
    sa.Column("data", sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql"), nullable=False),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Index("ix_yjs_document_room", "room", "id"),
)


@dataclass(frozen=True)
class Stored:
    id: int
    kind: str
    data: bytes


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


async def load(conn: AsyncConnection, room: str) -> list[Stored]:
    t = yjs_document
    rows = await conn.execute(sa.select(t.c.id, t.c.kind, t.c.data).where(t.c.room == room).order_by(t.c.id))
    return [Stored(int(r.id), str(r.kind), bytes(r.data)) for r in rows]


async def exists(conn: AsyncConnection, room: str) -> bool:
    t = yjs_document
    return (await conn.scalar(sa.select(t.c.id).where(t.c.room == room).limit(1))) is not None


async def append(conn: AsyncConnection, items: Sequence[tuple[str, bytes]], kind: str = "update") -> None:
    """Insert one row per (room, update) in the caller's transaction."""
    if not items:
        return
    now = _now()
    await conn.execute(
        yjs_document.insert(), [{"room": room, "kind": kind, "data": data, "created_at": now} for room, data in items]
    )


async def compact(db: Database, room: str, merge: Callable[[list[bytes]], bytes]) -> tuple[int, int]:
    """Replace the room's rows by one snapshot (`merge` of their data). Returns (rows replaced, snapshot bytes).

    The rows are read and merged outside the write transaction, which then only inserts the snapshot and
    deletes exactly the rows that went into it (rows added meanwhile stay), so writers wait very little.
    """
    t = yjs_document
    async with db.read() as conn:
        rows = await load(conn, room)
    if len(rows) < 2:
        return 0, sum(len(r.data) for r in rows)
    snapshot = merge([r.data for r in rows])
    ids = [r.id for r in rows]
    async with db.transaction() as uow:
        await append(uow.conn, [(room, snapshot)], kind="snapshot")
        for i in range(0, len(ids), 500):
            await uow.conn.execute(t.delete().where(t.c.id.in_(ids[i : i + 500])))
    return len(rows), len(snapshot)
