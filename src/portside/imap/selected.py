"""The selected mailbox as one session sees it: sequence numbers, known flags, its own \\Recent set.

The session's view changes only when it reports: `refresh` compares the store with what the client was
told and returns the untagged lines that bring the client up to date (EXPUNGE or VANISHED, EXISTS and
RECENT, FETCH FLAGS). Expunges are held back while a command that must keep sequence numbers stable runs
(`expunge=False`); the message stays in the view until it can be reported. The store's change
notifications (`Account.watch`) only mark the view dirty and wake an IDLE: nothing is polled.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable
from dataclasses import replace

from portside.errors import NotFound
from portside.imap.boxindex import stale
from portside.imap.response import flags as flag_list
from portside.imap.response import sequence_set
from portside.imap.store import SYSTEM_FLAGS, Account, Hint, MailboxInfo, MessageInfo, Snapshot


class Selected:
    def __init__(self, name: str, readonly: bool, snapshot: Snapshot, recent: set[int]):
        self.name = name
        self.readonly = readonly
        self.uids: list[int] = [m.uid for m in snapshot.messages]
        self.info: dict[int, MessageInfo] = {m.uid: m for m in snapshot.messages}
        self.recent = recent
        self.mailbox = snapshot.mailbox
        # every change up to this modseq has been read; own writes do not move it (a write by another session
        # with a lower modseq may not have been read yet), only catching up does
        self.synced = snapshot.mailbox.highestmodseq
        self.gone: set[int] = set()  # expunged in the store, not reported yet
        self.dirty = False
        self.full = False  # the next refresh re-reads the whole mailbox
        self.deleted_hints: set[int] = set()
        self.claimed: set[int] = set()  # UIDs this session appended as its own \\Recent (not claimed again)
        distinct = {m.flags for m in snapshot.messages}  # a mailbox has few distinct flag sets
        self.keywords = {f for flags in distinct for f in flags if not f.startswith("\\")}
        self.keywords |= set(snapshot.mailbox.keywords)
        self.wake = asyncio.Event()
        self._unwatch: Callable[[], None] | None = None

    def watch(self, account: Account) -> None:
        self._unwatch = account.watch(self.name, self.changed)

    def changed(self, hint: Hint) -> None:
        """A change notification. Most are caught up by reading what changed since the highest modseq this
        view knows; a change that did not move the modseq (a write that bypassed the mail store, e.g. an
        /api PATCH or DELETE of a row), or one that says nothing specific, makes the next refresh re-read the
        whole mailbox."""
        self.dirty = True
        if hint.uid is None:
            self.full = True
        elif hint.deleted:
            self.deleted_hints.add(hint.uid)
        elif (
            hint.modseq is not None
            and hint.modseq <= self.synced
            and hint.uid in self.info
            and stale(self.info[hint.uid], hint)
        ):
            self.full = True  # a change the modseq does not show: only a full read finds it
        self.wake.set()

    def close(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None

    def flags_lines(self) -> list[bytes]:
        flags = " ".join([*SYSTEM_FLAGS, *sorted(self.keywords)])
        perm = "" if self.readonly else f"{flags} \\*"
        return [f"FLAGS ({flags})".encode(), f"OK [PERMANENTFLAGS ({perm})] Flags permitted.".encode()]

    def new_keywords(self, messages: list[MessageInfo]) -> list[bytes]:
        """FLAGS and PERMANENTFLAGS again when messages carry keywords the client was not told about."""
        fresh = {f for m in messages for f in m.flags if not f.startswith("\\")} - self.keywords
        if not fresh:
            return []
        self.keywords |= fresh
        return self.flags_lines()

    # -- numbers ---------------------------------------------------------------------------------------------

    @property
    def exists(self) -> int:
        return len(self.uids)

    def seq_of(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else None

    def flags_of(self, uid: int) -> list[str]:
        info = self.info.get(uid)
        out = sorted(info.flags) if info else []
        if uid in self.recent and not self.rev2:
            out.append("\\Recent")
        return out

    def flags_item(self, uid: int) -> bytes:
        return b"FLAGS " + flag_list(self.flags_of(uid))

    def update(self, messages: list[MessageInfo]) -> None:
        for m in messages:  # flags and modseq change; the rest of what the client knows stays
            old = self.info.get(m.uid)
            if old is not None:
                self.info[m.uid] = replace(old, flags=m.flags, modseq=m.modseq)
        if messages:
            top = max(m.modseq for m in messages)
            if top > self.mailbox.highestmodseq:
                self.mailbox = replace(self.mailbox, highestmodseq=top)

    def remove(self, uids: list[int], *, qresync: bool) -> list[bytes]:
        """Drop expunged messages from the view; the lines that tell the client."""
        lines: list[bytes] = []
        present = [u for u in uids if u in self.info]
        if not present:
            return lines
        if qresync:
            lines.append(b"VANISHED " + sequence_set(present).encode())
        doomed = set(present)
        for seq in range(len(self.uids), 0, -1):  # descending: each number is still right when sent
            uid = self.uids[seq - 1]
            if uid in doomed and not qresync:
                lines.append(b"%d EXPUNGE" % seq)
        self.uids = [u for u in self.uids if u not in doomed]
        was_recent = len(self.recent)
        for u in doomed:
            self.info.pop(u, None)
            self.recent.discard(u)
            self.gone.discard(u)
        if len(self.recent) != was_recent and not self.rev2:
            lines.append(b"%d RECENT" % len(self.recent))
        return lines

    # -- catching up ------------------------------------------------------------------------------------------

    async def refresh(self, account: Account, *, expunge: bool, qresync: bool, force: bool = False) -> list[bytes]:
        if not (self.dirty or force or (expunge and self.gone)):
            return []
        self.dirty = False
        self.wake.clear()
        full = self.full or force
        self.full = False
        try:
            if not full:
                changes = await account.changes(self.name, self.synced)
                unexplained = {u for u in self.deleted_hints if u in self.info} - set(changes.vanished) - self.gone
                if changes.complete and not unexplained:
                    self.deleted_hints.clear()
                    gone = [u for u in changes.vanished if u in self.info and u not in self.gone]
                    return await self._apply(account, changes.mailbox, changes.changed, gone, expunge, qresync)
            self.deleted_hints.clear()
            snap = await account.snapshot(self.name)
        except NotFound:  # the mailbox itself was deleted: nothing more to report here
            return []
        present = {m.uid for m in snap.messages}
        gone = [u for u in self.uids if u not in present and u not in self.gone]
        known = [m for m in snap.messages if m.uid not in self.info or self.info[m.uid] != m]
        return await self._apply(account, snap.mailbox, known, gone, expunge, qresync)

    async def _apply(
        self,
        account: Account,
        mailbox: MailboxInfo,
        changed_or_new: list[MessageInfo],
        gone: list[int],
        expunge: bool,
        qresync: bool,
    ) -> list[bytes]:
        lines: list[bytes] = []
        self.gone.update(gone)
        if expunge and self.gone:
            lines += self.remove(sorted(self.gone), qresync=qresync)
        top = self.uids[-1] if self.uids else 0
        new = [m for m in changed_or_new if m.uid > top and m.uid not in self.info]
        changed: list[MessageInfo] = []
        for fresh in changed_or_new:
            old = self.info.get(fresh.uid)
            if (
                old is not None
                and fresh.uid not in self.gone
                and (fresh.flags, fresh.modseq) != (old.flags, old.modseq)
            ):
                self.info[fresh.uid] = replace(old, flags=fresh.flags, modseq=fresh.modseq)
                if fresh.flags != old.flags or self.condstore:
                    changed.append(fresh)
        lines += self.new_keywords(new + changed)
        if new:
            self.uids += [m.uid for m in new]
            for m in new:
                self.info[m.uid] = m
            lines.append(b"%d EXISTS" % len(self.uids))
            if not self.rev2:  # IMAP4rev2 has no \\Recent: nothing to claim or report
                mine = {m.uid for m in new} & self.claimed
                self.claimed -= mine
                others = [m.uid for m in new if m.uid not in mine]
                self.recent |= mine | (await account.claim_recent(self.name, others) if others else set())
                lines.append(b"%d RECENT" % len(self.recent))
        for m in sorted(changed, key=lambda m: m.uid):
            seq = self.seq_of(m.uid)
            if seq is None:
                continue
            parts = [self.flags_item(m.uid)]
            if qresync or self.condstore:
                parts.insert(0, b"UID %d" % m.uid)
            if self.condstore:
                parts.append(b"MODSEQ (%d)" % m.modseq)
            lines.append(b"%d FETCH (" % seq + b" ".join(parts) + b")")
        top_modseq = max([mailbox.highestmodseq, *(m.modseq for m in changed_or_new)])
        self.synced = max(self.synced, top_modseq)
        self.mailbox = replace(mailbox, highestmodseq=max(top_modseq, self.mailbox.highestmodseq))
        return lines

    condstore = False  # set by the session when CONDSTORE is enabled (FETCH carries MODSEQ)
    rev2 = False  # set by the session when IMAP4rev2 is enabled (no \\Recent)
