"""The one registry of long-lived sessions (a /live or Yjs WebSocket today; IMAP, FTP, SMTP, IDLE later).

A protocol opens a `Session` when a connection is authenticated and closes it when the connection ends.
It gives two callbacks in its own terms:

- `end(reason)`: the credentials no longer hold (the password changed — `auth_version` moved on —, the
  user was deleted, or the application password the session logged in with was deleted). The protocol
  closes the connection its own way (WebSocket close 1008, IMAP BYE, FTP 421, ...). Not awaited.
- `recheck(actor)`: same credentials, but who the user is changed (groups, administrator flag): the
  protocol re-decides what the session may still do and downgrades it (a /live topic ends, a Yjs peer
  becomes read-only or is closed). Called only when the refreshed actor differs from the session's.

The registry follows the change events on the bus, so a change made on any node reaches the sessions on
every node. Per affected user the actor is read once per burst of events, then every session of that user
is re-checked once. Changes to a single resource's rights (a table gate, a topic's permission, a row) stay
with the protocol service that serves the resource (realtime/hub.py, realtime/yjs_rooms.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

import sqlalchemy as sa

from portside import log
from portside.auth.identity import actor_for_user
from portside.auth.permissions import Actor
from portside.core.catalog import Catalog
from portside.core.db import Database
from portside.core.events import Event
from portside.core.model import MEMBERSHIP

logger = log.get("sessions")

APP_PASSWORD_TABLE = "app_password"
MAIL_ACCOUNT_TABLE = "mail_account"
MAIL_PASSWORD_CHANGED = "mail account password changed"
CREDENTIALS_CHANGED = "credentials changed"
APP_PASSWORD_REVOKED = "application password revoked"
RECENT = 10.0  # seconds: a session opened this soon after a change to its user is re-checked at once
MAX_RECENT = 10_000


def app_password_credential(ref: str) -> str:
    """The credential name of a session that logged in with the application password row `ref`."""
    return f"{APP_PASSWORD_TABLE}:{ref}"


def password_stamp(hashed: str) -> str:
    """A fingerprint of a stored password hash (the hash itself never leaves the login path)."""
    return hashlib.sha256(hashed.encode()).hexdigest()[:32]


def mail_password_credential(account_ref: str, stamp: str) -> str:
    """The credential of a session that logged in with mail account `account_ref`'s own password, whose
    hash had fingerprint `stamp`: it ends when the account is deleted or its password changes."""
    return f"{MAIL_ACCOUNT_TABLE}:{account_ref}:{stamp}"


def token_credential(jti: str) -> str:
    return f"token:{jti}"


def _mail_account_of(credential: str) -> str:
    kind, _, rest = credential.partition(":")
    return rest.partition(":")[0] if kind == MAIL_ACCOUNT_TABLE else ""


class EventStream(Protocol):
    def __aiter__(self) -> AsyncIterator[Event]: ...


class EventSource(Protocol):
    """Where committed change events of every node arrive (realtime.bus.Bus)."""

    def subscribe(self) -> AbstractAsyncContextManager[EventStream]: ...


@dataclass(eq=False)
class Session:
    actor: Actor
    kind: str  # protocol: "live", "yjs", later "imap", "smtp", "ftp", "dav"
    credential: str  # "token:<jti>", "app_password:<ref>", "password", "guest"
    recheck: Callable[[Actor], Awaitable[None]]
    end: Callable[[str], None]
    ended: str | None = field(default=None)  # the reason, once ended


class SessionRegistry:
    def __init__(self, db: Database, catalog: Catalog):
        self.db, self.catalog = db, catalog
        self._all: set[Session] = set()
        self._by_user: dict[str, set[Session]] = {}
        self._by_credential: dict[str, set[Session]] = {}
        self._pending: dict[str, bool] = {}  # user ref -> another refresh is due after the running one
        self._tasks: set[asyncio.Task[None]] = set()
        self._watch: asyncio.Task[None] | None = None
        self._recent: dict[str, float] = {}  # user ref -> when an identity change of theirs last arrived
        self.refreshes = 0  # actor reads done for re-checks (tests and stats)

    # -- registration ------------------------------------------------------------------------------

    def open(
        self,
        actor: Actor,
        kind: str,
        credential: str,
        *,
        recheck: Callable[[Actor], Awaitable[None]],
        end: Callable[[str], None],
    ) -> Session:
        session = Session(actor, kind, credential, recheck, end)
        self._all.add(session)
        if actor.ref is not None:
            self._by_user.setdefault(actor.ref, set()).add(session)
        self._by_credential.setdefault(credential, set()).add(session)
        changed = self._recent.get(actor.ref) if actor.ref is not None else None
        if actor.ref is not None and changed is not None and time.monotonic() - changed < RECENT:
            # authenticated just before a change that arrived while it was not registered yet: re-check it
            self._refresh_later(actor.ref)
        account = _mail_account_of(credential)
        changed = self._recent.get(f"{MAIL_ACCOUNT_TABLE}:{account}") if account else None
        if account and changed is not None and time.monotonic() - changed < RECENT:
            self._recheck_account_later(account, deleted=False)
        return session

    def close(self, session: Session) -> None:
        self._all.discard(session)
        for index, key in ((self._by_user, session.actor.ref), (self._by_credential, session.credential)):
            if key is None:
                continue
            members = index.get(key)
            if members is not None:
                members.discard(session)
                if not members:
                    del index[key]

    def sessions(self, *, user: str | None = None, kind: str | None = None) -> list[Session]:
        pool = self._all if user is None else self._by_user.get(user, set())
        return [s for s in pool if kind is None or s.kind == kind]

    def stats(self) -> dict[str, int]:
        kinds: dict[str, int] = {}
        for s in self._all:
            kinds[s.kind] = kinds.get(s.kind, 0) + 1
        return kinds

    # -- reacting to changes -----------------------------------------------------------------------

    async def start(self, bus: EventSource) -> None:
        if self._watch is None:
            self._watch = asyncio.create_task(self._run(bus), name="portside-sessions")

    async def stop(self) -> None:
        for task in [t for t in (self._watch,) if t is not None] + list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._watch = None

    async def _run(self, bus: EventSource) -> None:
        while True:
            try:
                async with bus.subscribe() as sub:
                    async for event in sub:
                        self.react(event)
            except asyncio.CancelledError:
                raise
            except Exception:  # e.g. Lagged: resubscribe; identity changes missed meanwhile are re-read below
                logger.exception("session registry subscription failed; resubscribing")
                for user in list(self._by_user):
                    self._refresh_later(user)
                await asyncio.sleep(0.5)

    def react(self, event: Event) -> None:
        """Which sessions an event may affect: their user's identity is re-read, or they end at once."""
        if event.table == APP_PASSWORD_TABLE and event.type == "delete":
            self.end_credential(app_password_credential(event.ref), APP_PASSWORD_REVOKED)
            return
        if event.table == MAIL_ACCOUNT_TABLE:
            self._recent[f"{MAIL_ACCOUNT_TABLE}:{event.ref}"] = time.monotonic()
            self._recheck_account_later(event.ref, deleted=event.type == "delete")
            return
        users: set[str] = set()
        if event.table == "user_account":
            users.add(event.ref)
        elif event.table == MEMBERSHIP:
            user = event.data.get("user_account_id")
            if isinstance(user, str):
                users.add(user)
        elif event.table == "usergroup" and event.type in ("update", "delete"):
            users.update(s.actor.ref for s in self._all if s.actor.ref is not None and event.ref in s.actor.groups)
        now = time.monotonic()
        if users and len(self._recent) >= MAX_RECENT:
            self._recent = {u: t for u, t in self._recent.items() if now - t < RECENT}
        for user in users:
            self._recent[user] = now
            if user in self._by_user:
                self._refresh_later(user)

    def end_credential(self, credential: str, reason: str) -> int:
        """End every session that logged in with `credential`; how many were ended."""
        doomed = list(self._by_credential.get(credential, ()))
        for session in doomed:
            self._end(session, reason)
        return len(doomed)

    def _recheck_account_later(self, account_ref: str, *, deleted: bool) -> None:
        prefix = f"{MAIL_ACCOUNT_TABLE}:{account_ref}:"
        if not any(c.startswith(prefix) for c in self._by_credential):
            return
        task = asyncio.create_task(self._recheck_account(account_ref, deleted), name="portside-sessions-mail")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _recheck_account(self, account_ref: str, deleted: bool) -> None:
        try:
            await self.recheck_mail_account(account_ref, deleted)
        except Exception:
            logger.exception("re-checking the sessions of mail account %s failed", account_ref)

    async def recheck_mail_account(self, account_ref: str, deleted: bool = False) -> int:
        """End the sessions signed in with mail account `account_ref`'s password when that password is no
        longer the one they used (or the account is gone); how many were ended."""
        current = ""
        if not deleted:
            m = self.catalog.model.table(MAIL_ACCOUNT_TABLE).sa
            async with self.db.read() as conn:
                hashed = await conn.scalar(sa.select(m.c.password).where(m.c.reference_id == account_ref))
            if isinstance(hashed, str) and hashed:
                current = mail_password_credential(account_ref, password_stamp(hashed))
        prefix = f"{MAIL_ACCOUNT_TABLE}:{account_ref}:"
        doomed = [c for c in self._by_credential if c.startswith(prefix) and c != current]
        return sum(self.end_credential(c, MAIL_PASSWORD_CHANGED) for c in doomed)

    def _end(self, session: Session, reason: str) -> None:
        self.close(session)
        session.ended = reason
        try:
            session.end(reason)
        except Exception:
            logger.exception("ending a %s session failed", session.kind)

    def _refresh_later(self, user: str) -> None:
        if user in self._pending:
            self._pending[user] = True  # the running refresh reads again when it is done
            return
        self._pending[user] = False
        task = asyncio.create_task(self._refresh(user), name="portside-sessions-refresh")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh(self, user: str) -> None:
        try:
            while True:
                self._pending[user] = False
                await self.refresh_user(user)
                if not self._pending.get(user):
                    return
        except Exception:
            logger.exception("re-checking the sessions of user %s failed", user)
        finally:
            self._pending.pop(user, None)

    async def refresh_user(self, user: str) -> None:
        """Read the user once and re-check every session of theirs: end or downgrade."""
        self.refreshes += 1
        async with self.db.read() as conn:
            fresh = await actor_for_user(conn, self.catalog.model, ref=user)
        for session in list(self._by_user.get(user, ())):
            if fresh is None or fresh.auth_version != session.actor.auth_version:
                self._end(session, CREDENTIALS_CHANGED)
            elif fresh != session.actor:
                session.actor = fresh
                try:
                    await session.recheck(fresh)
                except Exception:
                    logger.exception("re-checking a %s session failed", session.kind)
