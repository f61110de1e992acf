"""Built-in actions (sign-up, sign-in, first administrator, schema upload) and their performers.

Privileges, stated where they are taken: `__signup` creates the user row and its `users` membership
with system rights (the action row's Execute permission is the gate); `__become_admin` rewrites
defaults once, only while no administrator exists; `__upload_schema` needs the caller to be an
administrator (or the server to be in its open, admin-less state).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import sqlalchemy as sa

from portside.actions import app_passwords
from portside.actions.registry import ActionContext, Response, notify, performers, response
from portside.auth import access, tokens
from portside.auth.login import login
from portside.auth.permissions import Actor
from portside.core import masks, records
from portside.core.catalog import admin_exists
from portside.core.model import MEMBERSHIP
from portside.core.schema import SchemaDoc, parse_document, parse_text
from portside.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Kind,
    PortsideError,
    TooManyRequests,
    Unauthorized,
)
from portside.realtime import topics
from portside.tools import jsonutil, names

SYSTEM = Actor(is_admin=True, name="system")
# actions that run as a guest whatever credential the request carries: a stale or revoked HttpOnly cookie
# (which the page cannot clear) must not stop anyone signing in again or signing out
CREDENTIAL_FREE = frozenset({("user_account", "signin"), ("user_account", "signout")})
MAX_SCHEMA_UPLOAD = 2 * 1024 * 1024

BUILTIN_ACTIONS: dict[str, Any] = {
    "Actions": [
        {
            "Name": "signup",
            "Label": "Sign up",
            "OnType": "user_account",
            "InstanceOptional": True,
            "InFields": [
                {"ColumnName": "name", "ColumnType": "label", "IsNullable": False},
                {"ColumnName": "email", "ColumnType": "email", "IsNullable": False},
                {"ColumnName": "mobile", "ColumnType": "label", "IsNullable": True},
                {"ColumnName": "password", "ColumnType": "password", "IsNullable": False},
                {"ColumnName": "passwordConfirm", "ColumnType": "password", "IsNullable": False},
            ],
            "Validations": [
                {"ColumnName": "email", "Tags": "email"},
                {"ColumnName": "name", "Tags": "required"},
                {"ColumnName": "password", "Tags": "eqfield=passwordConfirm,min=8"},
            ],
            "Conformations": [
                {"ColumnName": "email", "Tags": "email"},
                {"ColumnName": "name", "Tags": "trim"},
                {"ColumnName": "mobile", "Tags": "trim"},
            ],
            "OutFields": [
                {"Type": "__signup", "Method": "EXECUTE", "SkipInResponse": True, "Attributes": {}},
                {
                    "Type": "client.notify",
                    "Method": "ACTIONRESPONSE",
                    "Attributes": {
                        "type": "success",
                        "title": "Success",
                        "message": "Sign-up successful. Redirecting to sign in",
                    },
                },
                {
                    "Type": "client.redirect",
                    "Method": "ACTIONRESPONSE",
                    "Attributes": {"location": "/auth/signin", "window": "self", "delay": 2000},
                },
            ],
        },
        {
            "Name": "signin",
            "Label": "Sign in",
            "OnType": "user_account",
            "InstanceOptional": True,
            "InFields": [
                {"ColumnName": "email", "ColumnType": "email", "IsNullable": False},
                {"ColumnName": "password", "ColumnType": "password", "IsNullable": False},
            ],
            "Validations": [{"ColumnName": "email", "Tags": "email"}],
            "Conformations": [{"ColumnName": "email", "Tags": "email"}],
            "OutFields": [{"Type": "jwt.token", "Method": "EXECUTE", "Attributes": {}}],
        },
        {
            "Name": "signout",
            "Label": "Sign out",
            "OnType": "user_account",
            "InstanceOptional": True,
            # guests may run it: it must work with a stale, revoked or garbage cookie (see CREDENTIAL_FREE)
            "Permission": masks.DEFAULT_PERMISSION,
            "OutFields": [{"Type": "__signout", "Method": "EXECUTE", "Attributes": {}}],
        },
        {
            "Name": "become_an_administrator",
            "Label": "Become administrator",
            "OnType": "world",
            "InstanceOptional": True,
            "OutFields": [{"Type": "__become_admin", "Method": "EXECUTE", "Attributes": {}}],
        },
        {
            "Name": "publish_to_topic",
            "Label": "Publish to a topic",
            "OnType": "world",
            "InstanceOptional": True,
            # any signed-in user may run it; the topic's own rights decide the rest
            "Permission": masks.combine(masks.AUTH_EXECUTE, masks.guest(masks.PEEK)),
            "InFields": [
                {"ColumnName": "topicName", "ColumnType": "label", "IsNullable": False},
                {"ColumnName": "message", "ColumnType": "json", "IsNullable": False},
            ],
            "OutFields": [{"Type": "__publish_to_topic", "Method": "EXECUTE", "Attributes": {}}],
        },
        {
            "Name": "upload_system_schema",
            "Label": "Upload schema",
            "OnType": "world",
            "InstanceOptional": True,
            "InFields": [{"ColumnName": "schema_file", "ColumnType": "file.json|yaml", "IsNullable": False}],
            "OutFields": [{"Type": "__upload_schema", "Method": "EXECUTE", "Attributes": {}}],
        },
        app_passwords.ACTION,
    ]
}


def builtin_doc() -> SchemaDoc:
    return parse_document(BUILTIN_ACTIONS, "<builtin actions>")


@performers.register("__signup")
async def signup(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    a = ctx.attributes
    crud = ctx.services.crud
    password = a.get("password")
    if not isinstance(password, str) or not password.strip():
        raise BadRequest("password must not be empty or only whitespace", pointer="/attributes/password")
    email = names.email(str(a.get("email") or ""))
    values = {"name": a.get("name"), "email": email, "password": password, "confirmed": False}
    u = ctx.services.model.table("user_account").sa
    if await ctx.uow.conn.scalar(sa.select(u.c.id).where(u.c.email == values["email"])) is not None:
        raise Conflict("an account with this email already exists", kind=Kind.UNIQUE_VIOLATION)
    row = await crud.create(SYSTEM, "user_account", values, uow=ctx.uow)
    return [response("user_account", {"reference_id": row.ref})]


@performers.register("jwt.token")
async def signin(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    """The main password only (Daptin's sign-in); one login function for every protocol (auth/login.py),
    rate-limited per (account, address) and per address without lockout by others (auth/throttle.py)."""
    s = ctx.services
    found = await login(
        s.db,
        s.model,
        s.logins,
        identifier=str(ctx.attributes.get("email") or ""),
        secret=ctx.attributes.get("password"),
        address=ctx.client,
        protocol="http",
        uow=ctx.uow,
    )
    actor = found.actor
    assert actor.ref is not None
    token = tokens.issue(
        secret=s.jwt_secret,
        issuer=s.jwt_issuer,
        life_hours=s.token_life_hours,
        ref=actor.ref,
        email=actor.email,
        name=actor.name,
        auth_version=actor.auth_version,
    )
    ctx.cookies.append(("token", token))
    return [
        response("client.store.set", {"key": "token", "value": token}),
        response("client.cookie.set", {"key": "token", "value": f"{token}; SameSite=Strict"}),
        notify("success", "Success", "Logged in"),
        response("client.redirect", {"location": "/", "window": "self", "delay": 2000}),
    ]


@performers.register("__signout")
async def signout(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    """Clear the `token` cookie (the page cannot: it is HttpOnly). Tokens themselves stay valid until they
    expire; changing the password revokes them all."""
    ctx.cookies.append(("token", None))
    return [
        response("client.store.set", {"key": "token", "value": ""}),
        notify("success", "Success", "Signed out"),
    ]


@performers.register("__become_admin")
async def become_admin(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    s, uow, actor = ctx.services, ctx.uow, ctx.actor
    if actor.user_id is None:
        raise Unauthorized("sign in first")
    model = s.model
    g = model.table("usergroup").sa
    # "nobody is an administrator yet" and the grant are one decision on every database and node: the
    # administrators group row is locked (row lock; on SQLite the database write lock) before the check,
    # and the check is a locking read, so it sees a grant committed while this transaction waited
    await uow.conn.execute(g.update().where(g.c.name == masks.ADMIN_GROUP).values(version=g.c.version))
    if await admin_exists(uow.conn, model, lock=True):
        raise Forbidden("an administrator already exists")
    # one transaction: join the administrators group, lock the open defaults, then claim ownerless rows
    admin_gid = await uow.conn.scalar(sa.select(g.c.id).where(g.c.name == masks.ADMIN_GROUP))
    if admin_gid is None:  # the group was deleted: recreate it (its unique name makes a racing twin fail)
        created = await records.insert(
            uow,
            model,
            model.table("usergroup"),
            {"name": masks.ADMIN_GROUP},
            permission=masks.DEFAULT_PERMISSION,
            actor=actor.ref,
        )
        admin_gid = created.id
    await records.insert(
        uow,
        model,
        model.table(MEMBERSHIP),
        {"user_account_id": actor.user_id, "usergroup_id": admin_gid},
        permission=masks.DEFAULT_PERMISSION,
        actor=actor.ref,
    )
    w = model.table("world")
    for row in await records.fetch(uow.conn, model, w):
        values: dict[str, Any] = {}
        if row.grants.permission == masks.ALLOW_ALL:
            values["permission"] = masks.DEFAULT_PERMISSION
        raw = row.attrs.get("world_schema_json")
        try:
            decl = jsonutil.loads(raw) if isinstance(raw, str) and raw else None
        except jsonutil.JSONError:
            decl = None
        if isinstance(decl, dict) and decl.get("DefaultPermission") in (0, None, masks.ALLOW_ALL):
            decl["DefaultPermission"] = masks.DEFAULT_PERMISSION
            values["world_schema_json"] = jsonutil.dumps_str(decl)
        if values:
            await records.update(uow, model, w, row.id, values, actor=actor.ref)
    a = model.table("action")
    for row in await records.fetch(uow.conn, model, a):
        if row.grants.permission == masks.ALLOW_ALL:
            name = row.attrs.get("action_name")
            perm = masks.DEFAULT_PERMISSION if name == "signin" else masks.ACTION_DEFAULT
            await records.update(uow, model, a, row.id, {"permission": perm}, actor=actor.ref)

    for tm in model.tables.values():
        t = tm.sa
        if tm.owner:
            ownerless = await uow.conn.execute(sa.select(t.c.id).where(t.c.user_account_id.is_(None)))
            for (rid,) in ownerless.all():
                perm = masks.DEFAULT_PERMISSION
                await records.update(
                    uow,
                    model,
                    tm,
                    rid,
                    {
                        "user_account_id": actor.user_id,
                        "permission": sa.case((t.c.permission == masks.ALLOW_ALL, perm), else_=t.c.permission),
                    },
                    actor=actor.ref,
                )

    async def locked() -> None:
        s.catalog.open_mode = False
        await s.catalog.reload()

    uow.on_commit(locked)
    return [
        notify("success", "Success", "You are now an administrator"),
        response("client.redirect", {"location": "/", "window": "self", "delay": 2000}),
    ]


def _decode_file(item: Any) -> tuple[str, bytes]:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise BadRequest("schema_file must be a list of {name, file} objects", pointer="/attributes/schema_file")
    data = item.get("file") or item.get("contents") or ""
    if not isinstance(data, str):
        raise BadRequest("schema_file content must be base64 text", pointer="/attributes/schema_file")
    if data.startswith("data:"):
        data = data.split(",", 1)[-1]
    if len(data) > MAX_SCHEMA_UPLOAD * 4 // 3 + 4:
        raise BadRequest("schema file too large", pointer="/attributes/schema_file")
    try:
        return item["name"], base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        raise BadRequest("schema_file content is not valid base64", pointer="/attributes/schema_file") from None


@performers.register("__upload_schema")
async def upload_schema(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    s = ctx.services
    if not access.may_administer(ctx.actor, open_mode=s.catalog.open_mode):
        raise Forbidden("only administrators may change the schema")
    files = ctx.attributes.get("schema_file")
    if isinstance(files, str):
        try:
            files = jsonutil.loads(files)
        except jsonutil.JSONError:
            raise BadRequest("schema_file must be a JSON list", pointer="/attributes/schema_file") from None
    if not isinstance(files, list) or not files:
        raise BadRequest("schema_file must be a non-empty list of files", pointer="/attributes/schema_file")
    docs = [parse_text(content, name) for name, content in (_decode_file(f) for f in files[:10])]
    merged = SchemaDoc(source="upload")
    for d in docs:
        merged.tables += d.tables
        merged.relations += d.relations
        merged.actions += d.actions
    s.catalog.check(merged)  # SchemaError (400) now, before anything is written

    async def apply() -> list[Response]:
        # after the action's transaction: applying migrates and writes world/action rows itself
        await s.catalog.apply(merged, ctx.actor.ref)
        names = ", ".join(t.table_name for t in merged.tables) or "no tables"
        return [notify("success", "Success", f"Schema applied: {names}")]

    ctx.post.append(apply)
    return []


__all__ = ["CREDENTIAL_FREE", "SYSTEM", "TooManyRequests", "builtin_doc"]


@performers.register("__publish_to_topic")
async def publish_to_topic(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    """Publish `message` to a table topic (needs Create on the table) or a user topic (needs Execute on it),
    checked for the caller: no escalation."""
    s, actor = ctx.services, ctx.actor
    if actor.user_id is None:
        raise Unauthorized("sign in to publish")
    name, message = ctx.attributes.get("topicName"), ctx.attributes.get("message")
    if isinstance(message, str):
        try:
            message = jsonutil.loads(message)
        except jsonutil.JSONError:
            message = None
    if not isinstance(name, str) or not name or "," in name:
        raise BadRequest("missing or invalid topicName", pointer="/attributes/topicName")
    if not isinstance(message, dict):
        raise BadRequest("message must be a JSON object", pointer="/attributes/message")
    tm = s.model.tables.get(name)
    if tm is None:
        try:
            await topics.user_topic(s.db, s.model, actor, name, masks.EXECUTE, suffix=False)
        except topics.TopicError as exc:
            raise PortsideError(f"{exc}: {name}", kind=exc.kind) from None
    else:
        await s.crud.gate(ctx.uow.conn, actor, tm, masks.CREATE)
    event = await topics.publish_in(ctx.uow, actor, name, message)
    return [
        notify("success", "Success", f"Published to {name}"),
        response("action.response", {"topic": name, "offset": event.offset}),
    ]
