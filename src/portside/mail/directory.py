"""Who mail is for, cached per process: the local domains, accounts by address, an account's INBOX/Junk.

Every RCPT and every DATA asks these questions; reading them from the database each time cost several
round trips per message. The answers are kept in `EventCache`s invalidated by change events (this node's
writes before their response, other nodes' through the bus: `Services.invalidate`), never by time. Unknown
addresses are cached too (as "no account"), bounded like every entry by the cache's size.
"""

from __future__ import annotations

from dataclasses import dataclass

from portside.core.cache import EventCache
from portside.core.db import Database
from portside.core.events import Event
from portside.core.model import Model
from portside.mail import boxes
from portside.mail.boxes import Account, Mailbox

# a changed server (domains), account (address, owner), box (deleted, renamed) or owner drops everything
TABLES = (boxes.SERVER_TABLE, boxes.ACCOUNT_TABLE, boxes.BOX_TABLE, "user_account")


@dataclass(frozen=True)
class _Found:
    account: Account | None


class MailDirectory:
    def __init__(self, max_entries: int = 10_000):
        self._domains: EventCache[str, frozenset[str]] = EventCache(TABLES, 1)
        self._accounts: EventCache[str, _Found] = EventCache(TABLES, max_entries)
        self._boxes: EventCache[tuple[int, bool], Mailbox] = EventCache(TABLES, max_entries)

    def on_events(self, events: list[Event]) -> None:
        for cache in (self._domains, self._accounts, self._boxes):
            cache.on_events(events)

    async def local_domains(self, db: Database, model: Model) -> frozenset[str]:
        found = self._domains.get("")
        if found is None:
            generation = self._domains.generation
            async with db.read() as conn:
                found = frozenset(await boxes.local_domains(conn, model))
            self._domains.put("", found, generation)
        return found

    async def account(self, db: Database, model: Model, address: str) -> Account | None:
        found = self._accounts.get(address)
        if found is None:
            generation = self._accounts.generation
            async with db.read() as conn:
                found = _Found(await boxes.account_by_address(conn, model, address))
            self._accounts.put(address, found, generation)
        return found.account

    async def delivery_box(self, db: Database, model: Model, account_id: int, junk: bool) -> Mailbox | None:
        """The INBOX (or, for junk, the `\\Junk` box) of an account; None when it has none (not cached)."""
        box = self._boxes.get((account_id, junk))
        if box is None:
            generation = self._boxes.generation
            async with db.read() as conn:
                if junk:
                    box = await boxes.mailbox_by_role(conn, model, account_id, "\\Junk")
                else:
                    box = await boxes.mailbox_by_name(conn, model, account_id, boxes.INBOX)
            if box is not None:
                self._boxes.put((account_id, junk), box, generation)
        return box
