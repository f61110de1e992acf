"""Credentials -> Actor, for every protocol (HTTP sign-in, SMTP AUTH, IMAP LOGIN, FTP USER/PASS, DAV Basic).

`login(...)` takes the account's email, the presented secret, the client address and the protocol name,
and returns a `Login` (the actor and the credential used) or raises:

- `Unauthorized("Invalid username or password")` for every wrong credential: unknown account, wrong
  password, wrong, revoked or foreign application password — one message, and an unknown account costs a
  bcrypt check too, so neither text nor timing tells which;
- `TooManyRequests` (with Retry-After) when the `LoginThrottle` says this address must wait.

The throttle is keyed by (account, address) whatever the protocol, so switching from IMAP to SMTP to FTP
gives an attacker no extra guesses; the protocol is in every log line (`login ok` / `login failed`).

Application passwords (`app_password` rows, created by `user_account/create_app_password`) look like
`ps_<row id: 32 hex>_<43 random base64url chars>`: 256 random bits. The row is found by the id in the
secret and the secret compared with its stored SHA-256 (constant time). A secret that strong cannot be
guessed offline, so a slow hash (bcrypt) would only cost CPU per login; no server key is involved, so
rotating the JWT secret or moving the database keeps them valid. They are accepted by every protocol
except HTTP sign-in (`protocol="http"`): a leaked mail/DAV password must not mint a full API token.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from portside import log
from portside.auth.identity import actor_for_user
from portside.auth.permissions import Actor
from portside.auth.sessions import APP_PASSWORD_TABLE, app_password_credential, password_stamp
from portside.auth.throttle import LoginThrottle
from portside.core import fieldtypes, records
from portside.core.db import Database, UnitOfWork
from portside.core.model import OWNER_COLUMN, Model
from portside.errors import Kind, Unauthorized
from portside.tools import crypto, metrics, names

logger = log.get("login")

WRONG = "Invalid username or password"
APP_PASSWORD_PREFIX = "ps_"
_APP_PASSWORD = re.compile(r"ps_([0-9a-f]{32})_([A-Za-z0-9_-]{43})")
HASH_PREFIX = "sha256$"
LAST_USED_STEP = 60.0  # seconds: `last_used` is written at most once a minute per application password
NO_APP_PASSWORDS = frozenset({"http"})  # protocols that take the main password only
_dummy: dict[int, str] = {}


@dataclass(frozen=True)
class Login:
    actor: Actor
    credential: str  # "password" or "app_password:<row reference id>"


def new_app_password() -> tuple[str, str, str]:
    """(row reference id, secret shown once, stored hash) for a new application password."""
    ref = str(uuid.uuid4())
    random_part = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    secret = f"{APP_PASSWORD_PREFIX}{ref.replace('-', '')}_{random_part}"
    return ref, secret, hash_app_password(secret)


def hash_app_password(secret: str) -> str:
    return HASH_PREFIX + hashlib.sha256(secret.encode()).hexdigest()


def _app_password_ref(secret: str) -> str | None:
    m = _APP_PASSWORD.fullmatch(secret)
    return str(uuid.UUID(m.group(1))) if m else None


def _dummy_hash() -> str:
    rounds = fieldtypes.BCRYPT_ROUNDS
    if rounds not in _dummy:
        _dummy[rounds] = crypto.hash_password(secrets.token_hex(8), rounds)
    return _dummy[rounds]


async def login(
    db: Database,
    model: Model,
    throttle: LoginThrottle,
    *,
    identifier: str,
    secret: Any,
    address: str,
    protocol: str,
    uow: UnitOfWork | None = None,
) -> Login:
    """The actor these credentials name, or Unauthorized / TooManyRequests (see the module text)."""
    account = names.email(identifier if isinstance(identifier, str) else "")
    async with throttle.turn(account, address):
        attempt = throttle.begin(account, address)  # counted as a failure until it succeeds
        if uow is not None:
            found = await _check(uow.conn, model, account, secret, protocol)
        else:
            async with db.read() as conn:
                found = await _check(conn, model, account, secret, protocol)
        if found is None:
            logger.info("login failed protocol=%s account=%s address=%s", protocol, account, address)
            metrics.login(protocol, ok=False)
            raise Unauthorized(WRONG, kind=Kind.LOGIN_FAILED)
        user_ref, credential, stale = found
        attempt.succeeded()
    if uow is not None:
        actor = await actor_for_user(uow.conn, model, ref=user_ref)
    else:
        async with db.read() as conn:
            actor = await actor_for_user(conn, model, ref=user_ref)
    if actor is None:  # deleted meanwhile
        raise Unauthorized(WRONG, kind=Kind.LOGIN_FAILED)
    if stale is not None:
        await _touch(db, model, stale, uow)
    logger.info("login ok protocol=%s account=%s address=%s credential=%s", protocol, account, address, credential)
    metrics.login(protocol, ok=True)
    return Login(actor, credential)


async def _check(
    conn: AsyncConnection, model: Model, account: str, secret: Any, protocol: str
) -> tuple[str, str, int | None] | None:
    """(user ref, credential, app password row id whose last_used is stale) or None for a wrong one."""
    u = model.table("user_account").sa
    user = (await conn.execute(sa.select(u.c.id, u.c.reference_id, u.c.password).where(u.c.email == account))).first()
    if not isinstance(secret, str) or not secret or len(secret) > 1024:
        return None
    ref = _app_password_ref(secret) if protocol not in NO_APP_PASSWORDS else None
    if ref is not None and user is not None:
        ap = model.table(APP_PASSWORD_TABLE).sa
        row = (
            await conn.execute(
                sa.select(ap.c.id, ap.c.secret_hash, ap.c.last_used).where(
                    ap.c.reference_id == ref, ap.c[OWNER_COLUMN] == user.id
                )
            )
        ).first()
        stored = row.secret_hash if row is not None else None
        if isinstance(stored, str) and hmac.compare_digest(stored.encode(), hash_app_password(secret).encode()):
            assert row is not None
            last = row.last_used
            age = None if last is None else (records.now() - last).total_seconds()
            stale = int(row.id) if age is None or age >= LAST_USED_STEP else None
            return user.reference_id, app_password_credential(ref), stale
    hashed = user.password if user is not None and isinstance(user.password, str) and user.password else None
    ok = await asyncio.to_thread(crypto.check_password, secret, hashed or _dummy_hash())
    return (user.reference_id, "password", None) if ok and user is not None and hashed else None


async def _touch(db: Database, model: Model, row_id: int, uow: UnitOfWork | None) -> None:
    """Record when an application password was last used (failures here never fail the login)."""
    tm = model.table(APP_PASSWORD_TABLE)
    try:
        if uow is not None:
            await records.update(uow, model, tm, row_id, {"last_used": records.now()}, actor=None)
            return
        async with db.transaction() as own:
            await records.update(own, model, tm, row_id, {"last_used": records.now()}, actor=None)
    except Exception:
        logger.exception("recording the last use of application password %d failed", row_id)


@dataclass(frozen=True)
class MailLogin:
    actor: Actor  # the mail account's owner
    account_id: int  # the `mail_account` row signed in to
    credential: str  # "mail_password" or "app_password:<row reference id>"
    # for "mail_password": the account's reference and a fingerprint of the password hash checked, so a
    # long-lived session can be ended when the password changes (`sessions.mail_password_credential`)
    account_ref: str = ""
    stamp: str = ""


MAIL_ACCOUNT_TABLE = "mail_account"


async def login_mail(
    db: Database,
    model: Model,
    throttle: LoginThrottle,
    *,
    identifier: str,
    secret: Any,
    address: str,
    protocol: str,
) -> MailLogin:
    """SMTP AUTH / IMAP LOGIN: a `mail_account` username with that account's password or an application
    password of the account's owner. Same refusals, throttle and timing rules as `login`."""
    account = names.email(identifier if isinstance(identifier, str) else "")
    async with throttle.turn(account, address), db.read() as conn:
        attempt = throttle.begin(account, address)
        found = await _check_mail(conn, model, account, secret, protocol)
        if found is None:
            logger.info("login failed protocol=%s account=%s address=%s", protocol, account, address)
            metrics.login(protocol, ok=False)
            raise Unauthorized(WRONG, kind=Kind.LOGIN_FAILED)
        account_id, user_ref, credential, stale, account_ref, stamp = found
        attempt.succeeded()
        actor = await actor_for_user(conn, model, ref=user_ref)
    if actor is None:
        raise Unauthorized(WRONG, kind=Kind.LOGIN_FAILED)
    if stale is not None:
        await _touch(db, model, stale, None)
    logger.info("login ok protocol=%s account=%s address=%s credential=%s", protocol, account, address, credential)
    metrics.login(protocol, ok=True)
    return MailLogin(actor, account_id, credential, account_ref, stamp)


async def _check_mail(
    conn: AsyncConnection, model: Model, account: str, secret: Any, protocol: str
) -> tuple[int, str, str, int | None, str, str] | None:
    m = model.table(MAIL_ACCOUNT_TABLE).sa
    u = model.table("user_account").sa
    row = (
        await conn.execute(
            sa.select(m.c.id, m.c.password, u.c.reference_id, u.c.email, m.c.reference_id.label("account_ref"))
            .select_from(m.join(u, u.c.id == m.c[OWNER_COLUMN]))
            .where(m.c.username == account)
        )
    ).first()
    if not isinstance(secret, str) or not secret or len(secret) > 1024:
        return None
    if row is not None and _app_password_ref(secret) is not None:
        found = await _check(conn, model, row.email, secret, protocol)
        if found is not None and found[1] != "password":
            return int(row.id), found[0], found[1], found[2], str(row.account_ref), ""
        return None
    hashed = row.password if row is not None and isinstance(row.password, str) and row.password else None
    ok = await asyncio.to_thread(crypto.check_password, secret, hashed or _dummy_hash())
    if not ok or row is None or not hashed:
        return None
    return int(row.id), row.reference_id, "mail_password", None, str(row.account_ref), password_stamp(hashed)
