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

from portside.auth.permissions import READ, UPDATE, Actor, allowed
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


def may_read_mailbox(actor: Actor, grants: Grants) -> bool:
    """A mailbox (and the mail in it) is read by its owner, the mail account's owner (and administrators)."""
    return allowed(actor, READ, grants)
