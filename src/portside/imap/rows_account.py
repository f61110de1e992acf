"""One IMAP login's view of the mail rows (`RowsAccount`, made by `imap.rows.RowsBackend.login`): mailboxes,
the shared SELECT index (`imap.boxindex`), message bodies (a small per-session cache), and the writes (APPEND,
STORE, EXPUNGE, COPY/MOVE, \\Recent claims), each in its own transaction through `mail.store.MailStore` and
`mail.manage`. What it shares with the other sessions of the process (the index, the modseqs the change events
announced, the \\Recent claims, the watchers) it reaches through `Shared`, which the backend is."""

from __future__ import annotations

import datetime as dt
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Protocol

from portside.auth.permissions import Actor
from portside.core.db import Database
from portside.errors import Conflict, Kind, NotFound, PayloadTooLarge
from portside.imap.boxindex import BoxIndex, BoxIndexes
from portside.imap.store import (
    Changes,
    CopyResult,
    MailboxInfo,
    MessageInfo,
    Snapshot,
    StoreMode,
    StoreResult,
    Wake,
)
from portside.mail import boxes, manage, subscriptions
from portside.mail.boxes import Mailbox
from portside.mail.store import MailStore

BODY_CACHE = 200  # raw messages kept per session (prefetched for a FETCH, or re-read by the next command)
BODY_CACHE_BYTES = 16 * 1024 * 1024
BOX_FRESH = 1.0  # seconds a mailbox row read by this session is reused for a write


def _utc(value: dt.datetime | None) -> dt.datetime:
    if value is None:
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


class Shared(Protocol):
    """What the sessions of one process share (`imap.rows.RowsBackend`)."""

    db: Database
    store: MailStore
    append_limit: int
    indexes: BoxIndexes
    latest: dict[str, int]  # mailbox ref -> the highest modseq a change event announced
    claimed: dict[tuple[int, int], int]  # (box id, uidvalidity) -> UIDs up to this one not \\Recent

    def watch(self, box_ref: str, wake: Wake) -> Callable[[], None]: ...


class RowsAccount:
    def __init__(
        self, backend: Shared, account: boxes.Account, actor: Actor, credential: str, password_hash: str | None
    ):
        self.backend = backend
        self.account = account
        self.account_id = account.id
        self.ref = account.ref
        self.username = account.username
        self.actor = actor
        self.credential = credential
        self.password_hash = password_hash
        self._refs: dict[str, str] = {}  # mailbox name -> ref (for watch), as last read
        self._ids: dict[str, int] = {}  # mailbox name -> row id, as last read
        self._recent_boxes: dict[str, tuple[float, Mailbox]] = {}
        self._bodies: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._cached = 0  # bytes in _bodies
        # mailboxes this session wrote since it last read their row -> the modseq of its writes (None: unknown)
        self._stale: dict[str, int | None] = {}

    @property
    def mail(self) -> MailStore:
        return self.backend.store

    @property
    def db(self) -> Database:
        return self.backend.db

    async def _box(self, name: str) -> Mailbox:
        try:
            box = await self.mail.mailbox(self.account_id, name)
        except Exception as exc:
            if getattr(exc, "kind", None) in (Kind.BAD_REQUEST, Kind.VALIDATION_FAILED):
                raise NotFound("Mailbox doesn't exist") from None
            raise
        if box is None:
            raise NotFound("Mailbox doesn't exist")
        self._refs[box.name] = box.ref
        self._ids[box.name] = box.id
        self._recent_boxes[box.name] = (time.monotonic(), box)
        return box

    async def _box_for_write(self, name: str) -> Mailbox:
        """The mailbox row as read in the last second (writes need its id and owner, which do not change;
        the UID and modseq counters are taken inside the writing transaction)."""
        seen = self._recent_boxes.get(name)
        if seen is not None and time.monotonic() - seen[0] < BOX_FRESH:
            return seen[1]
        return await self._box(name)

    @staticmethod
    def _info(box: Mailbox, counts: manage.Counts | None = None) -> MailboxInfo:
        c = counts or manage.Counts()
        return MailboxInfo(
            box.name, box.uidvalidity, box.nextuid, box.modseq, box.role or None, box.subscribed,
            c.messages, c.unseen, c.recent, c.deleted, c.size,
        )  # fmt: skip

    async def mailboxes(self) -> list[MailboxInfo]:
        found = [self._info(b) for b in await self.mail.mailboxes_of(self.account_id)]
        async with self.db.read() as conn:
            lost = await subscriptions.names(conn, self.mail.model, self.account_id) - {b.name for b in found}
        return found + [MailboxInfo(n, 0, 0, subscribed=True, exists=False) for n in sorted(lost)]

    async def _index(self, box: Mailbox) -> BoxIndex:
        return await self.backend.indexes.catch_up(
            box.ref,
            box.uidvalidity,
            box.modseq,
            lambda since: self.mail.flag_index(box.id, changed_since=since),
            lambda since: self.mail.expunged_since(box.id, since),
        )

    async def status(self, name: str) -> MailboxInfo:
        """Counted from the shared index (no aggregate over the mailbox's rows); \\Recent read (indexed)."""
        box = await self._box(name)
        idx = await self._index(box)
        top_uid = next(reversed(idx.messages), 0)
        done = self.backend.claimed.get((box.id, box.uidvalidity), 0)
        recent = 0 if top_uid <= done else await self.mail.recent_count(box.id, top_uid)
        return self._info(box, idx.counts(recent))

    async def create(self, name: str, special_use: str | None = None) -> MailboxInfo:
        async with self.db.transaction() as uow:
            try:  # IMAP CREATE does not subscribe (clients SUBSCRIBE themselves)
                box = await manage.create_mailbox(uow, self.mail.model, self.account, name, role=special_use or "")
            except Conflict:
                raise Conflict("Mailbox already exists", kind=Kind.UNIQUE_VIOLATION) from None
            if await subscriptions.remove(uow, self.mail.model, self.account_id, box.name):  # subscribed before
                await manage.set_subscribed(uow, self.mail.model, box, True)
        return self._info(box)

    async def delete(self, name: str) -> None:
        box = await self._box(name)
        self._recent_boxes.pop(box.name, None)
        async with self.db.transaction() as uow:
            await manage.delete_mailbox(uow, self.mail.model, self.mail, box)
            if box.subscribed:  # the subscription outlives the mailbox (RFC 3501 §6.3.6)
                await subscriptions.add(uow, self.mail.model, self.account, box.name)

    async def rename(self, old: str, new: str) -> None:
        box = await self._box(old)
        self._recent_boxes.clear()
        async with self.db.transaction() as uow:
            if box.name == boxes.INBOX:  # RFC 3501: INBOX's messages move to the new name, INBOX stays
                target = await manage.create_mailbox(uow, self.mail.model, self.account, new)
                await manage.move_all(uow, self.mail, box, target)
            else:
                await manage.rename_mailbox(uow, self.mail.model, box, new)

    async def subscribe(self, name: str, on: bool) -> None:
        try:
            box: Mailbox | None = await self._box(name)
        except NotFound:
            box = None
        if box is None and on:  # as Dovecot: a name is subscribed while it exists (and stays so after DELETE)
            raise NotFound("Mailbox doesn't exist")
        async with self.db.transaction() as uow:
            if box is not None:
                await manage.set_subscribed(uow, self.mail.model, box, on)
            if not on and not await subscriptions.remove(uow, self.mail.model, self.account_id, name) and box is None:
                raise NotFound("Not subscribed")

    async def snapshot(self, name: str, *, claim: bool = False) -> Snapshot:
        box = await self._box(name)
        idx = await self._index(box)
        messages = list(idx.messages.values())
        top_uid = messages[-1].uid if messages else 0
        done = self.backend.claimed.get((box.id, box.uidvalidity), 0)
        if claim and top_uid <= done:
            recent: set[int] = set()
        elif claim:  # one UPDATE ... RETURNING; a message newer than the index stays for later
            self._claimed(box, done + 1, top_uid)  # before the write: sessions selecting meanwhile skip it
            async with self.db.transaction() as uow:
                recent = await manage.claim_recent_range(uow, self.mail.model, box.id, done + 1, top_uid)
        else:
            recent = {u for u in await self.mail.recent_uids(box.id) if u <= top_uid}
        return Snapshot(self._indexed_info(box, idx), messages, frozenset(u for u in recent if u in idx.messages))

    def _indexed_info(self, box: Mailbox, idx: BoxIndex) -> MailboxInfo:
        """The mailbox as the index knows it (UIDNEXT and HIGHESTMODSEQ no older than the index)."""
        top_uid = next(reversed(idx.messages), 0)
        return replace(
            self._info(box), uidnext=max(box.nextuid, top_uid + 1), highestmodseq=max(box.modseq, idx.synced)
        )

    async def changes(self, name: str, since: int) -> Changes:
        # a session woken by a change event: when the shared index already holds every change the events
        # announced, neither the mailbox row nor the messages are read again (one read per change in all)
        seen = self._recent_boxes.get(name)
        fresh = seen is not None and time.monotonic() - seen[0] < BOX_FRESH
        if seen is not None and fresh and name not in self._stale:
            idx = self.backend.indexes.current(seen[1].ref, self.backend.latest.get(seen[1].ref, 0))
            known = idx.changes_since(since) if idx is not None else None
            if idx is not None and known is not None:
                return Changes(self._indexed_info(seen[1], idx), *known)
        wrote = self._stale.pop(name, None)
        if seen is not None and fresh and wrote is not None:
            # after this session's own write, whose modseq it knows: the index is caught up to it (and to what
            # the events announced) without reading the mailbox row again
            box = replace(seen[1], modseq=max(seen[1].modseq, wrote, self.backend.latest.get(seen[1].ref, 0)))
            idx = await self._index(box)
            known = idx.changes_since(since)
            if known is not None:
                return Changes(self._indexed_info(box, idx), *known)
        box = await self._box(name)
        idx = await self._index(box)
        known = idx.changes_since(since)
        if known is not None:
            return Changes(self._indexed_info(box, idx), *known)
        metas = await self.mail.messages(box.id, changed_since=since)
        changed = [MessageInfo(m.uid, frozenset(m.flags), _utc(m.internal_date), m.size, m.modseq) for m in metas]
        return Changes(self._info(box), changed, await self.mail.vanished(box.id, since))

    async def body(self, name: str, uid: int) -> bytes | None:
        box_id = self._ids.get(name)
        if box_id is None:
            box_id = (await self._box(name)).id
        key = (box_id, uid)
        raw = self._bodies.pop(key, None)  # a prefetched body is used once
        if raw is not None:
            self._cached -= len(raw)
            self._keep(key, raw)
            return raw
        raw = await manage.raw_by_uid(self.db, self.mail.model, box_id, uid)
        if raw is not None:
            self._keep(key, raw)
        return raw

    def _keep(self, key: tuple[int, int], raw: bytes) -> None:
        self._bodies[key] = raw
        self._cached += len(raw)
        while self._bodies and (self._cached > BODY_CACHE_BYTES or len(self._bodies) > BODY_CACHE):
            _, old = self._bodies.popitem(last=False)
            self._cached -= len(old)

    async def prefetch(self, name: str, uids: Sequence[int]) -> None:
        box_id = self._ids.get(name)
        if box_id is None:
            box_id = (await self._box(name)).id
        wanted = [u for u in uids if (box_id, u) not in self._bodies]
        if len(wanted) < 2:
            return
        for uid, raw in (await manage.raw_by_uids(self.db, self.mail.model, box_id, wanted)).items():
            self._keep((box_id, uid), raw)

    async def append(
        self, name: str, message: bytes, flags: Sequence[str], date: dt.datetime | None, *, claim: bool = False
    ) -> tuple[int, int]:
        if len(message) > self.backend.append_limit:
            raise PayloadTooLarge("Message too large")
        box = await self._box_for_write(name)
        when = date.astimezone(dt.UTC).replace(tzinfo=None) if date is not None else None  # naive UTC, as stored
        async with self.db.transaction() as uow:
            stored = await self.mail.append(uow, box, message, flags=list(flags), internal_date=when, recent=not claim)
        if claim:  # no other session of this process writes a claim for it
            self._claimed(box, stored.uid, stored.uid)
        self._wrote(box, stored.modseq)
        return box.uidvalidity, stored.uid

    async def store(
        self, name: str, uids: Sequence[int], mode: StoreMode, flags: Sequence[str], unchanged_since: int | None
    ) -> StoreResult:
        box = await self._box_for_write(name)
        if not uids:
            return StoreResult([])
        async with self.db.transaction() as uow:
            result = await manage.set_flags(
                uow, self.mail, box, list(uids), list(flags), mode=mode, unchanged_since=unchanged_since
            )
        when = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        changed = [MessageInfo(uid, frozenset(fl), when, 0, modseq) for uid, modseq, fl in result.changed]
        if changed:
            self._wrote(box, max(m.modseq for m in changed))
        return StoreResult(changed, result.failed)

    async def expunge(self, name: str, uids: Sequence[int] | None) -> list[int]:
        box = await self._box_for_write(name)
        async with self.db.transaction() as uow:
            gone = await self.mail.expunge(uow, box, None if uids is None else list(uids))
        self._wrote(box)
        return gone

    async def copy(self, name: str, uids: Sequence[int], target: str, *, move: bool) -> CopyResult:
        src = await self._box_for_write(name)
        dst = await self._box_for_write(target)
        async with self.db.transaction() as uow:
            pairs = await self.mail.copy(uow, src, uids, dst)
            if move and pairs:
                await self.mail.expunge(uow, src, [old for old, _ in pairs], only_deleted=False)
        self._wrote(src)
        self._wrote(dst)
        return CopyResult(dst.uidvalidity, [old for old, _ in pairs], [new for _, new in pairs])

    def _wrote(self, box: Mailbox, modseq: int | None = None) -> None:
        """This session changed the mailbox (with this modseq, when known): its own next catch-up reads up to
        it, or the mailbox row when the modseq is not known (the change events, which tell the other
        sessions, may not have arrived yet)."""
        known = self._stale.get(box.name, 0)
        self._stale[box.name] = None if modseq is None or known is None else max(known, modseq)

    async def claim_recent(self, name: str, uids: Sequence[int]) -> set[int]:
        box = await self._box_for_write(name)
        done = self.backend.claimed.get((box.id, box.uidvalidity), 0)
        wanted = [u for u in uids if u > done]  # at or below: no longer recent anywhere
        if not wanted:
            return set()
        # marked before the write: the other sessions woken by the same change skip these UIDs instead of
        # each writing a claim of its own while this one waits for its commit
        self._claimed(box, min(wanted), max(wanted))
        async with self.db.transaction() as uow:
            return await manage.claim_recent(uow, self.mail.model, box.id, wanted)

    def _claimed(self, box: Mailbox, low: int, high: int) -> None:
        """UIDs low..high of a mailbox are no longer recent (a claim cleared them; they never become recent
        again): later claims by this process's sessions skip them without a write."""
        key = (box.id, box.uidvalidity)
        done = self.backend.claimed.get(key, 0)
        if low <= done + 1:
            self.backend.claimed[key] = max(done, high)

    def watch(self, name: str, wake: Wake) -> Callable[[], None]:
        ref = self._refs.get(name)
        if ref is None:
            return lambda: None
        return self.backend.watch(ref, wake)

    async def close(self) -> None:
        self._bodies.clear()
        self._cached = 0
