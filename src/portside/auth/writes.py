"""Which columns, links and deletes a non-administrator may write: decided here, for every port.

Row rights (auth.permissions) say whether a caller may update or delete a row at all; this module says
what they may change in it. Administrators may write everything. Everyone else:

- identity rows: on `user_account` rows `permission`, `confirmed`, `auth_version` and the owner column,
  on `usergroup` rows `permission`, and group memberships (rows of the membership join table, the
  `usergroup_id` relationship of a user) are administrator-only; so is deleting a user, a group or a
  membership;
- gate rows: `world` and `action` rows (table gates, schema, action permissions) and their group links
  are administrator-only, whole;
- `task.as_user_id` (a task runs as that user) is administrator-only;
- hidden columns (ExcludeFromApi) of any table are administrator-only;
- the owner column of a new row may name only the caller.

A refused write is a 403 naming the column and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from portside.auth.permissions import Actor
from portside.core.model import MEMBERSHIP, OWNER_COLUMN, TableModel
from portside.errors import Forbidden

GATE_TABLES = frozenset({"world", "action"})


def _group_join(table: str) -> str:
    return f"{table}_{table}_id_has_usergroup_usergroup_id"


# tables no non-administrator writes at all (create, update, delete, links)
ADMIN_ONLY_TABLES = frozenset({MEMBERSHIP, *GATE_TABLES, *(_group_join(t) for t in GATE_TABLES)})
# columns of system tables only administrators set (create and update)
ADMIN_ONLY_COLUMNS: dict[str, frozenset[str]] = {
    "user_account": frozenset({"permission", "confirmed", "auth_version", OWNER_COLUMN}),
    "usergroup": frozenset({"permission"}),
    "task": frozenset({"as_user_id"}),
    "app_password": frozenset({"last_used", OWNER_COLUMN}),
}
# to-many relationships (join tables to usergroup) only administrators change
ADMIN_ONLY_LINKS: dict[str, frozenset[str]] = {t: frozenset({"usergroup_id"}) for t in ("user_account", *GATE_TABLES)}
# rows only administrators delete
ADMIN_ONLY_DELETE = frozenset({"user_account", "usergroup", *ADMIN_ONLY_TABLES})


def _pointer(name: str) -> str:
    return f"/data/attributes/{name}"


def check_columns(actor: Actor, tm: TableModel, names: Iterable[str]) -> None:
    """Refuse (403) a write of any of `names` to a row of `tm` that `actor` may not set."""
    if actor.is_admin:
        return
    table = tm.name
    if table in ADMIN_ONLY_TABLES:
        raise Forbidden(f"only administrators may write {table}")
    blocked = ADMIN_ONLY_COLUMNS.get(table, frozenset())
    for name in names:
        col = tm.columns.get(name)
        if name in blocked or (col is not None and col.exclude_from_api):
            raise Forbidden(f"only administrators may set {name} on {table}", pointer=_pointer(name))


def check_owner(actor: Actor, owner_id: int | None) -> None:
    """A non-administrator's new row may be owned only by the caller."""
    if not actor.is_admin and owner_id != actor.user_id:
        raise Forbidden("only administrators may create rows owned by someone else", pointer=_pointer(OWNER_COLUMN))


def check_links(actor: Actor, tm: TableModel, names: Iterable[str]) -> None:
    """Refuse (403) a change to the named to-many relationships of a `tm` row."""
    if actor.is_admin:
        return
    if tm.name in ADMIN_ONLY_TABLES:
        raise Forbidden(f"only administrators may write {tm.name}")
    blocked = ADMIN_ONLY_LINKS.get(tm.name, frozenset())
    for name in names:
        if name in blocked:
            detail = f"only administrators may change {name} of {tm.name}"
            raise Forbidden(detail, pointer=f"/data/relationships/{name}")


def check_delete(actor: Actor, tm: TableModel) -> None:
    if not actor.is_admin and tm.name in ADMIN_ONLY_DELETE:
        raise Forbidden(f"only administrators may delete {tm.name} rows")
