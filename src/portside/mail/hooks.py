"""The write hook of the `mail` table: a message written by the generic record path (/api PATCH or DELETE,
actions) keeps the IMAP bookkeeping that `MailStore` keeps for its own writes, in the same transaction
(core.records.row_hooks, registered by the runtime):

- an update takes the mailbox's next modseq and stamps it on the row, so CONDSTORE/QRESYNC clients
  (`FETCH ... (CHANGEDSINCE n)`, `SELECT ... (QRESYNC ...)`) see the change; a write that stamped a modseq
  itself (MailStore) is left alone;
- a delete takes the next modseq and leaves a tombstone in `mail_expunged`, as EXPUNGE does (VANISHED);
- a message created without a UID (POST /api/mail) gets the mailbox's next UID and modseq.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from portside.core import records
from portside.core.db import UnitOfWork
from portside.core.model import OWNER_COLUMN, Model, TableModel
from portside.mail import boxes
from portside.mail.store import EXPUNGED_TABLE, MAIL_TABLE, take
from portside.mail.tables import OWNER_READ


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
        box_id = int(before["mail_box_id"])
        _, modseq = await take(uow, model, box_id, 0)
        values: dict[str, Any] = {"uid": int(before["uid"]), "modseq": modseq, "mail_box_id": box_id}
        values[OWNER_COLUMN] = before.get(OWNER_COLUMN)
        await records.insert_row(uow, model, model.table(EXPUNGED_TABLE), values, permission=OWNER_READ, actor=actor)
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


async def lock_mailbox_of(uow: UnitOfWork, model: Model, row_id: int) -> None:
    """Lock the mailbox row of message `row_id` before the message row is written, so an /api write takes
    its locks in the order IMAP and SMTP take them (mailbox, then messages) and the two cannot deadlock on
    PostgreSQL or MariaDB (SQLite has one writer; FOR UPDATE is left out there)."""
    t = model.table(MAIL_TABLE).sa
    box_id = await uow.conn.scalar(sa.select(t.c.mail_box_id).where(t.c.id == row_id))
    if box_id is not None:
        b = model.table(boxes.BOX_TABLE).sa
        await uow.conn.execute(sa.select(b.c.id).where(b.c.id == box_id).with_for_update())


def register() -> None:
    """Install the hook (idempotent); called by the runtime."""
    records.row_hooks[MAIL_TABLE] = mail_hook
