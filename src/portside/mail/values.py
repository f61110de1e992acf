"""The values `MailStore` takes (where a message goes, what SMTP knew, the spam verdict) and returns (a stored
copy, a message's metadata, the outcome of a STORE)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from portside.mail import message
from portside.mail.boxes import Mailbox


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
