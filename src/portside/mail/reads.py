"""MailStore's reads of messages: a mailbox's messages and flag index, \\Recent, tombstones, raw messages."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from portside.errors import NotFound
from portside.mail import flags, message
from portside.mail.storebase import StoreBase
from portside.mail.tables import EXPUNGED_TABLE, MAIL_TABLE
from portside.mail.values import MessageMeta


class StoreReads(StoreBase):
    """The reads of `MailStore`: messages, flags, \\Recent, tombstones and raw messages of a mailbox."""

    async def find_message_id(self, mailbox_id: int, message_id: str) -> list[int]:
        """UIDs of the messages of a mailbox with this Message-ID (a client's APPEND to Sent of a message
        the server already stored there, e.g. after SMTP submission, can be recognised)."""
        t = self.model.table(MAIL_TABLE).sa
        q = sa.select(t.c.uid).where(t.c.mail_box_id == mailbox_id, t.c.message_id == message_id[:500])
        async with self.db.read() as conn:
            return [int(u) for u in (await conn.scalars(q.order_by(t.c.uid))).all()]

    async def messages(
        self, mailbox_id: int, *, since_uid: int = 0, changed_since: int | None = None
    ) -> list[MessageMeta]:
        """Messages of a mailbox in UID order (UID > `since_uid`; modseq > `changed_since` when given)."""
        t = self.model.table(MAIL_TABLE).sa
        cols = ("keywords", "recent", "modseq", "size", "internal_date", "message_id", *flags.FLAG_COLUMNS)
        q = sa.select(t.c.id, t.c.reference_id, t.c.uid, *(t.c[c] for c in cols)).where(t.c.mail_box_id == mailbox_id)
        if since_uid:
            q = q.where(t.c.uid > since_uid)
        if changed_since is not None:
            q = q.where(t.c.modseq > changed_since)
        async with self.db.read() as conn:
            rows = (await conn.execute(q.order_by(t.c.uid))).all()
        of_columns = flags.of_columns
        return [  # positional: a mapping per row costs more than the query on a large mailbox
            MessageMeta(
                int(r[0]),
                r[1],
                int(r[2]),
                int(r[5] or 0),
                of_columns(r[9:], r[3]),
                bool(r[4]),
                int(r[6] or 0),
                r[7],
                r[8] or "",
            )
            for r in rows
        ]

    async def flag_index(
        self, mailbox_id: int, changed_since: int | None = None
    ) -> list[tuple[int, int, list[str], int, dt.datetime | None]]:
        """(uid, modseq, flags, size, internal_date) of a mailbox's messages in UID order (modseq above
        `changed_since` when given): what an IMAP SELECT needs, nothing of the message itself."""
        t = self.model.table(MAIL_TABLE).sa
        cols = ("keywords", "modseq", "size", "internal_date", *flags.FLAG_COLUMNS)
        q = sa.select(t.c.uid, *(t.c[c] for c in cols)).where(t.c.mail_box_id == mailbox_id)
        if changed_since is not None:
            q = q.where(t.c.modseq > changed_since)
        # catching up (the (mail_box_id, modseq) index: a few rows) runs on the loop; a full read does not
        async with self.db.read(quick=changed_since is not None) as conn:
            rows = (await conn.execute(q.order_by(t.c.uid))).all()
        of_columns = flags.of_columns
        return [(int(r[0]), int(r[2] or 0), of_columns(r[5:], r[1]), int(r[3] or 0), r[4]) for r in rows]

    async def recent_uids(self, mailbox_id: int) -> list[int]:
        """UIDs of a mailbox's messages still marked `\\Recent` (claimed by no session yet)."""
        t = self.model.table(MAIL_TABLE).sa
        q = sa.select(t.c.uid).where(t.c.mail_box_id == mailbox_id, t.c.recent == sa.true())
        async with self.db.read(quick=True) as conn:  # no ORDER BY: it would make SQLite walk the (box, uid) index
            return sorted(int(u) for u in (await conn.scalars(q)).all())

    async def vanished(self, mailbox_id: int, since_modseq: int) -> list[int]:
        """UIDs expunged from a mailbox after `since_modseq` (QRESYNC VANISHED (EARLIER))."""
        x = self.model.table(EXPUNGED_TABLE).sa
        q = sa.select(x.c.uid).where(x.c.mail_box_id == mailbox_id, x.c.modseq > since_modseq).order_by(x.c.uid)
        async with self.db.read() as conn:
            return [int(u) for u in (await conn.scalars(q)).all()]

    async def recent_count(self, mailbox_id: int, max_uid: int) -> int:
        """How many of a mailbox's messages up to UID `max_uid` are still marked `\\Recent` (counted in the index)."""
        t = self.model.table(MAIL_TABLE).sa
        cond = sa.and_(t.c.mail_box_id == mailbox_id, t.c.recent == sa.true(), t.c.uid <= max_uid)
        async with self.db.read(quick=True) as conn:  # the (mail_box_id, recent) index
            return int(await conn.scalar(sa.select(sa.func.count()).select_from(t).where(cond)) or 0)

    async def expunged_since(self, mailbox_id: int, since_modseq: int) -> list[tuple[int, int]]:
        """(uid, modseq) of the tombstones of a mailbox after `since_modseq`."""
        x = self.model.table(EXPUNGED_TABLE).sa
        q = sa.select(x.c.uid, x.c.modseq).where(x.c.mail_box_id == mailbox_id, x.c.modseq > since_modseq)
        async with self.db.read(quick=True) as conn:  # the (mail_box_id, modseq) index
            return [(int(u), int(m)) for u, m in (await conn.execute(q)).all()]

    async def raw(self, mail_id: int) -> bytes:
        t = self.model.table(MAIL_TABLE).sa
        async with self.db.read() as conn:
            stored = await conn.scalar(sa.select(t.c.mail).where(t.c.id == mail_id))
        if stored is None:
            raise NotFound("no such message")
        return message.decode(stored)
