"""Mailbox names an earlier version stored in modified UTF-7, rewritten to the Unicode they stand for, once.

Names are stored as Unicode (what /api shows; IMAP speaks them in modified UTF-7 to IMAP4rev1 sessions and
in UTF-8 to IMAP4rev2 ones). Versions before that stored a name as the IMAP client sent it, so a box a rev1
client created as `Entw&APw-rfe` ("Entwürfe") was stored in modified UTF-7 and now reads `Entw&-APw-rfe`
to rev1 clients and `Entw&APw-rfe` everywhere else. At the first start of a version with this module, every
such `mail_box` (and `mail_subscribed`) name is rewritten; config `mail.utf7_names` then records that it
ran, so it never runs again: a name created afterwards is never touched, whatever it looks like.

Which names (`legacy`): only what a modified UTF-7 encoder writes, and only where that is not also how the
literal name is written today:

- printable US-ASCII only, valid modified UTF-7, with at least one `&...-` run that decodes to non-ASCII
  (`Entw&APw-rfe`, `A&-B&AOQ-` = "A&Bä"). `A&B` (not valid) and `AT&T-Mail` (`&T-` is not base64 of
  UTF-16) are names stored as they are today: left alone.
- a name whose only encoded character is `&` (`Tom &- Jerry`) is left alone: it is the old form of
  "Tom & Jerry" or the literal name "Tom &- Jerry" created since, and nothing tells which.
- the name must be exactly what the encoder writes for its decoded form (no split runs such as
  `&AOQ-&APw-`, no stray bits): then a rev1 client sees the very name it created; anything else is left.
- the decoded name must be a valid stored name (NFC, no control or unassigned characters; `mailbox_name`).

Still ambiguous, and rewritten: a literal name created between 75eab28 (Unicode names) and this module that
is itself valid modified UTF-7 of non-ASCII text (`x&abc-y`, created over IMAP4rev2 or /api). Such a name
reads as text in an unrelated script; real old names are far more likely, so they win.

A collision (both `Entw&APw-rfe` and `Entwürfe` exist in one account) merges nothing: the old box keeps
its messages under `Entwürfe (old)` (`(old 2)`, ... when taken), its sub-boxes move with it
(`Entw&APw-rfe/Alt` becomes `Entwürfe (old)/Alt`), and a warning is logged. UIDs and UIDVALIDITY stay: it is
the same mailbox, and for a rev1 client the same name it created. Each rename is an update event of the
`mail_box` row, so IMAP sessions and /live subscribers on every node see it.
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa

from portside import log
from portside.core import records
from portside.core.config import ConfigStore, config_table
from portside.core.db import Database, UnitOfWork
from portside.core.model import Model
from portside.errors import BadRequest
from portside.mail import boxes, subscriptions
from portside.tools import mutf7

logger = log.get("mail")
DONE_KEY = "mail.utf7_names"
DELIMITER = "/"
OLD = " (old)"


def legacy(name: str) -> str | None:
    """The Unicode name an earlier version's modified UTF-7 `name` stands for; None: `name` stays."""
    if not all(" " <= ch <= "~" for ch in name):  # modified UTF-7 is printable US-ASCII
        return None
    try:
        text = mutf7.decode(name)
    except mutf7.Malformed:
        return None
    if text.isascii() or mutf7.encode(text) != name:
        return None
    try:
        return boxes.mailbox_name(text)
    except BadRequest:
        return None


def _free(name: str, taken: set[str]) -> str | None:
    """`name (old)`, `name (old 2)`, ...: the first not taken that fits a stored name."""
    for n in range(1, 100):
        candidate = name + (OLD if n == 1 else f" (old {n})")
        if len(candidate) > boxes.MAX_NAME:
            return None
        if candidate not in taken:
            return candidate
    return None


def plan(names: list[str]) -> tuple[dict[str, str], list[str]]:
    """For one account's mailbox names: ({old name: new name}, old names that collided). Parents sort before
    their sub-boxes, so a sub-box of a box that collided follows it to its new name."""
    taken = set(names)
    renames: dict[str, str] = {}
    collided: list[str] = []
    moved: dict[str, str] = {}  # decoded name of a box that collided -> the name it got
    for old in sorted(names):
        decoded = legacy(old)
        if decoded is None:
            continue
        new = decoded
        levels = decoded.split(DELIMITER)
        for depth in range(len(levels) - 1, 0, -1):  # the nearest parent that moved
            parent = DELIMITER.join(levels[:depth])
            if parent in moved:
                new = moved[parent] + decoded[len(parent) :]
                break
        if new in taken or len(new) > boxes.MAX_NAME:
            other = _free(new, taken)
            if other is None:
                logger.warning("mailbox %r: its name stays as stored (no free name for %r)", old, new)
                continue
            collided.append(old)
            new = moved[decoded] = other
        taken.discard(old)
        taken.add(new)
        renames[old] = new
    return renames, collided


async def _done(uow: UnitOfWork) -> bool:
    t = config_table
    q = sa.select(t.c.id).where(t.c.name == DONE_KEY, t.c.configtype == "backend")
    return await uow.conn.scalar(q) is not None


async def rewrite_once(db: Database, model: Model, config: ConfigStore) -> int:
    """Rewrite the modified UTF-7 names of earlier versions unless that was done; the number of rows renamed.
    Safe when several processes start at once (one runs it, under the cross-process lock)."""
    if config.get(DONE_KEY) is not None:
        return 0
    count = 0
    async with db.transaction(exclusive=True) as uow:
        if await _done(uow):
            return 0
        count += await _boxes(uow, model)
        count += await _subscriptions(uow, model)
        await config.set(DONE_KEY, "done", uow=uow)
    return count


async def _boxes(uow: UnitOfWork, model: Model) -> int:
    tm = model.table(boxes.BOX_TABLE)
    b = tm.sa
    # only accounts with a candidate are read whole; `&` and `-` are no LIKE wildcards
    accounts = sa.select(b.c.mail_account_id).where(b.c.name.like("%&%-%")).distinct()
    rows = await uow.conn.execute(
        sa.select(b.c.id, b.c.mail_account_id, b.c.name).where(b.c.mail_account_id.in_(accounts)).order_by(b.c.id)
    )
    by_account: dict[int, dict[str, int]] = defaultdict(dict)
    for box_id, account_id, name in rows:
        by_account[int(account_id)][str(name)] = int(box_id)
    count = 0
    for account_id, ids in sorted(by_account.items()):
        renames, collided = plan(list(ids))
        for old, new in renames.items():
            box = await boxes.mailbox_by_id(uow.conn, model, ids[old])
            assert box is not None
            await records.update(uow, model, tm, box.id, {"name": new}, actor=box.owner_ref)
            if old in collided:
                logger.warning(
                    "mail account %d: mailbox %r (modified UTF-7, stored by an earlier version) is now %r: "
                    "a mailbox of its decoded name exists",
                    account_id,
                    old,
                    new,
                )
            else:
                logger.info("mail account %d: mailbox %r (modified UTF-7) is now %r", account_id, old, new)
            count += 1
    return count


async def _subscriptions(uow: UnitOfWork, model: Model) -> int:
    """Subscribed names without a mailbox: the decoded name; a duplicate of one already there is dropped."""
    t = model.table(subscriptions.TABLE).sa
    rows = (
        await uow.conn.execute(sa.select(t.c.id, t.c.mail_account_id, t.c.name).where(t.c.name.like("%&%-%")))
    ).all()
    count = 0
    for row_id, account_id, name in rows:
        new = legacy(str(name))
        if new is None:
            continue
        if new in await subscriptions.names(uow.conn, model, int(account_id)):
            await uow.conn.execute(t.delete().where(t.c.id == row_id))
        else:
            await uow.conn.execute(t.update().where(t.c.id == row_id).values(name=new))
        count += 1
    return count
