"""A short-lived cache of logins for protocols that authenticate every request (DAV's HTTP Basic) or open
many connections with the same credentials (IMAP, keyed by address, account and secret).

A Basic header (or an IMAP login's key) is checked with bcrypt once, then remembered for `seconds` under a
salted hash of it (never the credentials themselves). An entry stops counting at once when what it was made
from changes:
- its application password is deleted (revoked): the `app_password` delete event drops every entry made
  with it, synchronously after this node's commit (`Services.invalidate`) or when another node's event
  arrives on the bus;
- its user's password or auth version changes, or the user goes: the caller compares the entry's auth
  version with the current actor's (the actor cache is event-invalidated too), and an account's delete
  drops its entries here;
- a mail login's mail account changes (a new password) or goes: any `mail_account` update or delete event
  drops the entries made for it.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

from portside.auth.access import ACCOUNT_TABLE, MAIL_ACCOUNT_TABLE
from portside.auth.sessions import APP_PASSWORD_TABLE, app_password_credential
from portside.core.events import Event

SECONDS = 30.0
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class CachedLogin:
    user: str  # the user's reference id
    auth_version: int
    credential: str  # "password", "mail_password" or "app_password:<ref>"
    until: float
    account_id: int = 0  # a mail login: the mail_account row signed in to
    account: str = ""  # ... and its reference id
    stamp: str = ""  # ... and the fingerprint of its password hash (auth.sessions.password_stamp)


class BasicLoginCache:
    def __init__(self, seconds: float = SECONDS, max_entries: int = MAX_ENTRIES):
        self.seconds, self.max_entries = seconds, max_entries
        self._salt = secrets.token_bytes(16)
        self._entries: dict[bytes, CachedLogin] = {}

    def _key(self, header: str) -> bytes:
        return hashlib.sha256(self._salt + header.encode("utf-8", "replace")).digest()

    def get(self, header: str) -> CachedLogin | None:
        key = self._key(header)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.until <= time.monotonic():
            del self._entries[key]
            return None
        return entry

    def put(
        self,
        header: str,
        user: str,
        auth_version: int,
        credential: str,
        *,
        account_id: int = 0,
        account: str = "",
        stamp: str = "",
    ) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        until = time.monotonic() + self.seconds
        self._entries[self._key(header)] = CachedLogin(
            user, auth_version, credential, until, account_id, account, stamp
        )

    def forget(self, header: str) -> None:
        self._entries.pop(self._key(header), None)

    def on_events(self, events: Iterable[Event]) -> None:
        """Drop the entries a revoked application password, a deleted account or a changed mail account made."""
        credentials: set[str] = set()
        users: set[str] = set()
        accounts: set[str] = set()
        for event in events:
            if event.table == MAIL_ACCOUNT_TABLE and event.type != "create":
                accounts.add(event.ref)
            if event.type != "delete":
                continue
            if event.table == APP_PASSWORD_TABLE:
                credentials.add(app_password_credential(event.ref))
            elif event.table == ACCOUNT_TABLE:
                users.add(event.ref)
        if credentials or users or accounts:
            self._entries = {
                k: e
                for k, e in self._entries.items()
                if e.credential not in credentials
                and e.user not in users
                and (not e.account or e.account not in accounts)
            }

    def __len__(self) -> int:
        return len(self._entries)
