"""The IMAP storage protocol bound to the mail rows: `RowsBackend` (login, sessions, change events), which
makes one `imap.rows_account.RowsAccount` per login and holds what its sessions share (`Shared`).

Push: the backend follows the event bus (every node's committed writes: SMTP delivery, /api, other IMAP
sessions) and wakes the sessions that selected the mailbox a `mail` or `mail_box` event names; the woken
session re-reads the mailbox and reports the difference. Nothing polls.

A login is one mail account (`auth.login.login_mail`: the account's password or an application password of
its owner, throttled; successful checks are kept briefly in the `auth.login_cache.BasicLoginCache` the
other ports share, which drops them when the password or the application password changes); the session
is registered with the session registry and ends when that application password is deleted, the owner's
credentials change, or the mail account's password changes or it is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
from collections.abc import Callable

import sqlalchemy as sa

from portside import log
from portside.auth import access
from portside.auth.identity import actor_for_user
from portside.auth.login import MailLogin, login_mail
from portside.auth.login_cache import BasicLoginCache
from portside.auth.permissions import Actor
from portside.auth.sessions import SessionRegistry
from portside.auth.throttle import LoginThrottle
from portside.core.cache import EventCache
from portside.core.catalog import Catalog
from portside.core.db import Database
from portside.core.events import Event
from portside.errors import Kind, NotFound, TooManyRequests
from portside.imap.boxindex import BoxIndexes
from portside.imap.rows_account import RowsAccount
from portside.imap.store import Hint, Wake
from portside.mail import boxes
from portside.mail import flags as mail_flags
from portside.mail.store import MailStore
from portside.realtime.bus import Bus

logger = log.get("imap")
MAX_SESSIONS_PER_ACCOUNT = 100
DEFAULT_APPEND_LIMIT = 25 * 1024 * 1024
ENDED = "mail account credentials changed"


class RowsBackend:
    def __init__(
        self,
        db: Database,
        catalog: Catalog,
        bus: Bus,
        throttle: LoginThrottle,
        sessions: SessionRegistry | None,
        *,
        append_limit: int = DEFAULT_APPEND_LIMIT,
        max_sessions: int = MAX_SESSIONS_PER_ACCOUNT,
        logins: BasicLoginCache | None = None,
        actors: EventCache[str, Actor] | None = None,
    ):
        self.db, self.catalog, self.bus, self.throttle, self.sessions = db, catalog, bus, throttle, sessions
        # the runtime passes the services' cache, invalidated synchronously after each local commit
        self._own_logins = logins is None
        self.logins = logins if logins is not None else BasicLoginCache()
        self.actors = actors
        self.store = MailStore(db, catalog)
        self.append_limit = append_limit
        self.max_sessions = max_sessions
        self._watchers: dict[str, set[Wake]] = {}  # mailbox ref -> wake
        self._accounts: dict[int, set[RowsAccount]] = {}  # mail_account id -> open sessions
        self._ends: dict[RowsAccount, Callable[[str], None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._salt = secrets.token_bytes(16)
        self._checking: dict[bytes, asyncio.Future[MailLogin]] = {}  # credential checks in flight
        self.indexes = BoxIndexes()  # SELECT's view of each mailbox, shared by the sessions (imap.boxindex)
        self.latest: dict[str, int] = {}  # mailbox ref -> the highest modseq a change event announced
        self.claimed: dict[tuple[int, int], int] = {}  # (box id, uidvalidity) -> UIDs up to this one not \\Recent

    # -- life cycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name="portside-imap-events")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _follow(self) -> None:
        while True:
            try:
                async with self.bus.subscribe() as sub:
                    async for event in sub:
                        self.on_event(event)
            except asyncio.CancelledError:
                raise
            except Exception:  # e.g. lagged: wake everybody (they re-read), resubscribe
                logger.exception("IMAP event subscription failed; resubscribing")
                self.indexes.drop()
                for ref in list(self._watchers):
                    self._wake(ref, Hint())
                await asyncio.sleep(0.5)

    def on_event(self, event: Event) -> None:
        found = self._mail_hint(event)
        if found is not None:
            box, hint = found
            self._announce(box, hint)
            self._wake(box, hint)
        elif event.table == boxes.BOX_TABLE:
            self.indexes.drop(event.ref)
            self._wake(event.ref, Hint())
        if self._own_logins and access.changes_credentials(event.table):
            self.logins.on_events([event])  # a password or an application password may have changed
        if event.table == boxes.ACCOUNT_TABLE:
            for account in [a for accs in self._accounts.values() for a in accs if a.ref == event.ref]:
                asyncio.get_running_loop().create_task(self._recheck(account, event.type == "delete"))

    @staticmethod
    def _mail_hint(event: Event) -> tuple[str, Hint] | None:
        """The mailbox and the change a message event announces (a tombstone is news for the mailbox it was
        left in: a message moved away through /api leaves one)."""
        if event.table == "mail" or (event.table == "mail_expunged" and event.type == "create"):
            box = event.data.get("mail_box_id")
            if isinstance(box, str):
                uid, modseq = event.data.get("uid"), event.data.get("modseq")
                hint = Hint(
                    uid if isinstance(uid, int) else None,
                    modseq if isinstance(modseq, int) else None,
                    event.type == "delete" or event.table == "mail_expunged",
                    frozenset(mail_flags.of_row(event.data)) if "seen" in event.data else None,
                )
                return box, hint if hint.uid is not None else Hint()
        return None

    def _announce(self, box: str, hint: Hint) -> None:
        """The shared index learns of a change: the highest modseq announced, and what to re-read."""
        if hint.modseq is not None and hint.modseq > self.latest.get(box, 0):
            self.latest[box] = hint.modseq
        self.indexes.observe(box, hint)

    async def on_commit(self, events: list[Event]) -> None:
        """This node's writes, before their response (the runtime's after-commit hook): the shared index learns
        of them at once, so a session asked right after an /api write (NOOP) reads what its index has not seen
        instead of answering from it (a delete's event carries the message's old modseq, so the index is marked
        to re-check the UID); the sessions are still woken by the event from the bus."""
        for event in events:
            found = self._mail_hint(event)
            if found is not None:
                self._announce(*found)

    def _wake(self, box_ref: str, hint: Hint) -> None:
        for wake in list(self._watchers.get(box_ref, ())):
            try:
                wake(hint)
            except Exception:
                logger.exception("waking an IMAP session failed")

    def watch(self, box_ref: str, wake: Wake) -> Callable[[], None]:
        self._watchers.setdefault(box_ref, set()).add(wake)

        def unwatch() -> None:
            members = self._watchers.get(box_ref)
            if members is not None:
                members.discard(wake)
                if not members:
                    del self._watchers[box_ref]

        return unwatch

    async def _recheck(self, account: RowsAccount, deleted: bool) -> None:
        """A mail_account row changed: a session whose password no longer matches (or whose account is
        gone) ends."""
        end = self._ends.get(account)
        if end is None:
            return
        if not deleted and account.credential != "mail_password":
            return
        if not deleted and await self._password_hash(account.account_id) == account.password_hash:
            return
        self._ends.pop(account, None)
        end(ENDED)

    async def _password_hash(self, account_id: int) -> str | None:
        m = self.catalog.model.table(boxes.ACCOUNT_TABLE).sa
        async with self.db.read() as conn:
            value = await conn.scalar(sa.select(m.c.password).where(m.c.id == account_id))
        return value if isinstance(value, str) else None

    # -- Backend ------------------------------------------------------------------------------------

    async def _login_mail(self, username: str, secret: str, address: str) -> MailLogin:
        """auth.login_mail, with the short-lived cache of successful checks (as Dovecot's auth cache): a mail
        client opens several connections with the same credentials at once and reconnects often; they wait
        for one password check instead of each costing a bcrypt and counting against the login throttle
        while in flight. Only successes are kept (failures always go to the throttle), keyed by (address,
        account, secret), and dropped when the mail account, the owner's password or an application
        password changes (`BasicLoginCache.on_events`, and the owner's auth version checked here)."""
        header = f"imap\0{address}\0{username}\0{secret}"
        cached = self.logins.get(header)
        if cached is not None and cached.account_id:
            actor = await self._actor(cached.user)
            if actor is not None and actor.auth_version == cached.auth_version:
                return MailLogin(actor, cached.account_id, cached.credential, cached.account, cached.stamp)
            self.logins.forget(header)
        key = hashlib.sha256(self._salt + header.encode()).digest()
        running = self._checking.get(key)
        if running is None:
            running = asyncio.ensure_future(
                login_mail(
                    self.db,
                    self.catalog.model,
                    self.throttle,
                    identifier=username,
                    secret=secret,
                    address=address,
                    protocol="imap",
                )
            )
            self._checking[key] = running
            running.add_done_callback(lambda _: self._checking.pop(key, None))
        found = await asyncio.shield(running)
        if found.actor.ref is not None:
            self.logins.put(
                header, found.actor.ref, found.actor.auth_version, found.credential,
                account_id=found.account_id, account=found.account_ref, stamp=found.stamp,
            )  # fmt: skip
        return found

    async def _actor(self, ref: str) -> Actor | None:
        cache = self.actors
        actor = cache.get(ref) if cache is not None else None
        if actor is None:
            generation = cache.generation if cache is not None else 0
            async with self.db.read() as conn:
                actor = await actor_for_user(conn, self.catalog.model, ref=ref)
            if actor is not None and cache is not None:
                cache.put(ref, actor, generation)
        return actor

    async def login(self, username: str, secret: str, address: str) -> RowsAccount:
        found = await self._login_mail(username, secret, address)
        open_now = self._accounts.get(found.account_id, set())
        if len(open_now) >= self.max_sessions:
            raise TooManyRequests("Too many sessions for this account", kind=Kind.RATE_LIMITED)
        async with self.db.read() as conn:
            acc = await boxes.account_by_id(conn, self.catalog.model, found.account_id)
        if acc is None:
            raise NotFound("no such mail account")
        account = RowsAccount(self, acc, found.actor, found.credential, await self._password_hash(acc.id))
        self._accounts.setdefault(acc.id, set()).add(account)
        return account

    def end_session(self, account: object, end: Callable[[str], None]) -> Callable[[], None]:
        assert isinstance(account, RowsAccount)
        self._ends[account] = end
        session = None
        if self.sessions is not None:

            async def recheck(actor: Actor) -> None:  # IMAP rights are the account owner's: nothing to downgrade
                account.actor = actor

            session = self.sessions.open(account.actor, "imap", account.credential, recheck=recheck, end=end)

        def close() -> None:
            self._ends.pop(account, None)
            members = self._accounts.get(account.account_id)
            if members is not None:
                members.discard(account)
                if not members:
                    del self._accounts[account.account_id]
            if session is not None and self.sessions is not None:
                self.sessions.close(session)

        return close
