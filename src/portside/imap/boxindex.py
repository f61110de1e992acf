"""Per-mailbox index shared by the IMAP sessions of one process: every message's (uid, flags, modseq, size,
internal date), what SELECT and EXAMINE need, never the message rows themselves.

The first SELECT of a mailbox reads the index once; later ones catch it up by reading only what changed since
(`modseq` above the index's, and the expunge tombstones since then), so fifty clients selecting a mailbox of
10,000 messages cost one full read, not fifty. This relies on the store's modseq rule: a mailbox's modseq is
taken under its row lock (SQLite: the one writer) and committed with the change, so every change with a
modseq at or below the mailbox's committed modseq is visible to a later read.

Writes that bypass the modseq (an /api PATCH or DELETE of a row) are noticed from the change events
(`observe`), as the sessions notice them: the index is then dropped and read again in full when next used.
`\\Recent` is not indexed (it changes without a modseq): it is read per SELECT.
"""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from portside.imap.store import Hint, MessageInfo
from portside.mail.manage import Counts

MAX_BOXES = 64  # mailboxes indexed per process (least recently used dropped)...
MAX_MESSAGES = 1_000_000  # ...and messages in all of them (a few hundred bytes each)
MAX_LOG = 4096  # changes remembered per mailbox for the sessions catching up (older: read from the store)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
Rows = list[tuple[int, int, list[str], int, dt.datetime | None]]  # MailStore.flag_index
Gone = list[tuple[int, int]]  # (uid, modseq) of expunged messages: MailStore.expunged_since


def _utc(value: dt.datetime | None) -> dt.datetime:
    if value is None:
        return EPOCH
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def stale(known: MessageInfo, hint: Hint) -> bool:
    """Whether a change event shows a message state that `known` (read at or after the event's modseq)
    lacks. A known modseq above the event's is a later change, read with this one in it (a write that keeps
    the modseq keeps the one the row had: a later change was committed after it); at the same modseq the
    flags must agree (else a write bypassed the modseq); below it, the change was missed."""
    assert hint.modseq is not None
    if known.modseq != hint.modseq:
        return known.modseq < hint.modseq
    return hint.flags is not None and hint.flags != known.flags


class BoxIndex:
    def __init__(self, uidvalidity: int):
        self.uidvalidity = uidvalidity
        self.messages: dict[int, MessageInfo] = {}  # ascending UID (UIDs only grow)
        self.synced = -1  # every change up to this modseq is in `messages`; -1: nothing read yet
        self.top = 0  # the highest modseq of an indexed message
        self.suspect: set[int] = set()  # UIDs an event said were deleted: must be gone after catching up
        # (modseq, uid, expunged) of every change read after `log_from`, in modseq order: what a session that
        # has seen everything up to `log_from` or later needs to catch up, without a query of its own
        self.log: list[tuple[int, int, bool]] = []
        self.log_from = 1 << 62
        self.lock = asyncio.Lock()

    def counts(self, recent: int) -> Counts:
        unseen = deleted = size = 0
        for m in self.messages.values():
            flags = m.flags
            unseen += "\\Seen" not in flags
            deleted += "\\Deleted" in flags
            size += m.size
        return Counts(len(self.messages), unseen, recent, deleted, size)

    def apply(self, rows: Rows, vanished: Gone, *, log: bool = True) -> bool:
        """Fold changed/new rows and expunged UIDs in; False when the index cannot stay in UID order."""
        last = next(reversed(self.messages), 0)
        for uid, modseq, flags, size, when in rows:
            old = self.messages.get(uid)
            if old is None and uid < last:
                return False
            if old is None:
                last = uid
            self.messages[uid] = MessageInfo(uid, frozenset(flags), _utc(when), size, modseq)
            self.top = max(self.top, modseq)
            if log:
                bisect.insort(self.log, (modseq, uid, False))
        for uid, modseq in vanished:
            self.messages.pop(uid, None)
            if log:
                bisect.insort(self.log, (modseq, uid, True))
        if len(self.log) > MAX_LOG:
            cut = len(self.log) - MAX_LOG // 2
            self.log_from = max(self.log_from, self.log[cut - 1][0])
            del self.log[:cut]
        return True

    def expunged_after(self, uid: int, modseq: int) -> bool:
        """Whether catching up read the expunge of `uid` after `modseq` (a late event of a change before it)."""
        return any(u == uid and gone and m > modseq for m, u, gone in self.log)

    def changes_since(self, since: int) -> tuple[list[MessageInfo], list[int]] | None:
        """(messages changed or new, UIDs expunged) after modseq `since`, ascending UID; None when that is
        before what the log remembers."""
        if since < self.log_from:
            return None
        tail = self.log[bisect.bisect_right(self.log, (since, 1 << 62, True)) :]
        messages = self.messages
        changed = {u for _, u, gone in tail if not gone and u in messages and messages[u].modseq > since}
        vanished = {u for _, u, gone in tail if gone and u not in messages}
        return [messages[u] for u in sorted(changed)], sorted(vanished)


class BoxIndexes:
    """The indexes of one process, kept current by `catch_up` and invalidated by `observe`."""

    def __init__(self) -> None:
        self._boxes: OrderedDict[str, BoxIndex] = OrderedDict()  # by mailbox reference

    def drop(self, box_id: str | None = None) -> None:
        if box_id is None:
            self._boxes.clear()
        else:
            self._boxes.pop(box_id, None)

    def observe(self, box_id: str, hint: Hint) -> None:
        """A change event for a message of this mailbox: drop the index unless catching up will find it."""
        idx = self._boxes.get(box_id)
        if idx is None or (hint.modseq is None and not hint.deleted):
            self.drop(box_id)
            return
        if hint.uid is None:
            self.drop(box_id)
        elif hint.deleted:
            idx.suspect.add(hint.uid)
        elif hint.modseq is not None and hint.modseq <= idx.synced:  # already read, or bypassed the modseq
            known = idx.messages.get(hint.uid)
            if stale(known, hint) if known is not None else not idx.expunged_after(hint.uid, hint.modseq):
                self.drop(box_id)

    async def catch_up(
        self,
        box_id: str,
        uidvalidity: int,
        modseq: int,
        read: Callable[[int | None], Awaitable[Rows]],
        vanished: Callable[[int], Awaitable[Gone]],
    ) -> BoxIndex:
        """The index of a mailbox, current as of `modseq` (the mailbox row's, read before calling)."""
        idx = self._boxes.get(box_id)
        if idx is None or idx.uidvalidity != uidvalidity:
            idx = BoxIndex(uidvalidity)
            self._boxes[box_id] = idx
            while len(self._boxes) > MAX_BOXES:
                self._boxes.popitem(last=False)
        self._boxes.move_to_end(box_id)
        async with idx.lock:
            if idx.synced >= modseq and not idx.suspect:
                return idx
            suspect = set(idx.suspect)
            if idx.synced >= 0:
                # rows first, then tombstones: every change up to the highest modseq read is then known
                rows = await read(idx.synced)
                fine = idx.apply(rows, await vanished(idx.synced))
                if fine and not (suspect & idx.messages.keys()):
                    idx.synced = max(idx.synced, modseq, *(r[1] for r in rows))
                    idx.suspect -= suspect
                    return idx
            fresh = BoxIndex(uidvalidity)  # first read, or catching up could not explain a change: read all
            fresh.apply(await read(None), [], log=False)
            synced = max(modseq, fresh.top)
            idx.messages, idx.synced, idx.top, idx.suspect = fresh.messages, synced, fresh.top, set()
            idx.log, idx.log_from = [], synced
            self._trim(box_id)
            return idx

    def _trim(self, keep: str) -> None:
        total = sum(len(i.messages) for i in self._boxes.values())
        for ref in list(self._boxes):
            if total <= MAX_MESSAGES:
                break
            if ref != keep:
                total -= len(self._boxes.pop(ref).messages)

    def current(self, box_id: str, modseq: int) -> BoxIndex | None:
        """The index of a mailbox when it already holds every change up to `modseq` (no read needed)."""
        idx = self._boxes.get(box_id)
        if idx is None or idx.synced < modseq or idx.suspect or idx.lock.locked():
            return None
        return idx
