"""MailStore's writes of messages: delivery (one message into N mailboxes, many messages in few statements),
APPEND, flag changes (STORE, CONDSTORE), EXPUNGE and COPY. Each takes the caller's unit of work; UIDs and
modseqs come from `mail.uids.take`."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from portside.core import bulk, records
from portside.core.db import UnitOfWork
from portside.core.events import EventDraft
from portside.core.model import OWNER_COLUMN
from portside.mail import flags, message
from portside.mail.boxes import Mailbox
from portside.mail.storebase import StoreBase
from portside.mail.tables import EXPUNGED_TABLE, MAIL_TABLE, OWNER_READ
from portside.mail.uids import take
from portside.mail.values import Delivery, Envelope, FlagResult, Stored, Target, Verdict
from portside.tools import jsonutil

CHUNK = 500
THREAD_FROM = 64 * 1024  # bytes: larger messages are parsed and compressed in a worker thread


class StoreWrites(StoreBase):
    """The writes of `MailStore`: deliveries, APPEND, flag changes, EXPUNGE and COPY."""

    async def _take(self, uow: UnitOfWork, box_id: int, uids: int) -> tuple[int, int]:
        return await take(uow, self.model, box_id, uids)

    @staticmethod
    async def prepare(raw: bytes) -> tuple[message.Parsed, str]:
        """The parsed columns and the stored form of `raw` (in a thread for a large message)."""
        if len(raw) > THREAD_FROM:  # parsing and compressing megabytes must not stall the event loop
            return await asyncio.to_thread(lambda: (message.parse(raw), message.encode(raw)))
        return message.parse(raw), message.encode(raw)

    async def deliver(
        self,
        uow: UnitOfWork,
        targets: Sequence[Target],
        raw: bytes,
        *,
        envelope: Envelope | None = None,
        verdict: Verdict | None = None,
        internal_date: dt.datetime | None = None,
        prepared: tuple[message.Parsed, str] | None = None,
    ) -> list[Stored]:
        """Store `raw` once per target (byte-exact), each with a fresh UID of its mailbox. `prepared` is
        `prepare(raw)` done before the transaction (the parse stays out of a shared write)."""
        one = Delivery(targets, raw, envelope=envelope, verdict=verdict, internal_date=internal_date, prepared=prepared)
        return (await self.deliver_many(uow, [one]))[0]

    async def deliver_many(self, uow: UnitOfWork, deliveries: Sequence[Delivery]) -> list[list[Stored]]:
        """`deliver` for several messages in one unit of work (group commit), in a fixed number of statements:
        one UID/modseq bump per mailbox (boxes in id order; a box's new messages share its new modseq and get
        consecutive UIDs in the order given), one multi-row INSERT, one re-read, one event-log INSERT (`core.bulk`).
        Returns the `Stored` copies of each delivery, in the order of its targets."""
        model = self.model
        tm = model.table(MAIL_TABLE)
        commons: list[dict[str, Any]] = []
        counts: dict[int, int] = {}
        for d in deliveries:
            commons.append(await self._common(d))
            for t in d.targets:
                counts[t.mailbox.id] = counts.get(t.mailbox.id, 0) + 1
        taken = {box_id: await self._take(uow, box_id, counts[box_id]) for box_id in sorted(counts)}
        next_uid = {box_id: first for box_id, (first, _) in taken.items()}
        rows: list[dict[str, Any]] = []
        places: list[tuple[int, int, int, int]] = []  # (delivery, box id, uid, modseq) of each row
        actors: list[str | None] = []
        for n, (d, common) in enumerate(zip(deliveries, commons, strict=True)):
            for t in d.targets:
                box = t.mailbox
                uid, modseq = next_uid[box.id], taken[box.id][1]
                next_uid[box.id] = uid + 1
                values = dict(common)
                values.update(flags.to_columns(flags.normalize(t.flags), recent=t.recent))
                values.update(uid=uid, modseq=modseq, mail_box_id=box.id, recipient=t.recipient[:200])
                values[OWNER_COLUMN] = box.owner_id
                rows.append(values)
                places.append((n, box.id, uid, modseq))
                actors.append(box.owner_ref)
        out: list[list[Stored]] = [[] for _ in deliveries]
        if not rows:
            return out
        refs = await bulk.insert_rows(uow, tm, rows, permission=OWNER_READ)
        # the mail hook leaves a create with a UID alone (hooks.py): no per-row hook, no group-link read
        fresh = await bulk.emit_created(uow, model, tm, refs, actors, run_hook=False)
        for (n, box_id, uid, modseq), row in zip(places, fresh, strict=True):
            out[n].append(Stored(row.id, row.ref, box_id, uid, modseq))
        return out

    async def _common(self, d: Delivery) -> dict[str, Any]:
        """The columns every copy of one delivered message shares."""
        parsed, stored_form = d.prepared if d.prepared is not None else await self.prepare(d.raw)
        env = d.envelope or Envelope()
        common: dict[str, Any] = {
            **parsed.columns(),
            "mail": stored_form,
            "size": len(d.raw),
            "internal_date": d.internal_date or records.now(),
            "ip_addr": env.ip_addr[:50],
            "is_tls": env.is_tls,
            "return_path": env.mail_from[:255],
        }
        if env.mail_from:
            common["from_address"] = env.mail_from[:200]
        if d.verdict is not None:
            common.update(
                spam=d.verdict.spam,
                spam_score=float(d.verdict.score),
                spam_verdict=jsonutil.dumps_str(d.verdict.detail),
            )
        return common

    async def append(
        self,
        uow: UnitOfWork,
        mailbox: Mailbox,
        raw: bytes,
        *,
        flags: Sequence[str] = (),
        internal_date: dt.datetime | None = None,
        recent: bool = True,
    ) -> Stored:
        """One message into one mailbox (IMAP APPEND, the Sent copy of mail.send); `recent=False` stores it
        already claimed (by the IMAP session appending to the mailbox it has selected)."""
        target = Target(mailbox, flags, recent=recent)
        return (await self.deliver(uow, [target], raw, internal_date=internal_date))[0]

    async def _rows(self, conn: Any, box_id: int, uids: Iterable[int] | None, *cols: str) -> list[Any]:
        t = self.model.table(MAIL_TABLE).sa
        base = sa.select(t.c.id, t.c.uid, *(t.c[c] for c in cols)).where(t.c.mail_box_id == box_id)
        if uids is None:
            return list((await conn.execute(base.order_by(t.c.uid))).all())
        wanted = sorted({int(u) for u in uids})
        out: list[Any] = []
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start : start + CHUNK]
            out.extend((await conn.execute(base.where(t.c.uid.in_(chunk)).order_by(t.c.uid))).all())
        return out

    async def set_flags(
        self,
        uow: UnitOfWork,
        mailbox: Mailbox,
        uids: Iterable[int],
        change: Iterable[str],
        *,
        mode: str = "set",
        unchanged_since: int | None = None,
        clear_recent: bool = False,
    ) -> FlagResult:
        """STORE: change the flags of the messages with these UIDs (unknown UIDs are skipped). Messages whose
        flags end up as they were keep their modseq; with `unchanged_since`, a message changed later is left
        alone and reported in `failed`."""
        model = self.model
        tm = model.table(MAIL_TABLE)
        wanted = list(change)
        cols = (*flags.FLAG_COLUMNS, "keywords", "recent", "modseq")
        rows = await self._rows(uow.conn, mailbox.id, uids, *cols)
        plan: list[tuple[int, int, list[str], bool]] = []
        failed: list[int] = []
        for r in rows:
            current = flags.of_row(r._mapping)
            new = flags.apply(current, wanted, mode)
            recent = bool(r.recent) and not clear_recent
            if new == current and recent == bool(r.recent):
                continue
            if unchanged_since is not None and int(r.modseq or 0) > unchanged_since:
                failed.append(int(r.uid))
                continue
            plan.append((int(r.id), int(r.uid), new, recent))
        if not plan:
            return FlagResult([], failed, mailbox.modseq)
        _, modseq = await self._take(uow, mailbox.id, 0)
        changed: list[tuple[int, int, list[str]]] = []
        for row_id, uid, new, recent in plan:
            values = {**flags.to_columns(new, recent=recent), "modseq": modseq}
            await records.update(uow, model, tm, row_id, values, actor=mailbox.owner_ref)
            changed.append((uid, modseq, new))
        return FlagResult(changed, failed, modseq)

    async def expunge(
        self, uow: UnitOfWork, mailbox: Mailbox, uids: Iterable[int] | None = None, *, only_deleted: bool = True
    ) -> list[int]:
        """Remove messages (those marked `\\Deleted`, optionally only among `uids`; `only_deleted=False`
        removes the given UIDs whatever their flags, for MOVE). Returns the removed UIDs, ascending; each
        leaves a tombstone with the expunge's modseq."""
        model = self.model
        tm = model.table(MAIL_TABLE)
        if uids is None and only_deleted:  # the marked ones only (indexed), not every row of the mailbox
            t = tm.sa
            q = sa.select(t.c.id, t.c.uid, t.c.deleted).where(t.c.mail_box_id == mailbox.id, t.c.deleted == sa.true())
            rows = sorted((await uow.conn.execute(q)).all(), key=lambda r: int(r.uid))
        else:
            rows = await self._rows(uow.conn, mailbox.id, uids, "deleted")
        gone = [(int(r.id), int(r.uid)) for r in rows if r.deleted or not only_deleted]
        if not gone:
            return []
        _, modseq = await self._take(uow, mailbox.id, 0)
        t = tm.sa
        tomb = model.table(EXPUNGED_TABLE)
        for start in range(0, len(gone), CHUNK):
            chunk = gone[start : start + CHUNK]
            ids = [i for i, _ in chunk]
            found = await records.fetch(
                uow.conn,
                model,
                tm,
                t.c.id.in_(ids),
                fields=("reference_id", "permission", OWNER_COLUMN, "uid", "mail_box_id"),
            )
            if tm.group_join is not None:
                j = model.table(tm.group_join).sa
                await uow.conn.execute(j.delete().where(j.c[f"{MAIL_TABLE}_id"].in_(ids)))
            await uow.conn.execute(t.delete().where(t.c.id.in_(ids)))
            for uid_row in chunk:
                await records.insert_row(
                    uow,
                    model,
                    tomb,
                    {"uid": uid_row[1], "modseq": modseq, "mail_box_id": mailbox.id, OWNER_COLUMN: mailbox.owner_id},
                    permission=OWNER_READ,
                    actor=mailbox.owner_ref,
                )
            for f in found:
                payload = records.event_payload(tm, f.attrs)
                await uow.emit(EventDraft(MAIL_TABLE, "delete", f.ref, payload, f.grants, mailbox.owner_ref))
        return sorted(u for _, u in gone)

    async def copy(
        self, uow: UnitOfWork, source: Mailbox, uids: Iterable[int], target: Mailbox
    ) -> list[tuple[int, int]]:
        """COPY: new rows in `target` with fresh UIDs, the same raw message and flags, `\\Recent` set."""
        model = self.model
        tm = model.table(MAIL_TABLE)
        t = tm.sa
        skip = {"id", "reference_id", "created_at", "updated_at", "version", "permission", "uid", "modseq"}
        keep = [c.name for c in t.c if c.name not in skip and c.name not in ("mail_box_id", OWNER_COLUMN)]
        rows = await self._rows(uow.conn, source.id, uids, *keep)
        if not rows:
            return []
        first, modseq = await self._take(uow, target.id, len(rows))
        pairs: list[tuple[int, int]] = []
        for n, r in enumerate(rows):
            values = {c: r._mapping[c] for c in keep}
            values.update(uid=first + n, modseq=modseq, recent=True, mail_box_id=target.id)
            values[OWNER_COLUMN] = target.owner_id
            await records.insert(uow, model, tm, values, permission=OWNER_READ, actor=target.owner_ref)
            pairs.append((int(r.uid), first + n))
        return pairs
