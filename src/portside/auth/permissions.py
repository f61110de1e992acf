"""The permission model, used by every port (HTTP, /live, Yjs, feeds, mail, FTP, DAV).

A row's mask has three 7-bit blocks: guest (anyone, bits 0-6), owner (bits 7-13, the row's
`user_account_id` user) and group (bits 14-20, granted to members of a group through the row's link to
that group; the link row's `permission` is the mask). Bit 21 lets any signed-in user execute.
Administrators (members of the group named `administrators`) may do everything.

Differences from Daptin, on purpose: a null owner never matches a guest; group rights follow one rule
(caller is a member of a group the row is linked to, and that link grants the right); the admin group
is found by name, not by id 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from portside.core.events import Grants
from portside.core.masks import (  # re-exported: one import for every port
    ACTION_DEFAULT,
    ACTION_SCHEMA_DEFAULT,
    ADMIN_GROUP,
    ALLOW_ALL,
    AUTH_EXECUTE,
    CREATE,
    DEFAULT_PERMISSION,
    DELETE,
    EXECUTE,
    GROUP_ALL,
    GROUP_SHIFT,
    GUESTS_GROUP,
    OWNER_ALL,
    OWNER_SHIFT,
    PEEK,
    READ,
    REFER,
    UPDATE,
    USERS_GROUP,
)
from portside.core.model import Model, TableModel

__all__ = [
    "ACTION_DEFAULT",
    "ACTION_SCHEMA_DEFAULT",
    "ADMIN_GROUP",
    "ALLOW_ALL",
    "AUTH_EXECUTE",
    "CREATE",
    "DEFAULT_PERMISSION",
    "DELETE",
    "EXECUTE",
    "GROUP_ALL",
    "GROUP_SHIFT",
    "GUEST",
    "GUESTS_GROUP",
    "OWNER_ALL",
    "OWNER_SHIFT",
    "PEEK",
    "READ",
    "REFER",
    "RIGHTS",
    "UPDATE",
    "USERS_GROUP",
    "Actor",
    "Audience",
    "allowed",
    "audience",
    "visible_clause",
]

RIGHTS = {
    "peek": PEEK,
    "read": READ,
    "create": CREATE,
    "update": UPDATE,
    "delete": DELETE,
    "execute": EXECUTE,
    "refer": REFER,
}


@dataclass(frozen=True)
class Actor:
    """Who is asking: a signed-in user with their groups, or a guest (ref None)."""

    user_id: int | None = None
    ref: str | None = None
    email: str = ""
    name: str = ""
    groups: frozenset[str] = field(default_factory=frozenset)  # group refs
    group_ids: tuple[int, ...] = ()
    is_admin: bool = False
    auth_version: int = 1

    @property
    def is_guest(self) -> bool:
        return self.ref is None


GUEST = Actor()


def allowed(actor: Actor, right: int, grants: Grants) -> bool:
    """May `actor` exercise `right` (one of PEEK..REFER) on an object with these grants?"""
    if actor.is_admin:
        return True
    mask = grants.permission
    if mask & right:
        return True
    owner_match = actor.ref is not None and grants.owner is not None and grants.owner == actor.ref
    if owner_match and mask & (right << OWNER_SHIFT):
        return True
    if right == EXECUTE and actor.ref is not None and mask & AUTH_EXECUTE:
        return True
    if actor.groups:
        group_right = right << GROUP_SHIFT
        for group_ref, link_mask in grants.groups:
            if group_ref in actor.groups and link_mask & group_right:
                return True
    return False


@dataclass(frozen=True)
class Audience:
    """Who can possibly hold a right on an object: everybody, or administrators plus the owner plus members
    of some groups. A superset of `allowed` (every allowed actor is in it); fan-out uses it to skip the
    principals that certainly fail, then asks `allowed` for the rest."""

    everyone: bool
    owner: str | None = None
    groups: tuple[str, ...] = ()


def audience(right: int, grants: Grants) -> Audience:
    mask = grants.permission
    if mask & right or (right == EXECUTE and mask & AUTH_EXECUTE):
        return Audience(everyone=True)
    owner = grants.owner if mask & (right << OWNER_SHIFT) else None
    group_right = right << GROUP_SHIFT
    return Audience(False, owner, tuple(g for g, link in grants.groups if link & group_right))


def _has(col: sa.ColumnElement[int], bits: int) -> sa.ColumnElement[bool]:
    return col.op("&")(bits) != 0


def visible_clause(model: Model, tm: TableModel, actor: Actor, right: int) -> sa.ColumnElement[bool] | None:
    """SQL condition selecting exactly the rows `allowed(actor, right, grants(row))` accepts.

    None means no restriction (administrators). Lists filter in SQL so totals and pages are exact.
    """
    if actor.is_admin:
        return None
    t = tm.sa
    conds: list[sa.ColumnElement[bool]] = [_has(t.c.permission, right)]
    if right == EXECUTE and actor.ref is not None:
        conds.append(_has(t.c.permission, AUTH_EXECUTE))
    if tm.owner and actor.user_id is not None:
        conds.append(sa.and_(t.c.user_account_id == actor.user_id, _has(t.c.permission, right << OWNER_SHIFT)))
    if actor.group_ids:
        if tm.group_join is not None:
            j = model.table(tm.group_join).sa
            conds.append(
                sa.exists().where(
                    j.c[f"{tm.name}_id"] == t.c.id,
                    j.c.usergroup_id.in_(_each(actor.group_ids)),
                    _has(j.c.permission, right << GROUP_SHIFT),
                )
            )
        elif tm.name == "usergroup":
            conds.append(sa.and_(t.c.id.in_(_each(actor.group_ids)), _has(t.c.permission, right << GROUP_SHIFT)))
    return sa.or_(*conds)


def _each(ids: tuple[int, ...]) -> list[sa.BindParameter[int]]:
    """One bound value per id: `IN (?, ?)` is fixed SQL that loopsql can prepare once, where a list of values
    becomes an expanding parameter rendered anew on every execution."""
    return [sa.literal(i, sa.Integer) for i in ids]
