"""Mailbox management and per-mailbox reads the IMAP server needs next to `MailStore`: counts for STATUS,
delete / rename / subscribe, claiming `\\Recent`, and the raw message by UID.

Writes take the caller's unit of work and emit the rows' events (a deleted mailbox's messages each get
their `mail` delete event, as an EXPUNGE does).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa

from portside.core import records
from portside.core.db import Database, UnitOfWork
from portside.core.events import EventDraft
from portside.core.model import Model
from portside.errors import Conflict, Kind, NotFound
from portside.mail import boxes, flags, message
from portside.mail.boxes import Mailbox
from portside.mail.store import MailStore
from portside.mail.tables import EXPUNGED_TABLE, MAIL_TABLE
from portside.mail.values import FlagResult

CHUNK = 500
# (account id, name) -> UIDVALIDITY of a mailbox deleted by this process: created again within the same
# second, the new one must still get a different UIDVALIDITY (RFC 3501 §2.3.1.1)
_deleted: dict[tuple[int, str], int] = {}
MAX_DELETED = 10_000


@dataclass(frozen=True)
class Counts:
    messages: int = 0
    unseen: int = 0
    recent: int = 0
    deleted: int = 0
    size: int = 0


async def counts(db: Database, model: Model, box_id: int) -> Counts:
    t = model.table(MAIL_TABLE).sa

    def n(cond: Any) -> Any:
        return sa.func.coalesce(sa.func.sum(sa.case((cond, 1), else_=0)), 0)

    q = sa.select(
        sa.func.count(t.c.id),
        n(t.c.seen == sa.false()),
        n(t.c.recent == sa.true()),
        n(t.c.deleted == sa.true()),
        sa.func.coalesce(sa.func.sum(t.c.size), 0),
    ).where(t.c.mail_box_id == box_id)
    async with db.read() as conn:
        row = (await conn.execute(q)).one()
    return Counts(*(int(v or 0) for v in row))


async def raw_by_uid(db: Database, model: Model, box_id: int, uid: int) -> bytes | None:
    t = model.table(MAIL_TABLE).sa
    async with db.read(quick=True) as conn:  # one row by the (mail_box_id, uid) key
        stored = await conn.scalar(sa.select(t.c.mail).where(t.c.mail_box_id == box_id, t.c.uid == uid))
    return None if stored is None else message.decode(stored)


async def raw_by_uids(db: Database, model: Model, box_id: int, uids: list[int]) -> dict[int, bytes]:
    t = model.table(MAIL_TABLE).sa
    out: dict[int, bytes] = {}
    async with db.read(quick=True) as conn:  # by the (mail_box_id, uid) key; callers ask for ~100 at a time
        for start in range(0, len(uids), CHUNK):
            chunk = uids[start : start + CHUNK]
            q = sa.select(t.c.uid, t.c.mail).where(t.c.mail_box_id == box_id, t.c.uid.in_(chunk))
            for uid, stored in (await conn.execute(q)).all():
                if stored is not None:
                    out[int(uid)] = message.decode(stored)
    return out


async def claim_recent(uow: UnitOfWork, model: Model, box_id: int, uids: list[int]) -> set[int]:
    """The UIDs among `uids` still marked recent, now cleared: the session that claims them is the one that
    reports them as `\\Recent` (RFC 3501 §2.3.2). No event: `\\Recent` is session state.

    One statement over the UID range of `uids` (`claim_recent_range`), not one per chunk of UIDs: a UID in
    that range but not in `uids` is one the caller already saw as not recent, and a message never becomes
    recent again (new messages get new, higher UIDs)."""
    if not uids:
        return set()
    return await claim_recent_range(uow, model, box_id, min(uids), max(uids)) & set(uids)


async def claim_recent_range(uow: UnitOfWork, model: Model, box_id: int, low: int, high: int) -> set[int]:
    """Clear `recent` on the mailbox's messages with a UID in [low, high] (indexed by mailbox and `recent`);
    the UIDs cleared."""
    t = model.table(MAIL_TABLE).sa
    cond = sa.and_(t.c.mail_box_id == box_id, t.c.recent == sa.true(), t.c.uid >= low, t.c.uid <= high)
    clear = t.update().where(cond).values(recent=False)
    if uow.conn.dialect.name in ("sqlite", "postgresql"):  # MariaDB has no UPDATE ... RETURNING
        return {int(u) for u in (await uow.conn.execute(clear.returning(t.c.uid))).scalars().all()}
    found = {int(u) for u in (await uow.conn.scalars(sa.select(t.c.uid).where(cond))).all()}
    if found:
        await uow.conn.execute(clear)
    return found


async def set_subscribed(uow: UnitOfWork, model: Model, box: Mailbox, on: bool) -> None:
    if box.subscribed != on:
        await records.update(uow, model, model.table(boxes.BOX_TABLE), box.id, {"subscribed": on}, actor=box.owner_ref)


async def create_mailbox(
    uow: UnitOfWork, model: Model, account: boxes.Account, name: str, *, role: str = ""
) -> Mailbox:
    """A mailbox created by a client (IMAP CREATE): not subscribed, and never with the UIDVALIDITY of a
    mailbox of that name deleted just before."""
    box = await boxes.create_mailbox(uow, model, account, name, role=role, subscribed=False)
    before = _deleted.get((account.id, box.name))
    if before is not None and box.uidvalidity <= before:
        b = model.table(boxes.BOX_TABLE).sa
        await uow.conn.execute(b.update().where(b.c.id == box.id).values(uidvalidity=before + 1))
        box = replace(box, uidvalidity=before + 1)
    return box


async def delete_mailbox(uow: UnitOfWork, model: Model, store: MailStore, box: Mailbox) -> None:
    """The mailbox, its messages (each with its delete event) and its expunge tombstones."""
    if len(_deleted) >= MAX_DELETED:
        _deleted.clear()
    _deleted[(box.account_id, box.name)] = box.uidvalidity
    await store.expunge(uow, box, None, only_deleted=False)
    x = model.table(EXPUNGED_TABLE).sa
    await uow.conn.execute(x.delete().where(x.c.mail_box_id == box.id))
    tm = model.table(boxes.BOX_TABLE)
    row = await records.fetch_one(uow.conn, model, tm, row_id=box.id)
    if row is None:
        raise NotFound("no such mailbox")
    await records.delete(uow, model, tm, row, actor=box.owner_ref)


async def rename_mailbox(uow: UnitOfWork, model: Model, box: Mailbox, new: str) -> None:
    """A new name for a mailbox (its UIDs, UIDVALIDITY and messages stay); Conflict when the name is taken."""
    key = boxes.mailbox_name(new)
    await boxes.lock_account(uow, model, box.account_id)
    if await boxes.mailbox_by_name(uow.conn, model, box.account_id, key) is not None:
        raise Conflict("mailbox already exists", kind=Kind.UNIQUE_VIOLATION)
    await records.update(uow, model, model.table(boxes.BOX_TABLE), box.id, {"name": key}, actor=box.owner_ref)


async def move_all(uow: UnitOfWork, store: MailStore, source: Mailbox, target: Mailbox) -> int:
    """Every message of `source` into `target` (RENAME INBOX): copied with new UIDs, then removed."""
    metas = await store.messages(source.id)
    uids = [m.uid for m in metas]
    if not uids:
        return 0
    await store.copy(uow, source, uids, target)
    await store.expunge(uow, source, uids, only_deleted=False)
    return len(uids)


async def set_flags(
    uow: UnitOfWork,
    store: MailStore,
    mailbox: Mailbox,
    uids: list[int],
    change: list[str],
    *,
    mode: str,
    unchanged_since: int | None = None,
) -> FlagResult:
    """`MailStore.set_flags` with the same rules and events, written in bulk: one UPDATE per resulting flag
    set and one read per chunk for the events, instead of an UPDATE and a read per message (an IMAP
    `STORE 1:* +FLAGS` on a 10,000-message mailbox)."""
    model = store.model
    tm = model.table(MAIL_TABLE)
    t = tm.sa
    cols = (*flags.FLAG_COLUMNS, "keywords", "recent", "modseq")
    sel = sa.select(t.c.id, t.c.uid, *(t.c[c] for c in cols)).where(t.c.mail_box_id == mailbox.id)
    groups: dict[tuple[tuple[str, ...], bool], list[tuple[int, int]]] = {}
    failed: list[int] = []
    wanted = sorted(set(uids))
    for start in range(0, len(wanted), CHUNK):
        rows = (await uow.conn.execute(sel.where(t.c.uid.in_(wanted[start : start + CHUNK])))).all()
        for r in rows:
            current = flags.of_row(dict(r._mapping))
            after = flags.apply(current, change, mode)
            if after == current:
                continue
            if unchanged_since is not None and int(r.modseq or 0) > unchanged_since:
                failed.append(int(r.uid))
                continue
            groups.setdefault((tuple(after), bool(r.recent)), []).append((int(r.id), int(r.uid)))
    if not groups:
        return FlagResult([], sorted(failed), mailbox.modseq)
    modseq = await _next_modseq(uow, model, mailbox.id)
    stamp = records.now()
    changed: list[tuple[int, int, list[str]]] = []
    for (result, recent), members in groups.items():
        values = {**flags.to_columns(list(result), recent=recent), "modseq": modseq}
        ids = [i for i, _ in members]
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            await uow.conn.execute(
                t.update().where(t.c.id.in_(chunk)).values(**values, version=t.c.version + 1, updated_at=stamp)
            )
        changed += [(uid, modseq, list(result)) for _, uid in members]
    ids = sorted(i for members in groups.values() for i, _ in members)
    for start in range(0, len(ids), CHUNK):
        found = await records.fetch(uow.conn, model, tm, t.c.id.in_(ids[start : start + CHUNK]))
        drafts = [
            EventDraft(MAIL_TABLE, "update", f.ref, records.event_payload(tm, f.attrs), f.grants, mailbox.owner_ref)
            for f in found
        ]
        await uow.emit_many(drafts)  # one event-log statement per chunk
    return FlagResult(sorted(changed), sorted(failed), modseq)


async def _next_modseq(uow: UnitOfWork, model: Model, box_id: int) -> int:
    """The mailbox's next modseq (the row stays locked until commit, as MailStore's UID allocation)."""
    b = model.table(boxes.BOX_TABLE).sa
    result = await uow.conn.execute(b.update().where(b.c.id == box_id).values(modseq=b.c.modseq + 1))
    if result.rowcount != 1:
        raise NotFound("no such mailbox")
    return int((await uow.conn.execute(sa.select(b.c.modseq).where(b.c.id == box_id))).scalar_one())
