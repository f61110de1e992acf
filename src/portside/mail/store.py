"""MailStore: the one place mail is written and read, for SMTP, IMAP, mail.send and the outbox.

API (every write takes the caller's unit of work, so a delivery to several mailboxes and the rest of the
caller's transaction commit together or not at all; events are published after the commit):

    store = MailStore(db, catalog)                       # catalog: anything with a `.model`
    # accounts and mailboxes (rows; see mail.boxes)
    await store.account(address) -> Account | None        # by username (NFC, lower-cased)
    await store.local_domains() -> set[str]                 # mail_server hostnames + their `domains`
    await store.mailboxes(actor, account_id=None) -> list[Mailbox]     # what the actor may read
    await store.mailboxes_of(account_id) -> list[Mailbox]   # all boxes of one account (edges after login)
    await store.mailbox(account_id, name) / mailbox_by_role(account_id, "\\Junk") -> Mailbox | None
    await store.create_mailbox(uow, account, name, role="") -> Mailbox
    await store.ensure_standard(uow, account_id) -> list[Mailbox]
    await store.rename_mailbox(uow, mailbox, new_name) -> Mailbox      # new UIDVALIDITY; INBOX refused
    await store.delete_mailbox(uow, mailbox) -> int                    # with its messages; INBOX refused
    await store.set_subscribed(uow, mailbox, bool)
    await store.find_message_id(mailbox_id, message_id) -> list[int]  # UIDs (Sent de-duplication)
    # messages
    await store.deliver(uow, [Target(mailbox, flags, recipient)], raw, envelope=None, verdict=None,
                        internal_date=None) -> list[Stored]            # one message into N boxes, atomic
    await store.deliver_many(uow, [Delivery(targets, raw, ...)]) -> list[list[Stored]]  # many, few statements
    await store.append(uow, mailbox, raw, flags=(), internal_date=None) -> Stored   # IMAP APPEND, Sent copy
    await store.set_flags(uow, mailbox, uids, flags, mode="set"|"add"|"remove", unchanged_since=None,
                          clear_recent=False) -> FlagResult
    await store.expunge(uow, mailbox, uids=None, only_deleted=True) -> list[int]    # expunged UIDs
    await store.copy(uow, source, uids, target) -> list[tuple[int, int]]            # (old uid, new uid)
    await store.messages(mailbox_id, since_uid=0, changed_since=None) -> list[MessageMeta]
    await store.flag_index(mailbox_id, changed_since=None) -> [(uid, modseq, flags, size, internal_date)]
    await store.recent_uids(mailbox_id) -> list[int]        # still marked \\Recent
    await store.recent_count(mailbox_id, max_uid) -> int
    await store.vanished(mailbox_id, since_modseq) -> list[int]
    await store.expunged_since(mailbox_id, since_modseq) -> [(uid, modseq)]
    await store.raw(mail_id) -> bytes                       # byte-exact, any stored form (mail.message)

UIDs (spec §A.11, made atomic): the delivering transaction runs `UPDATE mail_box SET nextuid = nextuid + n,
modseq = modseq + 1 WHERE id = ?` and reads the new values back. The UPDATE takes the row lock on
PostgreSQL and MariaDB (SQLite has one writer), so two transactions on any nodes never get the same UID,
and `nextuid` only grows: a UID is never reused after EXPUNGE. Boxes are locked in id order (no deadlock).
MODSEQ: every change of a mailbox's messages (new, flags, expunge) takes the box's next `modseq` and stamps
it on the changed rows (`mail.modseq`) or on the tombstones of expunged UIDs (`mail_expunged`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa

from portside.auth import access
from portside.auth.permissions import Actor
from portside.core import bulk, records
from portside.core.db import Database, UnitOfWork
from portside.core.events import EventDraft
from portside.core.model import OWNER_COLUMN, Model
from portside.errors import NotFound
from portside.mail import boxes, flags, message
from portside.mail.boxes import Account, Mailbox
from portside.mail.tables import OWNER_READ
from portside.tools import jsonutil

MAIL_TABLE = "mail"
EXPUNGED_TABLE = "mail_expunged"
CHUNK = 500
THREAD_FROM = 64 * 1024  # bytes: larger messages are parsed and compressed in a worker thread


class HasModel(Protocol):
    @property
    def model(self) -> Model: ...


@dataclass(frozen=True)
class Target:
    """Where one copy of a message goes."""

    mailbox: Mailbox
    flags: Sequence[str] = ()
    recipient: str = ""
    recent: bool = True  # False: the IMAP session that stores it has claimed \\Recent for itself already


@dataclass(frozen=True)
class Envelope:
    """What the SMTP session knew about a received message."""

    mail_from: str = ""
    ip_addr: str = ""
    is_tls: bool = False


@dataclass(frozen=True)
class Verdict:
    """The spam decision, explainable: `detail` says which checks gave which score."""

    score: float = 0.0
    spam: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    """One message for `deliver_many`, stored once per target (see `deliver`)."""

    targets: Sequence[Target]
    raw: bytes
    envelope: Envelope | None = None
    verdict: Verdict | None = None
    internal_date: dt.datetime | None = None
    prepared: tuple[message.Parsed, str] | None = None


@dataclass(frozen=True)
class Stored:
    id: int
    ref: str
    mailbox_id: int
    uid: int
    modseq: int


@dataclass(frozen=True)
class MessageMeta:
    id: int
    ref: str
    uid: int
    modseq: int
    flags: list[str]
    recent: bool
    size: int
    internal_date: dt.datetime | None
    message_id: str


@dataclass
class FlagResult:
    changed: list[tuple[int, int, list[str]]]  # (uid, modseq, flags) of the messages whose flags changed
    failed: list[int]  # UIDs refused because they changed after `unchanged_since` (CONDSTORE)
    modseq: int  # the mailbox's highest modseq afterwards


_BUMPS: dict[sa.Table, tuple[sa.Update, sa.Update]] = {}


def _bump(b: sa.Table) -> tuple[sa.Update, sa.Update]:
    """The UID/modseq bump of a mailbox (parameters `box`, `n`), without and with RETURNING: built once per
    table (building the expressions and their cache key cost more than running the statement)."""
    found = _BUMPS.get(b)
    if found is None:
        if len(_BUMPS) > 64:  # tables of replaced models
            _BUMPS.clear()
        bump = (
            b.update()
            .where(b.c.id == sa.bindparam("box"))
            .values(nextuid=b.c.nextuid + sa.bindparam("n", type_=sa.Integer()), modseq=b.c.modseq + 1)
        )
        found = _BUMPS[b] = (bump, bump.returning(b.c.nextuid, b.c.modseq))
    return found


async def take(uow: UnitOfWork, model: Model, box_id: int, uids: int) -> tuple[int, int]:
    """(first of `uids` new UIDs, new modseq) of a mailbox; the row stays locked until commit."""
    b = model.table(boxes.BOX_TABLE).sa
    bump, returning = _bump(b)
    params = {"box": box_id, "n": uids}
    if uow.conn.dialect.name in ("sqlite", "postgresql"):  # one statement (MariaDB has no UPDATE RETURNING)
        got = (await uow.conn.execute(returning, params)).first()
        if got is None:
            raise NotFound("no such mailbox")
        return int(got[0]) - uids, int(got[1])
    result = await uow.conn.execute(bump, params)
    if result.rowcount != 1:
        raise NotFound("no such mailbox")
    row = (await uow.conn.execute(sa.select(b.c.nextuid, b.c.modseq).where(b.c.id == box_id))).one()
    return int(row[0]) - uids, int(row[1])


class MailStore:
    def __init__(self, db: Database, catalog: HasModel):
        self.db = db
        self.catalog = catalog

    @property
    def model(self) -> Model:
        return self.catalog.model

    # -- accounts and mailboxes ------------------------------------------------------------------

    async def account(self, address: str) -> Account | None:
        async with self.db.read() as conn:
            return await boxes.account_by_address(conn, self.model, address)

    async def local_domains(self) -> set[str]:
        async with self.db.read() as conn:
            return await boxes.local_domains(conn, self.model)

    async def mailboxes(self, actor: Actor, account_id: int | None = None) -> list[Mailbox]:
        """The mailboxes `actor` may read (their own accounts'), optionally of one account."""
        if actor.user_id is None:
            return []
        async with self.db.read() as conn:
            accounts = await boxes.accounts_of(conn, self.model, actor.user_id)
            out: list[Mailbox] = []
            for acc in accounts:
                if account_id is None or acc.id == account_id:
                    out.extend(await boxes.mailboxes_of(conn, self.model, acc.id))
        return [b for b in out if access.may_read_mailbox(actor, b.grants)]

    async def mailboxes_of(self, account_id: int) -> list[Mailbox]:
        async with self.db.read(quick=True) as conn:  # an account's few rows, by its key
            return await boxes.mailboxes_of(conn, self.model, account_id)

    async def mailbox(self, account_id: int, name: str) -> Mailbox | None:
        async with self.db.read(quick=True) as conn:  # one row by (account, name): IMAP reads it per command
            return await boxes.mailbox_by_name(conn, self.model, account_id, name)

    async def mailbox_by_role(self, account_id: int, role: str) -> Mailbox | None:
        async with self.db.read() as conn:
            return await boxes.mailbox_by_role(conn, self.model, account_id, role)

    async def create_mailbox(self, uow: UnitOfWork, account: Account, name: str, *, role: str = "") -> Mailbox:
        return await boxes.create_mailbox(uow, self.model, account, name, role=role)

    async def ensure_standard(self, uow: UnitOfWork, account_id: int) -> list[Mailbox]:
        return await boxes.ensure_standard(uow, self.model, account_id)

    async def rename_mailbox(self, uow: UnitOfWork, mailbox: Mailbox, new_name: str) -> Mailbox:
        return await boxes.rename_mailbox(uow, self.model, mailbox, new_name)

    async def delete_mailbox(self, uow: UnitOfWork, mailbox: Mailbox) -> int:
        return await boxes.delete_mailbox(uow, self.model, mailbox)

    async def set_subscribed(self, uow: UnitOfWork, mailbox: Mailbox, subscribed: bool) -> None:
        await boxes.set_subscribed(uow, self.model, mailbox, subscribed)

    async def find_message_id(self, mailbox_id: int, message_id: str) -> list[int]:
        """UIDs of the messages of a mailbox with this Message-ID (a client's APPEND to Sent of a message
        the server already stored there, e.g. after SMTP submission, can be recognised)."""
        t = self.model.table(MAIL_TABLE).sa
        q = sa.select(t.c.uid).where(t.c.mail_box_id == mailbox_id, t.c.message_id == message_id[:500])
        async with self.db.read() as conn:
            return [int(u) for u in (await conn.scalars(q.order_by(t.c.uid))).all()]

    # -- UIDs and modseqs --------------------------------------------------------------------------

    async def _take(self, uow: UnitOfWork, box_id: int, uids: int) -> tuple[int, int]:
        return await take(uow, self.model, box_id, uids)

    # -- writes ----------------------------------------------------------------------------------

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

    # -- reads -----------------------------------------------------------------------------------

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
