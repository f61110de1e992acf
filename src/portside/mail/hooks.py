"""The write hook of the `mail` table: a message written by the generic record path (/api PATCH or DELETE,
actions) keeps the IMAP bookkeeping that `MailStore` keeps for its own writes, in the same transaction
(core.records.row_hooks, registered by the runtime):

- an update takes the mailbox's next modseq and stamps it on the row, so CONDSTORE/QRESYNC clients
  (`FETCH ... (CHANGEDSINCE n)`, `SELECT ... (QRESYNC ...)`) see the change; a write that stamped a modseq
  itself (MailStore) is left alone;
- a delete takes the next modseq and leaves a tombstone in `mail_expunged`, as EXPUNGE does (VANISHED);
- a message created without a UID (POST /api/mail) gets the mailbox's next UID and modseq;
- a message moved to another mailbox (PATCH of `mail_box_id`) gets a new UID there and leaves a tombstone
  in the mailbox it left, as IMAP MOVE does, so both mailboxes' sessions see the move.

The `mail_account` hook keeps an account's mailboxes: the standard ones exist as soon as the account does,
and when the account gets another owner its mailboxes, messages and tombstones follow.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from portside.core import records
from portside.core.db import UnitOfWork
from portside.core.model import OWNER_COLUMN, Model, TableModel
from portside.mail import boxes
from portside.mail.tables import EXPUNGED_TABLE, MAIL_TABLE, OWNER_READ
from portside.mail.uids import take


async def _tombstone(
    uow: UnitOfWork, model: Model, box_id: int, uid: int, owner: Any, actor: str | None, *, announce: bool = False
) -> None:
    """Leave the tombstone of an expunged UID. `announce`: with its own create event, for a message that
    left the mailbox without a delete event of its own (a move), so the mailbox's IMAP sessions hear of it."""
    _, modseq = await take(uow, model, box_id, 0)
    values: dict[str, Any] = {"uid": uid, "modseq": modseq, "mail_box_id": box_id, OWNER_COLUMN: owner}
    tm = model.table(EXPUNGED_TABLE)
    if announce:
        await records.insert(uow, model, tm, values, permission=OWNER_READ, actor=actor)
    else:
        await records.insert_row(uow, model, tm, values, permission=OWNER_READ, actor=actor)


async def mail_hook(
    uow: UnitOfWork,
    model: Model,
    tm: TableModel,
    row_id: int,
    kind: str,
    before: dict[str, Any] | None,
    actor: str | None,
) -> None:
    t = tm.sa
    if kind == "delete":
        if before is None or before.get("mail_box_id") is None or not before.get("uid"):
            return
        await _tombstone(uow, model, int(before["mail_box_id"]), int(before["uid"]), before.get(OWNER_COLUMN), actor)
        return
    now = (await uow.conn.execute(sa.select(t.c.mail_box_id, t.c.uid, t.c.modseq).where(t.c.id == row_id))).first()
    if now is None or now.mail_box_id is None:
        return
    if kind == "create":
        if now.uid:  # MailStore's own insert: UID and modseq taken already
            return
        uid, modseq = await take(uow, model, int(now.mail_box_id), 1)
        await uow.conn.execute(t.update().where(t.c.id == row_id).values(uid=uid, modseq=modseq))
        return
    if before is not None and before.get("modseq") != now.modseq:  # the writer stamped its own modseq
        return
    _, modseq = await take(uow, model, int(now.mail_box_id), 0)
    await uow.conn.execute(t.update().where(t.c.id == row_id).values(modseq=modseq))


async def before_update(uow: UnitOfWork, model: Model, tm: TableModel, row_id: int, values: dict[str, Any]) -> None:
    """Before a message row is updated: lock its mailbox (and the one it moves to), lowest id first, so an
    /api write takes its locks in the order IMAP and SMTP take them (mailboxes, then messages) and the two
    cannot deadlock on PostgreSQL or MariaDB (SQLite has one writer; FOR UPDATE is left out there).

    A move to another mailbox takes the new mailbox's next UID and modseq into `values` (the old UID may be
    taken there) and leaves a tombstone in the old one, as IMAP MOVE does. Moved into another user's mailbox,
    the message gets that mailbox's owner (as when an account changes hands), so its new reader may read it
    and its old owner no longer can."""
    t = tm.sa
    query = sa.select(t.c.mail_box_id, t.c.uid, t.c[OWNER_COLUMN]).where(t.c.id == row_id)
    now = (await uow.conn.execute(query)).first()
    old = int(now.mail_box_id) if now is not None and now.mail_box_id is not None else None
    new = values.get("mail_box_id")
    ids = {v for v in (old, new) if isinstance(v, int)}
    if not ids:
        return
    b = model.table(boxes.BOX_TABLE).sa
    locked = sa.select(b.c.id, b.c[OWNER_COLUMN]).where(b.c.id.in_(sorted(ids))).order_by(b.c.id).with_for_update()
    owners = {int(r[0]): r[1] for r in await uow.conn.execute(locked)}
    if isinstance(new, int) and new != old and "uid" not in values:
        if now is not None and old is not None and now.uid:
            await _tombstone(uow, model, old, int(now.uid), now[2], None, announce=True)
        values["uid"], values["modseq"] = await take(uow, model, new, 1)
        values["recent"] = True
        if new in owners and (now is None or owners[new] != now[2]):
            values[OWNER_COLUMN] = owners[new]  # the message belongs to whoever owns the mailbox it is in now


async def account_hook(
    uow: UnitOfWork,
    model: Model,
    tm: TableModel,
    row_id: int,
    kind: str,
    before: dict[str, Any] | None,
    actor: str | None,
) -> None:
    if kind == "create":  # the standard mailboxes exist as soon as the account does
        await boxes.ensure_standard(uow, model, row_id)
    elif kind == "update" and before is not None:  # the mail goes with the account to its new owner
        owner = await uow.conn.scalar(sa.select(tm.sa.c[OWNER_COLUMN]).where(tm.sa.c.id == row_id))
        if owner != before.get(OWNER_COLUMN):
            await boxes.reassign(uow, model, row_id)


def register() -> None:
    """Install the hooks (idempotent); called by the runtime."""
    records.row_hooks[MAIL_TABLE] = mail_hook
    records.before_update_hooks[MAIL_TABLE] = before_update
    records.row_hooks[boxes.ACCOUNT_TABLE] = account_hook
