"""An in-process `store.Account` over dicts: exercises the IMAP engine alone (engine unit tests and the
imaptest run of the engine). Portside itself serves the mail rows (src/portside/imap/rows.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from portside.errors import Conflict, Kind, NotFound, Unauthorized
from portside.imap.base import Options
from portside.imap.listener import ImapListener
from portside.imap.store import Changes, CopyResult, MailboxInfo, MessageInfo, Snapshot, StoreMode, StoreResult

UIDVALIDITY = itertools.count(int(time.time()))


@dataclass
class Box:
    name: str
    uidvalidity: int
    special_use: str | None = None
    subscribed: bool = False
    uidnext: int = 1
    modseq: int = 1
    messages: dict[int, tuple[MessageInfo, bytes, bool]] = field(default_factory=dict)  # uid -> info, raw, recent
    vanished: list[tuple[int, int]] = field(default_factory=list)  # (modseq, uid)
    watchers: set[Callable[[], None]] = field(default_factory=set)

    def bump(self) -> int:
        self.modseq += 1
        return self.modseq

    def notify(self) -> None:
        for w in list(self.watchers):
            w()

    def info(self) -> MailboxInfo:
        msgs = list(self.messages.values())
        return MailboxInfo(
            self.name, self.uidvalidity, self.uidnext, self.modseq, self.special_use, self.subscribed,
            len(msgs), sum(1 for m, _, _ in msgs if "\\Seen" not in m.flags), sum(1 for *_, r in msgs if r),
            sum(1 for m, _, _ in msgs if "\\Deleted" in m.flags), sum(m.size for m, _, _ in msgs),
        )  # fmt: skip


class MemoryAccount:
    def __init__(self, username: str, boxes: dict[str, Box]):
        self.username = username
        self.boxes = boxes

    def _box(self, name: str) -> Box:
        box = self.boxes.get(name)
        if box is None:
            raise NotFound("Mailbox doesn't exist")
        return box

    async def mailboxes(self) -> list[MailboxInfo]:
        return [b.info() for b in self.boxes.values()]

    async def status(self, name: str) -> MailboxInfo:
        return self._box(name).info()

    async def create(self, name: str, special_use: str | None = None) -> MailboxInfo:
        if name in self.boxes:
            raise Conflict("exists", kind=Kind.UNIQUE_VIOLATION)
        box = self.boxes[name] = Box(name, next(UIDVALIDITY), special_use)
        return box.info()

    async def delete(self, name: str) -> None:
        box = self._box(name)
        del self.boxes[name]
        box.notify()

    async def rename(self, old: str, new: str) -> None:
        box = self._box(old)
        if old == "INBOX":
            target = self.boxes[new] = Box(new, next(UIDVALIDITY))
            for uid in sorted(box.messages):
                info, raw, recent = box.messages[uid]
                target.messages[target.uidnext] = (replace(info, uid=target.uidnext), raw, recent)
                target.uidnext += 1
            box.messages.clear()
            box.notify()
            return
        del self.boxes[old]
        box.name = new
        self.boxes[new] = box

    async def subscribe(self, name: str, on: bool) -> None:
        self._box(name).subscribed = on

    async def snapshot(self, name: str) -> Snapshot:
        box = self._box(name)
        recent = frozenset(u for u, (_, _, r) in box.messages.items() if r)
        return Snapshot(box.info(), [box.messages[u][0] for u in sorted(box.messages)], recent)

    async def changes(self, name: str, since: int) -> Changes:
        box = self._box(name)
        changed = [box.messages[u][0] for u in sorted(box.messages) if box.messages[u][0].modseq > since]
        return Changes(box.info(), changed, sorted(u for m, u in box.vanished if m > since))

    async def body(self, name: str, uid: int) -> bytes | None:
        entry = self._box(name).messages.get(uid)
        return entry[1] if entry else None

    async def append(
        self, name: str, message: bytes, flags: Sequence[str], date: dt.datetime | None
    ) -> tuple[int, int]:
        box = self._box(name)
        uid = box.uidnext
        box.uidnext += 1
        when = date or dt.datetime.now(dt.UTC).replace(microsecond=0)
        box.messages[uid] = (MessageInfo(uid, frozenset(flags), when, len(message), box.bump()), message, True)
        box.notify()
        return box.uidvalidity, uid

    async def store(
        self, name: str, uids: Sequence[int], mode: StoreMode, flags: Sequence[str], unchanged_since: int | None
    ) -> StoreResult:
        box = self._box(name)
        changed: list[MessageInfo] = []
        modified: list[int] = []
        for uid in uids:
            entry = box.messages.get(uid)
            if entry is None:
                continue
            info, raw, recent = entry
            if unchanged_since is not None and info.modseq > unchanged_since:
                modified.append(uid)
                continue
            new = set(flags) if mode == "set" else info.flags | set(flags) if mode == "add" else info.flags - set(flags)
            if frozenset(new) == info.flags and unchanged_since is None:
                continue
            info = replace(info, flags=frozenset(new), modseq=box.bump())
            box.messages[uid] = (info, raw, recent)
            changed.append(info)
        if changed:
            box.notify()
        return StoreResult(changed, modified)

    async def expunge(self, name: str, uids: Sequence[int] | None) -> list[int]:
        box = self._box(name)
        pool = sorted(box.messages) if uids is None else [u for u in uids if u in box.messages]
        gone = [u for u in pool if "\\Deleted" in box.messages[u][0].flags]
        for uid in gone:
            del box.messages[uid]
            box.vanished.append((box.bump(), uid))
        if gone:
            box.notify()
        return gone

    async def copy(self, name: str, uids: Sequence[int], target: str, *, move: bool) -> CopyResult:
        src, dst = self._box(name), self._box(target)
        source, out = [], []
        for uid in uids:
            entry = src.messages.get(uid)
            if entry is None:
                continue
            info, raw, _ = entry
            new = dst.uidnext
            dst.uidnext += 1
            dst.messages[new] = (replace(info, uid=new, modseq=dst.bump()), raw, True)
            source.append(uid)
            out.append(new)
        if move:
            for uid in source:
                del src.messages[uid]
                src.vanished.append((src.bump(), uid))
            src.notify()
        dst.notify()
        return CopyResult(dst.uidvalidity, source, out)

    async def claim_recent(self, name: str, uids: Sequence[int]) -> set[int]:
        box = self._box(name)
        claimed = set()
        for uid in uids:
            entry = box.messages.get(uid)
            if entry is not None and entry[2]:
                box.messages[uid] = (entry[0], entry[1], False)
                claimed.add(uid)
        return claimed

    def watch(self, name: str, wake: Callable[[], None]) -> Callable[[], None]:
        box = self.boxes.get(name)
        if box is None:
            return lambda: None
        loop = asyncio.get_running_loop()

        def later() -> None:
            loop.call_soon(wake)

        box.watchers.add(later)
        return lambda: box.watchers.discard(later)

    async def close(self) -> None:
        return None


class MemoryBackend:
    append_limit = 10 * 1024 * 1024

    def __init__(self, users: dict[str, str]):
        self.users = users
        self.data: dict[str, dict[str, Box]] = {}

    async def login(self, username: str, secret: str, address: str) -> MemoryAccount:
        if self.users.get(username) != secret:
            raise Unauthorized("Invalid username or password", kind=Kind.LOGIN_FAILED)
        boxes = self.data.setdefault(username, {})
        if "INBOX" not in boxes:
            boxes["INBOX"] = Box("INBOX", int(time.time()), subscribed=True)
        return MemoryAccount(username, boxes)

    def end_session(self, account: object, end: Callable[[str], None]) -> Callable[[], None]:
        return lambda: None


async def serve(port: int) -> None:
    backend = MemoryBackend({"alice": "secret", "bob": "secret"})
    listener = ImapListener("imap", "127.0.0.1", port, backend, Options(allow_plaintext_login=True))
    await listener.bind()
    await listener.serve()
    print(f"listening on {listener.bound_port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]) if len(sys.argv) > 1 else 10144))
