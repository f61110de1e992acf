"""`user_account/create_app_password`: a new application password for the caller (auth/login.py).

The secret is returned once, in the action response (`action.response` with `name`, `reference_id` and
`secret`); only its SHA-256 is stored. The row is the caller's whatever instance the request names, and
the `app_password` listing shows the caller's own rows without the hash. Deleting the row revokes the
secret and ends the sessions that logged in with it (auth/sessions.py).
"""

from __future__ import annotations

from typing import Any

from portside.actions.registry import ActionContext, Response, notify, performers, response
from portside.auth.login import new_app_password
from portside.auth.sessions import APP_PASSWORD_TABLE
from portside.core import masks, records
from portside.core.model import OWNER_COLUMN
from portside.errors import BadRequest, Unauthorized
from portside.tools import names

MAX_NAME = 100
MAX_PER_USER = 100

ACTION: dict[str, Any] = {
    "Name": "create_app_password",
    "Label": "Create an application password",
    "OnType": "user_account",
    "InstanceOptional": True,
    "Permission": masks.combine(masks.AUTH_EXECUTE, masks.guest(masks.PEEK)),  # any signed-in user, for themselves
    "InFields": [{"ColumnName": "name", "ColumnType": "label", "IsNullable": False}],
    "OutFields": [{"Type": "__create_app_password", "Method": "EXECUTE", "Attributes": {}}],
}


@performers.register("__create_app_password")
async def create_app_password(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    s, actor = ctx.services, ctx.actor
    if actor.user_id is None or actor.ref is None:
        raise Unauthorized("sign in to create an application password")
    raw = ctx.attributes.get("name")
    if not isinstance(raw, str):
        raise BadRequest("name is required", pointer="/attributes/name")
    try:
        name = names.identifier(raw, "name", MAX_NAME)
    except names.BadName as exc:
        raise BadRequest(str(exc), pointer="/attributes/name") from None
    tm = s.model.table(APP_PASSWORD_TABLE)
    mine = tm.sa.c[OWNER_COLUMN] == actor.user_id
    if await records.count(ctx.uow.conn, tm, mine) >= MAX_PER_USER:
        raise BadRequest(f"at most {MAX_PER_USER} application passwords per user", pointer="/attributes/name")
    ref, secret, hashed = new_app_password()
    groups = [(g.name, g.permission or s.catalog.default_permission(tm.decl)) for g in tm.decl.default_groups]
    await records.insert(
        ctx.uow,
        s.model,
        tm,
        {"name": name, "secret_hash": hashed, OWNER_COLUMN: actor.user_id},
        permission=s.catalog.default_permission(tm.decl),
        actor=actor.ref,
        ref=ref,
        groups=groups,
    )
    return [
        response("action.response", {"name": name, "reference_id": ref, "secret": secret}),
        notify("success", "Success", f"Application password {name!r} created: copy it now, it is not shown again"),
    ]
