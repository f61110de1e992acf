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

The parts: `mail.writes` (messages written), `mail.reads` (messages read), `mail.uids` (UID and modseq
counters), `mail.values` (what goes in and out), `mail.boxes` (accounts and mailboxes, below).
"""

from __future__ import annotations

from portside.auth import access
from portside.auth.permissions import Actor
from portside.core.db import UnitOfWork
from portside.mail import boxes
from portside.mail.boxes import Account, Mailbox
from portside.mail.reads import StoreReads
from portside.mail.writes import StoreWrites


class MailStore(StoreWrites, StoreReads):
    """The one mail store (module docstring): message reads and writes, accounts and mailboxes."""

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
