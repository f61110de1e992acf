"""The outbox table as a queue: one row per recipient, leases as claims, retries with backoff, bounces.

Row states: waiting (`sent=false, failed=false`, due when `next_retry_at` is empty or past), claimed (the
same, with `next_retry_at` pushed to the end of a lease), sent (`sent=true`), failed (`failed=true`, after a
5xx reply or the last retry; the sender got a DSN in their INBOX when they have a local account).

Claims are leases in the database (spec §C.3, made safe): in one transaction the due rows are selected
with `FOR UPDATE SKIP LOCKED` (PostgreSQL; MariaDB/MySQL lock them, SQLite has one writer) and their
`next_retry_at` is set to now + the lease (`mail.outbox_claim_ttl` seconds, default 90 or env
`DAPTIN_OUTBOX_CLAIM_TTL_SECONDS`). Another node sees them as not due until the lease ends, so two nodes
never deliver a row twice, and a crashed node's claims expire by themselves.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from portside.core import masks, records
from portside.core.config import ConfigStore
from portside.core.db import Database, UnitOfWork
from portside.core.events import EventDraft
from portside.core.masks import PEEK, READ
from portside.core.model import OWNER_COLUMN, Model
from portside.core.records import RowData
from portside.mail import message

TABLE = "outbox"
SERVER_TABLE = "mail_server"
PERMISSION = masks.owner(PEEK, READ)
DEFAULT_TTL = 90
DEFAULT_ATTEMPTS = 5
CHUNK = 500
DEFAULT_BASE = 60.0  # seconds: the n-th failure waits base * 2**n (Daptin: 2, 4, 8, 16 minutes)


@dataclass(frozen=True)
class Policy:
    ttl: float = DEFAULT_TTL
    attempts: int = DEFAULT_ATTEMPTS
    base: float = DEFAULT_BASE

    @classmethod
    def of(cls, config: ConfigStore) -> Policy:
        env_ttl = os.environ.get("DAPTIN_OUTBOX_CLAIM_TTL_SECONDS", "")
        ttl = _number(config.get("mail.outbox_claim_ttl") or env_ttl, DEFAULT_TTL, 1, 86400)
        attempts = int(_number(config.get("mail.delivery_attempts"), DEFAULT_ATTEMPTS, 1, 100))
        base = _number(config.get("mail.retry_base_seconds"), DEFAULT_BASE, 0.01, 86400)
        return cls(ttl, attempts, base)

    def backoff(self, failures: int) -> dt.timedelta:
        return dt.timedelta(seconds=min(self.base * (2 ** min(failures, 30)), 7 * 86400))


def _number(raw: str | None, default: float, low: float, high: float) -> float:
    try:
        value = float(raw) if raw not in (None, "") else default
    except (TypeError, ValueError):
        return default
    return default if not low <= value <= high else value


@dataclass(frozen=True)
class Claimed:
    id: int
    ref: str
    sender: str
    recipient: str
    domain: str
    raw: bytes | None  # None: the stored message cannot be read
    retry_count: int
    ehlo: str
    owner_ref: str | None


async def enqueue(
    uow: UnitOfWork,
    model: Model,
    *,
    sender: str,
    recipients: Sequence[str],
    raw: bytes,
    mail_server_id: int | None,
    owner_id: int | None,
    owner_ref: str | None,
) -> list[str]:
    """One waiting row per recipient (due now); their refs. The owner (the sender's user) may read them."""
    tm = model.table(TABLE)
    stored = message.encode(raw)
    ids: list[int] = []
    for rcpt in recipients:
        values: dict[str, Any] = {
            "from_address": sender[:200],
            "to_address": rcpt[:200],
            "to_host": rcpt.rpartition("@")[2].lower()[:200],
            "mail": stored,
            "sent": False,
            "failed": False,
            "retry_count": 0,
            "next_retry_at": None,
            "mail_server_id": mail_server_id,
            OWNER_COLUMN: owner_id,
        }
        ids.append(await records.insert_row(uow, model, tm, values, permission=PERMISSION, actor=owner_ref))
    return [row.ref for row in await _emit_rows(uow, model, ids, "create", owner_ref)]


async def _emit_rows(uow: UnitOfWork, model: Model, ids: Sequence[int], kind: str, actor: str | None) -> list[RowData]:
    """One event per row, the rows read back in chunks (a 2,000-recipient message is 4 reads, not 2,000)."""
    tm = model.table(TABLE)
    out: list[RowData] = []
    for start in range(0, len(ids), CHUNK):
        chunk = list(ids[start : start + CHUNK])
        rows = await records.fetch(uow.conn, model, tm, tm.sa.c.id.in_(chunk), order_by=[tm.sa.c.id])
        for row in rows:
            await uow.emit(EventDraft(TABLE, kind, row.ref, records.event_payload(tm, row.attrs), row.grants, actor))
        out.extend(rows)
    return out


def _due(t: sa.Table, now: dt.datetime, attempts: int) -> Any:
    return sa.and_(
        t.c.sent == sa.false(),
        t.c.failed == sa.false(),
        t.c.retry_count < attempts,
        sa.or_(t.c.next_retry_at.is_(None), t.c.next_retry_at <= now),
    )


async def claim(db: Database, model: Model, policy: Policy, limit: int) -> list[Claimed]:
    """Lease up to `limit` due rows for this process (see the module text)."""
    t = model.table(TABLE).sa
    now = records.now()
    lease = now + dt.timedelta(seconds=policy.ttl)
    async with db.transaction() as uow:
        q = sa.select(t.c.id).where(_due(t, now, policy.attempts)).order_by(t.c.id).limit(limit)
        if db.dialect == "postgresql":
            q = q.with_for_update(skip_locked=True)
        elif db.dialect == "mysql":
            q = q.with_for_update()
        ids = [int(i) for i in (await uow.conn.scalars(q)).all()]
        if not ids:
            return []
        # the rows are locked (or SQLite's one writer is us): the guard only repeats the selection
        await uow.conn.execute(
            t.update().where(t.c.id.in_(ids), _due(t, now, policy.attempts)).values(next_retry_at=lease)
        )
    s = model.table(SERVER_TABLE).sa
    u = model.table("user_account").sa
    cols = (t.c.id, t.c.reference_id, t.c.from_address, t.c.to_address, t.c.to_host, t.c.mail, t.c.retry_count)
    q2 = (
        sa.select(*cols, s.c.hostname, u.c.reference_id.label("owner_ref"))
        .select_from(t.outerjoin(s, s.c.id == t.c.mail_server_id).outerjoin(u, u.c.id == t.c[OWNER_COLUMN]))
        .where(t.c.id.in_(ids))
        .order_by(t.c.id)
    )
    async with db.read() as conn:
        rows = (await conn.execute(q2)).all()
    out: list[Claimed] = []
    for r in rows:
        try:
            raw: bytes | None = message.decode(r.mail)
        except message.StoredFormError:
            raw = None
        rcpt = r.to_address or ""
        out.append(
            Claimed(
                int(r.id),
                r.reference_id,
                r.from_address or "",
                rcpt,
                (r.to_host or rcpt.rpartition("@")[2]).lower(),
                raw,
                int(r.retry_count or 0),
                r.hostname or "",
                r.owner_ref,
            )
        )
    return out


async def next_due(db: Database, model: Model, policy: Policy) -> dt.datetime | None:
    """When the earliest waiting (or leased) row becomes due; None when nothing waits."""
    t = model.table(TABLE).sa
    q = sa.select(sa.func.min(sa.func.coalesce(t.c.next_retry_at, sa.literal(dt.datetime(1970, 1, 1))))).where(
        t.c.sent == sa.false(), t.c.failed == sa.false(), t.c.retry_count < policy.attempts
    )
    async with db.read() as conn:
        value = await conn.scalar(q)
    if value is None:
        return None
    if isinstance(value, str):  # SQLite hands back text for the coalesced value
        value = dt.datetime.fromisoformat(value)
    return value if isinstance(value, dt.datetime) else None


async def mark_sent(uow: UnitOfWork, model: Model, row_ids: Sequence[int]) -> None:
    """Delivered: one UPDATE per chunk, one event per row."""
    t = model.table(TABLE).sa
    values = {"sent": True, "last_error": None, "next_retry_at": None}
    for start in range(0, len(row_ids), CHUNK):
        chunk = list(row_ids[start : start + CHUNK])
        stamp = records.now()
        await uow.conn.execute(
            t.update().where(t.c.id.in_(chunk)).values(**values, version=t.c.version + 1, updated_at=stamp)
        )
    await _emit_rows(uow, model, row_ids, "update", None)


async def mark_failure(
    uow: UnitOfWork, model: Model, policy: Policy, row: Claimed, error: str, *, permanent: bool
) -> bool:
    """Record a failed attempt; True when the row is now failed for good (the caller bounces it)."""
    count = row.retry_count + 1
    final = permanent or count >= policy.attempts
    values: dict[str, Any] = {"retry_count": count, "last_error": error[:2000], "failed": final}
    values["next_retry_at"] = None if final else records.now() + policy.backoff(count)
    await records.update(uow, model, model.table(TABLE), row.id, values, actor=None)
    return final
