"""The storage the IMAP engine speaks to: one `Backend` (login) and one `Account` per logged-in session.

The engine knows nothing of tables: the runtime binds these protocols to the mail rows. Names are the
client's names with `INBOX` canonical (upper case) and `/` as the hierarchy delimiter. Failures are
`portside.errors` exceptions whose kind decides the reply (`tools.wire_errors.imap_reply`): a missing
mailbox is NotFound, an existing one Conflict (unique_violation), a read-only one Forbidden, a message
too large PayloadTooLarge.

Flags are strings as IMAP spells them (`\\Seen`, `$Junk`, keywords); `\\Recent` is never stored: it is
session-scoped, claimed by the first session that sees a message (`claim_recent`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
SPECIAL_USE = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")
StoreMode = Literal["set", "add", "remove"]


@dataclass(frozen=True)
class MailboxInfo:
    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int = 1
    special_use: str | None = None
    subscribed: bool = False
    messages: int = 0
    unseen: int = 0
    recent: int = 0
    deleted: int = 0
    size: int = 0
    keywords: tuple[str, ...] = ()
    exists: bool = True  # False: a subscribed name without a mailbox (LSUB, LIST (SUBSCRIBED))


@dataclass(frozen=True)
class MessageInfo:
    uid: int
    flags: frozenset[str]
    internaldate: dt.datetime
    size: int
    modseq: int = 1


@dataclass(frozen=True)
class Snapshot:
    mailbox: MailboxInfo
    messages: list[MessageInfo]  # ascending UID
    recent: frozenset[int] = frozenset()  # UIDs no session has claimed as \\Recent yet


@dataclass(frozen=True)
class Changes:
    mailbox: MailboxInfo
    changed: list[MessageInfo]  # messages whose modseq is above the one asked for (new ones included)
    vanished: list[int] = field(default_factory=list)  # UIDs expunged since then (ascending)
    complete: bool = True  # False: vanished is not known (expunges are not tracked that far back)


@dataclass(frozen=True)
class Hint:
    """What a change notification says: one message (its UID and modseq after the change; `deleted` when it
    is gone) or, with no UID, "anything in the mailbox may have changed"."""

    uid: int | None = None
    modseq: int | None = None
    deleted: bool = False
    flags: frozenset[str] | None = None  # the message's flags after the change, when known


Wake = Callable[[Hint], None]


@dataclass(frozen=True)
class StoreResult:
    changed: list[MessageInfo]  # messages whose flags changed (their new state)
    modified: list[int] = field(default_factory=list)  # UIDs refused by UNCHANGEDSINCE


@dataclass(frozen=True)
class CopyResult:
    uidvalidity: int
    source: list[int]
    target: list[int]


class Account(Protocol):
    """One login's mailboxes. Every method is scoped to the account it was made for."""

    username: str

    async def mailboxes(self) -> list[MailboxInfo]: ...

    async def status(self, name: str) -> MailboxInfo: ...

    async def create(self, name: str, special_use: str | None = None) -> MailboxInfo: ...

    async def delete(self, name: str) -> None: ...

    async def rename(self, old: str, new: str) -> None: ...

    async def subscribe(self, name: str, on: bool) -> None: ...

    async def snapshot(self, name: str, *, claim: bool = False) -> Snapshot:
        """The mailbox now; `recent` is the UIDs still marked recent, cleared for this session with `claim`."""
        ...

    async def changes(self, name: str, since: int) -> Changes: ...

    async def body(self, name: str, uid: int) -> bytes | None: ...

    async def prefetch(self, name: str, uids: Sequence[int]) -> None:
        """A hint that `body` will be asked for these messages next (read them in one go)."""
        ...

    async def append(
        self, name: str, message: bytes, flags: Sequence[str], date: dt.datetime | None, *, claim: bool = False
    ) -> tuple[int, int]:
        """(UIDVALIDITY, UID) of the stored message; `claim`: it is not \\Recent for any other session (the
        appending session, which has the mailbox selected, reports it as its own \\Recent)."""
        ...

    async def store(
        self, name: str, uids: Sequence[int], mode: StoreMode, flags: Sequence[str], unchanged_since: int | None
    ) -> StoreResult: ...

    async def expunge(self, name: str, uids: Sequence[int] | None) -> list[int]: ...

    async def copy(self, name: str, uids: Sequence[int], target: str, *, move: bool) -> CopyResult: ...

    async def claim_recent(self, name: str, uids: Sequence[int]) -> set[int]: ...

    def watch(self, name: str, wake: Wake) -> Callable[[], None]:
        """Call `wake(hint)` (from the event loop) whenever mailbox `name` may have changed; returns the unwatch."""
        ...

    async def close(self) -> None: ...


class Backend(Protocol):
    """Turns credentials into an `Account`; raises Unauthorized / TooManyRequests (see auth.login)."""

    append_limit: int

    async def login(self, username: str, secret: str, address: str) -> Account: ...

    def end_session(self, account: Account, end: Callable[[str], None]) -> Callable[[], None]:
        """Register the session (ended by `end(reason)` when its credentials are revoked); returns the close."""
        ...


_CANONICAL = {f.lower(): f for f in (*SYSTEM_FLAGS, "\\Recent")}
_USES = {u.lower(): u for u in SPECIAL_USE}


def canonical_flag(flag: str) -> str | None:
    """A system flag in its canonical spelling, a keyword unchanged; None for an unknown `\\` flag."""
    if flag.startswith("\\"):
        return _CANONICAL.get(flag.lower())
    return flag


def canonical_use(use: str) -> str | None:
    return _USES.get(use.lower())
