"""Who is calling: token → Actor (user, groups, admin flag), looked up fresh on every request.

Membership and permission changes are effective on the very next request because nothing here is cached
beyond one request. Tokens are resolved by `sub` (the user's reference id), never by email, and a token
for a user that does not exist is rejected rather than creating one.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from portside.auth import tokens
from portside.auth.permissions import ADMIN_GROUP, Actor
from portside.core.cache import EventCache
from portside.core.db import Database
from portside.core.model import MEMBERSHIP, Model
from portside.errors import Kind, Unauthorized


async def actor_for_user(
    conn: AsyncConnection, model: Model, *, ref: str | None = None, user_id: int | None = None, email: str | None = None
) -> Actor | None:
    u = model.table("user_account").sa
    m = model.table(MEMBERSHIP).sa
    g = model.table("usergroup").sa
    q = sa.select(
        u.c.id,
        u.c.reference_id,
        u.c.email,
        u.c.name,
        u.c.auth_version,
        g.c.id.label("gid"),
        g.c.reference_id.label("gref"),
        g.c.name.label("gname"),
    ).select_from(u.outerjoin(m, m.c.user_account_id == u.c.id).outerjoin(g, g.c.id == m.c.usergroup_id))
    if ref is not None:
        q = q.where(u.c.reference_id == ref)
    elif user_id is not None:
        q = q.where(u.c.id == user_id)
    elif email is not None:
        q = q.where(u.c.email == email)
    else:
        return None
    rows = (await conn.execute(q)).all()
    if not rows:
        return None
    first = rows[0]
    groups = [(r.gid, r.gref, r.gname) for r in rows if r.gid is not None]
    return Actor(
        user_id=int(first.id),
        ref=first.reference_id,
        email=first.email or "",
        name=first.name or "",
        groups=frozenset(ref for _, ref, _ in groups),
        group_ids=tuple(sorted(gid for gid, _, _ in groups)),
        is_admin=any(name == ADMIN_GROUP for _, _, name in groups),
        auth_version=int(first.auth_version or 1),
    )


# who a user is (row, groups, admin flag): dropped whenever users, groups or memberships change
ACTOR_TABLES = ("user_account", MEMBERSHIP, "usergroup")


def actor_cache() -> EventCache[str, Actor]:
    return EventCache(ACTOR_TABLES)


async def actor_from_token(
    db: Database, cache: EventCache[str, Actor], model: Model, token: str, *, secret: str, issuer: str
) -> Actor:
    """The Actor for a presented token, or Unauthorized (401) — a bad token is never a guest."""
    claims = tokens.decode(token, secret=secret, issuer=issuer)
    sub = claims.get("sub")
    if not isinstance(sub, str):
        raise Unauthorized("invalid token: no subject")
    actor = cache.get(sub)
    if actor is None:
        generation = cache.generation
        async with db.read() as conn:
            actor = await actor_for_user(conn, model, ref=sub)
        if actor is None:
            raise Unauthorized("invalid token: unknown user")
        cache.put(sub, actor, generation)
    version = claims.get("auth_version")
    if not isinstance(version, int) or version != actor.auth_version:
        raise Unauthorized("token revoked: credentials changed since it was issued", kind=Kind.TOKEN_REVOKED)
    return actor
