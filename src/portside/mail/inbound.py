"""Receiving mail (the service behind the SMTP edge): who may send, who may receive, and storing a message.

Decisions, in order:

- MAIL FROM: an authenticated session may only use an address it owns (a `mail_account` username of the
  signed-in user; 553 5.7.1 otherwise, and never the null sender). Anyone else may use any sender: SPF judges.
- RCPT TO (per recipient): a local domain (mail_server hostnames and their `domains`) with an account ->
  accepted; a local domain without one -> `550 5.1.1` now, not after DATA; a foreign domain -> accepted for
  an authenticated session (relay through the outbox), else `454 4.1.1 Error: Relay access denied: <domain>`.
- DATA: unauthenticated mail is checked (SPF, DKIM, ARC, DMARC: `mail.checks`) in a worker process
  (`mail.analysis` run by `mail.workers`; a thread without a pool; a worker that dies: `451 4.3.0`); a
  `Received` and an `Authentication-Results` field are prepended (forged ones claiming our name dropped);
  junk goes to the Junk mailbox with `$Junk`. Every local copy, the outbox rows of foreign recipients and
  the sender's one Sent copy are written in ONE transaction, committed before the reply: `250` means stored
  durably for every recipient, any failure is `451 4.3.0` for all (nothing stored). Relayed mail is
  DKIM-signed with the sender domain's key first (`signing.KeySource`; none: `554 5.5.0`, nothing stored).
  Concurrent sessions' messages share transactions (`mail.commit`: group commit), each 250 sent only after
  its own commit.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from portside import log
from portside.auth.permissions import Actor
from portside.core import records
from portside.core.config import ConfigStore
from portside.core.db import Database, UnitOfWork
from portside.core.model import OWNER_COLUMN, Model
from portside.mail import analysis, boxes, message, signing
from portside.mail.boxes import Account, Mailbox
from portside.mail.commit import GroupCommit
from portside.mail.directory import MailDirectory
from portside.mail.flags import JUNK
from portside.mail.store import MailStore
from portside.mail.values import Delivery, Envelope, Target, Verdict
from portside.mail.workers import WorkerFailed, WorkerPool
from portside.tools import names

logger = log.get("mail.inbound")
RESOLVER_KEY = "mail.dns_resolver"
OUTBOX_TABLE = "outbox"


@dataclass(frozen=True)
class Reply:
    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


OK_SENDER = Reply(250, "2.1.0 OK")
OK_RECIPIENT = Reply(250, "2.1.5 OK")
TRY_LATER = Reply(451, "4.3.0 Error: could not store the message, try again later")
NO_KEY = Reply(554, "5.5.0 Error: private key not found for signing outgoing email")
SELECTOR_KEY = "mail.dkim_selector"


@dataclass
class Session:
    """What the SMTP edge knows about one connection."""

    hostname: str  # the listener's mail_server hostname (EHLO name, authserv-id)
    server_id: int | None
    peer_ip: str = ""
    helo: str = ""
    tls: bool = False
    actor: Actor | None = None  # the signed-in account's owner
    account_id: int | None = None  # the signed-in mail account
    login_name: str = ""


@dataclass(frozen=True)
class _Relay:
    session: Session
    mail_from: str
    rcpts: list[str]
    outgoing: bytes  # with our Received line, for the outbox
    original: bytes  # the Sent copy


@dataclass(frozen=True)
class _Incoming:
    """One received message waiting for the group commit."""

    local: list[tuple[Account, str, Mailbox | None]]  # (account, recipient, its INBOX or Junk box)
    junk: bool
    raw: bytes  # as stored: trace fields + the message
    envelope: Envelope
    verdict: Verdict | None
    prepared: tuple[message.Parsed, str] | None
    relay: _Relay | None


def _domain(address: str) -> str:
    return address.rpartition("@")[2].strip().rstrip(".").lower()


class Inbound:
    def __init__(
        self,
        db: Database,
        config: ConfigStore,
        store: MailStore,
        directory: MailDirectory,
        keys: signing.KeySource | None = None,
    ):
        self.db, self.config, self.store, self.directory, self.keys = db, config, store, directory, keys
        self.writer: GroupCommit[_Incoming] = GroupCommit(db, merge=self._write)
        self.pool = WorkerPool(0)  # `resize_workers`; started and closed by the SMTP listeners (acquire/release)
        self._retiring: set[asyncio.Future[None]] = set()

    @property
    def model(self) -> Model:
        return self.store.model

    async def resize_workers(self, size: int) -> None:
        """Config `mail.inbound_workers` changed: a pool of the new size takes over at once; the old one closes
        once the jobs it holds are done (no message in flight fails)."""
        old = self.pool
        if size == old.size:
            return
        new = WorkerPool(size)
        new.users = old.users
        if old.users:
            await new.start()
        self.pool = new
        if old.running:
            task = asyncio.ensure_future(old.retire())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def sender(self, session: Session, address: str) -> Reply:
        if session.actor is None:
            return OK_SENDER
        account = await self.directory.account(self.db, self.model, address) if address and address != "<>" else None
        if account is None or account.owner_id != session.actor.user_id or account.owner_id is None:
            return Reply(553, f"5.7.1 Sender address rejected: not owned by {session.login_name}")
        return OK_SENDER

    async def recipient(self, session: Session, address: str) -> Reply:
        try:
            names.email(names.identifier(address, "address", 320))
        except (names.BadName, ValueError):
            return Reply(501, "5.1.3 Bad recipient address syntax")
        domain = _domain(address)
        if "@" not in address or not domain:
            return Reply(501, "5.1.3 Bad recipient address syntax")
        local = domain in await self.directory.local_domains(self.db, self.model)
        known = local and await self.directory.account(self.db, self.model, address) is not None
        if local:
            if known:
                return OK_RECIPIENT
            return Reply(550, f"5.1.1 <{address[:200]}>: Recipient address rejected: User unknown")
        if session.actor is not None:
            return OK_RECIPIENT
        return Reply(454, f"4.1.1 Error: Relay access denied: {domain[:200]}")

    async def receive(self, session: Session, mail_from: str, rcpts: Sequence[str], raw: bytes) -> Reply:
        """Store one message for every recipient, or nothing (see the module text)."""
        queue_id = secrets.token_hex(16)
        local: dict[int, tuple[Account, str]] = {}
        remote: list[str] = []
        domains = await self.directory.local_domains(self.db, self.model)
        for rcpt in dict.fromkeys(rcpts):
            if _domain(rcpt) in domains:
                account = await self.directory.account(self.db, self.model, rcpt)
                if account is None:  # deleted since RCPT: the client retries and hears 550 then
                    return TRY_LATER
                local.setdefault(account.id, (account, rcpt))
            elif session.actor is not None:
                remote.append(rcpt)
            else:
                return Reply(454, "4.1.1 Error: Relay access denied")
        job = analysis.Job(
            raw,
            queue_id,
            session.hostname,
            session.peer_ip,
            session.helo,
            session.tls,
            mail_from,
            rcpts[0] if len(rcpts) == 1 else "",
            (session.login_name or "unknown") if session.actor is not None else "",
            self.config.get(RESOLVER_KEY) or "",
            bool(local),
        )
        try:  # checks, trace fields, parse and stored form: in a worker process (or a thread without a pool)
            done = await self.pool.run(job)
        except WorkerFailed as exc:
            logger.warning("checking message %s from %s failed: %s", queue_id, session.peer_ip, exc)
            return TRY_LATER
        received, stored = done.received, done.stored
        verdict = Verdict(*done.verdict) if done.verdict is not None else None
        outgoing = raw
        if remote:  # relayed mail leaves DKIM-signed by the sender's domain, as mail.send's (spec §I.18)
            signed = await self._sign(mail_from, raw)
            if isinstance(signed, Reply):
                return signed
            outgoing = signed
        envelope = Envelope(
            mail_from=mail_from if mail_from != "<>" else "", ip_addr=session.peer_ip, is_tls=session.tls
        )
        try:
            junk = verdict is not None and verdict.spam
            # found and parsed outside the write (boxes cached): the shared write only locks and inserts
            found = [
                (acc, rcpt, await self.directory.delivery_box(self.db, self.model, aid, junk))
                for aid, (acc, rcpt) in local.items()
            ]
            prepared = done.prepared
            relay = _Relay(session, mail_from, remote, received + outgoing, outgoing) if remote else None
            # returns once the transaction holding it (and other sessions' messages) has committed
            await self.writer.submit(_Incoming(found, junk, stored, envelope, verdict, prepared, relay))
        except Exception:
            logger.exception("storing message %s from %s failed", queue_id, session.peer_ip)
            return TRY_LATER
        logger.info(
            "stored %s from=%s local=%d relay=%d score=%s",
            queue_id,
            mail_from,
            len(local),
            len(remote),
            None if verdict is None else verdict.score,
        )
        return Reply(250, f"2.0.0 OK: queued as {queue_id}")

    async def _write(self, uow: UnitOfWork, batch: list[_Incoming]) -> None:
        """Store a batch of received messages (group commit): every local copy in one `deliver_many`, then
        the outbox rows and Sent copy of each relayed one."""
        deliveries: list[Delivery] = []
        for inc in batch:
            targets = [await self._target(uow, acc, rcpt, inc.junk, box) for acc, rcpt, box in inc.local]
            if targets:
                deliveries.append(
                    Delivery(targets, inc.raw, envelope=inc.envelope, verdict=inc.verdict, prepared=inc.prepared)
                )
        await self.store.deliver_many(uow, deliveries)
        for inc in batch:
            if inc.relay is not None:
                r = inc.relay
                await self._relay(uow, r.session, r.mail_from, r.rcpts, r.outgoing, r.original)

    async def _sign(self, mail_from: str, raw: bytes) -> bytes | Reply:
        """`raw` signed with the sender domain's DKIM key; 554 without a key (nothing is queued then)."""
        domain = _domain(mail_from)
        try:
            key = await self.keys.signing_key(domain) if self.keys is not None and domain else None
        except Exception:
            logger.exception("finding the DKIM key of %s failed", domain)
            return TRY_LATER
        if key is None:
            return NO_KEY
        try:
            return await asyncio.to_thread(signing.sign_as, raw, domain, key, self.config.get(SELECTOR_KEY))
        except signing.SigningError as exc:
            logger.info("signing mail from %s failed: %s", domain, exc)
            return NO_KEY

    async def _box(self, conn: Any, account_id: int, junk: bool) -> Mailbox | None:
        if junk:
            return await boxes.mailbox_by_role(conn, self.model, account_id, "\\Junk")
        return await boxes.mailbox_by_name(conn, self.model, account_id, boxes.INBOX)

    async def _target(self, uow: UnitOfWork, account: Account, rcpt: str, junk: bool, box: Mailbox | None) -> Target:
        """Where the copy for `rcpt` goes (a box deleted since it was looked up fails the UID step: 451)."""
        if box is None:  # an account from before the standard mailboxes
            await boxes.ensure_standard(uow, self.model, account.id)
            box = await self._box(uow.conn, account.id, junk)
        assert box is not None
        return Target(box, [JUNK] if junk else [], rcpt)

    async def _relay(
        self, uow: UnitOfWork, session: Session, mail_from: str, rcpts: list[str], outgoing: bytes, original: bytes
    ) -> None:
        """One outbox row per foreign recipient (the delivery side sends them) and one Sent copy."""
        model = self.model
        tm = model.table(OUTBOX_TABLE)
        encoded = message.encode(outgoing)
        now = records.now()
        for rcpt in rcpts:
            values = {
                "from_address": mail_from[:200],
                "to_address": rcpt[:200],
                "to_host": _domain(rcpt)[:200],
                "mail": encoded,
                "sent": False,
                "retry_count": 0,
                "next_retry_at": now,
                "mail_server_id": session.server_id,
                OWNER_COLUMN: None,
            }
            await records.insert(uow, model, tm, values, permission=0, actor=None)
        sender = await boxes.account_by_address(uow.conn, model, mail_from)
        if sender is None:
            return
        sent = await boxes.mailbox_by_role(uow.conn, model, sender.id, "\\Sent")
        if sent is None:
            await boxes.ensure_standard(uow, model, sender.id)
            sent = await boxes.mailbox_by_role(uow.conn, model, sender.id, "\\Sent")
        assert sent is not None
        await self.store.deliver(uow, [Target(sent, ["\\Seen"])], original)
