"""Every rights decision, by name. Edges and services ask here; none carries its own mask logic.

The mask model itself (bit layout, `allowed`, SQL visibility) is `auth.permissions`; this module names the
decisions made with it, so a protocol asks "may this caller edit this document?" rather than testing bits.

Decided here today: the table gate's administrator bypass, a row right, user topics (read, publish, change
their permission), a Yjs document's mode (read-write or read-only), administrator-only surfaces (config,
/live stats, schema changes, certificate generation).

Design for the protocols that come (each gets one function here, used by its edge and by nothing else):
- `mailbox_right(actor, mailbox_row, right)`: a mailbox is a row (owner + groups), so IMAP SELECT needs
  READ, APPEND/COPY into it CREATE, STORE flags UPDATE, EXPUNGE DELETE, on that row's grants.
- `site_path_right(actor, site_row, path, right)`: FTP/DAV paths inside a site resolve to the site row;
  listing needs PEEK, download READ, upload CREATE/UPDATE, delete DELETE.
- `calendar_right(actor, collection_row, right)`: CalDAV/CardDAV collections are rows; PROPFIND PEEK,
  GET/REPORT READ, PUT CREATE/UPDATE, DELETE DELETE; the DAV edge maps a refusal to 403 + precondition.
"""

from __future__ import annotations

from typing import Literal

from portside.auth.permissions import CREATE, DELETE, GROUP_SHIFT, OWNER_SHIFT, PEEK, READ, UPDATE, Actor, allowed
from portside.core.events import Grants

Mode = Literal["rw", "ro"]


def administers(actor: Actor) -> bool:
    """Administrators pass every gate and may use the administrator-only surfaces."""
    return actor.is_admin


def may_administer(actor: Actor, *, open_mode: bool = False) -> bool:
    """Administrator-only operations (schema changes, certificates); before the first administrator exists
    (`open_mode`) anyone may, as in Daptin."""
    return actor.is_admin or open_mode


def may(actor: Actor, right: int, grants: Grants) -> bool:
    """A right on one row (or topic, or table gate row) with these grants."""
    return allowed(actor, right, grants)


def may_set_topic_permission(actor: Actor, grants: Grants) -> bool:
    """Only a user topic's owner, or an administrator, may change its permission."""
    return actor.is_admin or (actor.ref is not None and grants.owner == actor.ref)


def document_mode(actor: Actor, row_grants: Grants, *, table_allows_update: bool) -> Mode:
    """A row-bound Yjs document: read-write when the caller may update the row and the table lets them."""
    return "rw" if allowed(actor, UPDATE, row_grants) and table_allows_update else "ro"


# -- CalDAV / CardDAV collections ------------------------------------------------------------------------
# A collection row's grants decide everything about it and its objects: PROPFIND needs PEEK (or READ),
# GET/REPORT READ, PUT of a new object CREATE, PUT over one and PROPPATCH UPDATE, DELETE DELETE.

# DAV privilege (RFC 3744) -> the Portside right it needs
DAV_PRIVILEGES: tuple[tuple[str, int], ...] = (
    ("read", READ),
    ("write-properties", UPDATE),
    ("write-content", UPDATE),
    ("bind", CREATE),
    ("unbind", DELETE),
)


def calendar_right(actor: Actor, grants: Grants, right: int) -> bool:
    """May `actor` use `right` on a calendar or address book (and its objects) with these grants?"""
    if right == PEEK:
        return allowed(actor, PEEK, grants) or allowed(actor, READ, grants)
    return allowed(actor, right, grants)


def _privileges(has: set[int]) -> list[str]:
    out = [name for name, right in DAV_PRIVILEGES if right in has]
    if "read" in out:
        out.append("read-current-user-privilege-set")
    if {"write-properties", "write-content", "bind", "unbind"} <= set(out):
        out.append("write")
    if "write" in out and "read" in out:
        out.append("all")
    return out


def calendar_privileges(actor: Actor, grants: Grants) -> list[str]:
    """The DAV privileges `actor` holds on a collection (current-user-privilege-set)."""
    return _privileges({r for _, r in DAV_PRIVILEGES if allowed(actor, r, grants)})


def calendar_acl(grants: Grants) -> list[tuple[str, str | None, list[str]]]:
    """The collection's ACL as (principal kind "owner" | "group" | "all", principal ref, privileges)."""
    aces: list[tuple[str, str | None, list[str]]] = []
    mask = grants.permission
    if grants.owner is not None:
        aces.append(("owner", grants.owner, _privileges({r for _, r in DAV_PRIVILEGES if mask & (r << OWNER_SHIFT)})))
    for group_ref, link in grants.groups:
        privileges = _privileges({r for _, r in DAV_PRIVILEGES if link & (r << GROUP_SHIFT)})
        if privileges:
            aces.append(("group", group_ref, privileges))
    public = _privileges({r for _, r in DAV_PRIVILEGES if mask & r})
    if public:
        aces.append(("all", None, public))
    return aces
