"""Every rights decision, by name. Edges and services ask here; none carries its own mask logic.

The mask model itself (bit layout, `allowed`, SQL visibility) is `auth.permissions`; this module names the
decisions made with it, so a protocol asks "may this caller edit this document?" rather than testing bits.

Decided here today: the table gate's administrator bypass, a row right and row visibility, user topics
(read, publish, change their permission), which /live subscribers may read an event, a Yjs document's mode
(read-write or read-only), administrator-only surfaces (config, /_ports, /live stats, schema changes,
certificate generation), and the user-account special cases of the row layer (a new account owns itself, a
password change revokes older tokens, deleting an account: who inherits its rows and which go with it).

Design for the protocols that come (each gets one function here, used by its edge and by nothing else):
- `mailbox_right(actor, mailbox_row, right)`: a mailbox is a row (owner + groups), so IMAP SELECT needs
  READ, APPEND/COPY into it CREATE, STORE flags UPDATE, EXPUNGE DELETE, on that row's grants.
- `site_right(actor, site_grants, right)` (done): FTP/DAV/HTTP paths inside a site resolve to the site row;
  listing needs PEEK, download READ, upload CREATE/UPDATE, delete DELETE. Where a site may point
  (`may_publish_store`: Update on the store) and which hostnames a user may give it
  (`may_claim_any_hostname`) are decided here too (actions/site_rows.py asks).
- `calendar_right(actor, gates, grants, right)` (done): CalDAV/CardDAV collections are rows; PROPFIND PEEK,
  GET/REPORT READ, PUT CREATE/UPDATE, DELETE DELETE; the DAV edge maps a refusal to 403 + precondition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from portside.auth.permissions import (
    CREATE,
    DELETE,
    GROUP_SHIFT,
    OWNER_SHIFT,
    PEEK,
    READ,
    UPDATE,
    Actor,
    Audience,
    allowed,
    audience,
)
from portside.core.events import Grants
from portside.core.model import MEMBERSHIP
from portside.errors import Conflict

ACCOUNT_TABLE = "user_account"
MAIL_ACCOUNT_TABLE = "mail_account"
# rows that are a user's credentials (application passwords): deleted with the user, not passed to the heir
PERSONAL_TABLES = ("app_password",)
# tables whose changes change who a user is (password/auth version, group membership): the session registry
# re-checks the user's sessions on them; other watchers leave them alone
IDENTITY_TABLES = frozenset({ACCOUNT_TABLE, MEMBERSHIP})
# guests see the sign-up/sign-in/sign-out actions of user accounts in the action listing
GUEST_ACTIONS = frozenset({(ACCOUNT_TABLE, "signup"), (ACCOUNT_TABLE, "signin"), (ACCOUNT_TABLE, "signout")})

Mode = Literal["rw", "ro"]


def administers(actor: Actor) -> bool:
    """Administrators pass every gate and may use the administrator-only surfaces."""
    return actor.is_admin


def owns_or_administers(actor: Actor, owner_ref: str | None) -> bool:
    """The caller is the owner named (a user's own home, principal or collection) or an administrator."""
    return actor.is_admin or (owner_ref is not None and owner_ref == actor.ref)


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


def site_right(actor: Actor, site_grants: Grants, right: int) -> bool:
    """A right on a site (and so on every path inside it): FTP and the site's HTTP pages ask here. Only the
    site row's own grants count (no per-file rights): listing needs PEEK/READ, download READ, a new file or
    folder CREATE, overwrite and rename UPDATE, delete DELETE, a visit over HTTP EXECUTE."""
    return allowed(actor, right, site_grants)


def may_publish_store(actor: Actor, store_grants: Grants) -> bool:
    """A site (an HTTP and FTP view of a store folder) may be placed on a store, or moved within it, by
    whoever may change that store's files: Update on the `cloud_store` row (as Daptin's `create_site`)."""
    return allowed(actor, UPDATE, store_grants)


def may_claim_any_hostname(actor: Actor) -> bool:
    """Administrators may give a site any hostname (even one another site or the server itself uses);
    other users only names no other site holds and that are not the server's own."""
    return actor.is_admin


def document_mode(actor: Actor, row_grants: Grants, *, table_allows_update: bool) -> Mode:
    """A row-bound Yjs document: read-write when the caller may update the row and the table lets them."""
    return "rw" if allowed(actor, UPDATE, row_grants) and table_allows_update else "ro"


def may_see(actor: Actor, grants: Grants) -> bool:
    """A row exists for the caller (peek or read); a row they may not see is answered as missing."""
    return allowed(actor, PEEK, grants) or allowed(actor, READ, grants)


def may_read_event(actor: Actor, grants: Grants) -> bool:
    """A /live subscriber (or replay) receives an event of a row or topic with these grants."""
    return allowed(actor, READ, grants)


def may_follow_table(actor: Actor, gate_grants: Grants) -> bool:
    """A /live subscriber may (still) follow a table topic with this table gate."""
    return allowed(actor, PEEK, gate_grants)


def event_readers(grants: Grants) -> Audience:
    """Who could read an event with these grants (the candidates `may_read_event` is then asked about)."""
    return audience(READ, grants)


def owns_itself(table: str) -> bool:
    """A new row of this table is owned by itself (a user account owns its own row unless an administrator
    names another owner)."""
    return table == ACCOUNT_TABLE


def revokes_tokens(table: str, values: Mapping[str, Any]) -> bool:
    """This write changes a password without setting the auth version: older tokens must stop working."""
    return table == ACCOUNT_TABLE and "password" in values and "auth_version" not in values


def deletion_heir(actor: Actor, table: str, row_id: int) -> int | None:
    """Deleting this row: the user id that inherits the rows it owns (a deleted account's rows pass to the
    administrator deleting it), or None. Deleting one's own account is refused (409)."""
    if table != ACCOUNT_TABLE:
        return None
    if row_id == actor.user_id:
        raise Conflict("you cannot delete your own account")
    return actor.user_id


def own_account_ref(actor: Actor, table: str, ref: str) -> str:
    """`/api/user_account/mine` addresses the caller's own account."""
    return actor.ref if table == ACCOUNT_TABLE and ref == "mine" and actor.ref is not None else ref


# tables whose changes may change what a password or application password opens (login caches drop them)
CREDENTIAL_TABLES = frozenset({ACCOUNT_TABLE, MAIL_ACCOUNT_TABLE, *PERSONAL_TABLES})


def changes_credentials(table: str) -> bool:
    """A change to this table may change which credentials are valid (a cached login must be checked again)."""
    return table in CREDENTIAL_TABLES


def changes_identity(table: str) -> bool:
    """A change to this table changes who a user is (handled by the session registry)."""
    return table in IDENTITY_TABLES


def guest_action(on_type: str, name: str) -> bool:
    """The action is listed for guests (`GET /actions`)."""
    return (on_type, name) in GUEST_ACTIONS


# -- CalDAV / CardDAV collections ------------------------------------------------------------------------
# The table gates (`collection`, and `calendar` for objects) and then the collection row's grants decide
# everything about it and its objects, as /api would: PROPFIND needs PEEK (or READ), GET/REPORT READ, PUT of a
# new object CREATE, PUT over one and PROPPATCH UPDATE, DELETE DELETE.

# DAV privilege (RFC 3744) -> the Portside right it needs
DAV_PRIVILEGES: tuple[tuple[str, int], ...] = (
    ("read", READ),
    ("write-properties", UPDATE),
    ("write-content", UPDATE),
    ("bind", CREATE),
    ("unbind", DELETE),
)


@dataclass(frozen=True)
class CalendarGates:
    """The table gates DAV passes like /api does: the `collection` and the `calendar` (objects) tables'
    `world` rows (None: the table has no gate row, so only administrators pass)."""

    collection: Grants | None
    objects: Grants | None


def _gate_right(right: int) -> int:
    # /api lists and reads behind the gate's PEEK; writes need the gate's CREATE/UPDATE/DELETE
    return PEEK if right in (PEEK, READ) else right


def _through_gate(actor: Actor, gate: Grants | None, right: int) -> bool:
    if actor.is_admin:
        return True
    return gate is not None and allowed(actor, _gate_right(right), gate)


def calendar_right(actor: Actor, gates: CalendarGates, grants: Grants, right: int, *, objects: bool = True) -> bool:
    """May `actor` use `right` on a calendar or address book with these grants: on the collection itself
    (`objects=False`: PROPFIND, PROPPATCH, delete) or on its objects (GET, REPORT, PUT, DELETE, COPY/MOVE)?
    As /api decides: the `collection` table gate (and for objects the `calendar` table gate) AND the
    collection row's grants."""
    if not _through_gate(actor, gates.collection, PEEK if objects else right):
        return False
    if objects and not _through_gate(actor, gates.objects, right):
        return False
    if right == PEEK:
        return allowed(actor, PEEK, grants) or allowed(actor, READ, grants)
    return allowed(actor, right, grants)


def may_make_collection(actor: Actor, gates: CalendarGates, owner_ref: str | None) -> bool:
    """MKCOL/MKCALENDAR in a home set: its owner (or an administrator), through the collection gate's CREATE."""
    return owns_or_administers(actor, owner_ref) and _through_gate(actor, gates.collection, CREATE)


def _privileges(has: set[int]) -> list[str]:
    out = [name for name, right in DAV_PRIVILEGES if right in has]
    if "read" in out:
        out.append("read-current-user-privilege-set")
    if {"write-properties", "write-content", "bind", "unbind"} <= set(out):
        out.append("write")
    if "write" in out and "read" in out:
        out.append("all")
    return out


def calendar_privileges(actor: Actor, gates: CalendarGates, grants: Grants) -> list[str]:
    """The DAV privileges `actor` holds on a collection (current-user-privilege-set), table gates included."""
    return _privileges({r for _, r in DAV_PRIVILEGES if calendar_right(actor, gates, grants, r)})


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


def may_read_mailbox(actor: Actor, grants: Grants) -> bool:
    """A mailbox (and the mail in it) is read by its owner, the mail account's owner (and administrators)."""
    return allowed(actor, READ, grants)


def may_send_as(actor: Actor, account_owner_ref: str | None) -> bool:
    """Sending mail from an address (mail.send, SMTP submission): the owner of its mail account, or an
    administrator."""
    if actor.is_admin:
        return True
    return actor.ref is not None and account_owner_ref is not None and actor.ref == account_owner_ref
