"""Pending ACME HTTP-01 challenges in the database (`_acme_challenge`), so every node behind the address answers.

The CA's validation request may reach any node of a cluster, not the one running the order. That node writes
token -> key authorization before it tells the CA to validate and deletes the row when the order ends,
whatever its outcome. Each row has an expiry: a node that dies mid-order leaves nothing that answers for long,
and the next order's write purges expired rows.

Only a token of the RFC 8555 shape (base64url, at least 128 bits, bounded length) is ever looked up, and only
an exact match is served: `_migrate_sync` gives the table a binary collation on MariaDB, and the row found is
compared again here. The ordering node also keeps its own tokens in memory, so the CA's request to that node
costs no query.
"""

from __future__ import annotations

import datetime as dt
import re
import time

import sqlalchemy as sa

from portside import log
from portside.core.db import Database
from portside.core.migrate import migrate_tables

logger = log.get("certs")

# RFC 8555 8.3: base64url without padding, at least 128 bits of entropy (22 characters); CAs send 43
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{22,128}")
MAX_TOKEN = 128
# the key authorization is `token.base64url(SHA-256 JWK thumbprint)` (RFC 8555 8.1)
KEY_AUTHORIZATION_RE = re.compile(r"([A-Za-z0-9_-]{22,128})\.[A-Za-z0-9_-]{1,100}")
MAX_KEY_AUTHORIZATION = 256
TTL_SECONDS = 300.0  # past the order's 90 s validation window and its network timeouts

metadata = sa.MetaData()
CHALLENGES = sa.Table(
    "_acme_challenge",
    metadata,
    sa.Column("token", sa.String(MAX_TOKEN), primary_key=True),
    sa.Column("key_authorization", sa.String(MAX_KEY_AUTHORIZATION), nullable=False),
    sa.Column("expires_at", sa.DateTime(), nullable=False),
    sa.Index("ix_acme_challenge_expires_at", "expires_at"),
)


async def create_table(db: Database) -> None:
    """Create `_acme_challenge` when missing (called by the runtime at start-up)."""
    await migrate_tables(db, metadata)


def valid_token(token: str) -> bool:
    return TOKEN_RE.fullmatch(token) is not None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)  # naive UTC, as the other internal tables


class ChallengeStore:
    """token -> key authorization, shared by every node on the database."""

    def __init__(self, db: Database, ttl: float = TTL_SECONDS) -> None:
        self.db = db
        self.ttl = ttl
        self._mine: dict[str, tuple[str, float]] = {}  # this node's pending tokens: (value, monotonic expiry)

    async def put(self, token: str, key_authorization: str, *, ttl: float | None = None) -> None:
        """Publish a challenge (committed when this returns). ValueError for a malformed token or value."""
        m = KEY_AUTHORIZATION_RE.fullmatch(key_authorization)
        if not valid_token(token) or m is None or m.group(1) != token:
            raise ValueError("malformed HTTP-01 token or key authorization")
        seconds = self.ttl if ttl is None else ttl
        t = CHALLENGES
        async with self.db.transaction() as uow:
            await uow.conn.execute(t.delete().where(t.c.token == token))
            expires = _now() + dt.timedelta(seconds=seconds)
            row = {"token": token, "key_authorization": key_authorization, "expires_at": expires}
            await uow.conn.execute(t.insert().values(**row))
        self._mine[token] = (key_authorization, time.monotonic() + seconds)
        try:
            await self.purge()
        except Exception:  # housekeeping only: an expired row is never served anyway
            logger.warning("purging expired ACME challenges failed", exc_info=True)

    async def get(self, token: str) -> str | None:
        """The key authorization of a pending, unexpired challenge with exactly this token, else None."""
        if not valid_token(token):
            return None
        mine = self._mine.get(token)
        if mine is not None and mine[1] > time.monotonic():
            return mine[0]
        t = CHALLENGES
        query = sa.select(t.c.token, t.c.key_authorization).where(t.c.token == token, t.c.expires_at > _now())
        async with self.db.read(quick=True) as conn:
            row = (await conn.execute(query)).first()
        if row is None or row.token != token:
            return None
        return str(row.key_authorization)

    async def drop(self, token: str) -> None:
        """Withdraw a challenge (its order ended)."""
        self._mine.pop(token, None)
        if not valid_token(token):
            return
        t = CHALLENGES
        async with self.db.transaction() as uow:
            await uow.conn.execute(t.delete().where(t.c.token == token))

    async def purge(self) -> None:
        """Delete expired rows (any node's)."""
        now = _now()
        self._mine = {k: v for k, v in self._mine.items() if v[1] > time.monotonic()}
        t = CHALLENGES
        async with self.db.transaction() as uow:
            await uow.conn.execute(t.delete().where(t.c.expires_at <= now))
