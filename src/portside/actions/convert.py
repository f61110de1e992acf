"""Client attributes → DB values for one table: conform, validate, convert, resolve references."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from portside.auth.permissions import REFER, Actor, allowed
from portside.core import fieldtypes, masks, records, validation
from portside.core.model import Model, TableModel
from portside.errors import BadRequest, Conflict, Forbidden, NotFound, PortsideError
from portside.tools import names
from portside.tools.ids import parse_uuid

READ_ONLY = frozenset({"__type", "id", "reference_id", "created_at", "updated_at", "version"})


def _pointer(name: str) -> str:
    return f"/data/attributes/{name}"


async def resolve_ref(
    conn: AsyncConnection, model: Model, actor: Actor, target: str, value: Any, pointer: str
) -> int | None:
    """A reference to a row of `target` → its integer id, after checking Refer on that row."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):  # {"type": ..., "id": ...} resource identifier
        value = value.get("id")
    ref = parse_uuid(value)
    if ref is None:
        raise BadRequest(f"expected a {target} reference id", pointer=pointer)
    tm = model.table(target)
    row = await records.fetch_one(conn, model, tm, ref=ref)
    if row is None:
        raise NotFound(f"no {target} with id {ref}")
    if not allowed(actor, REFER, row.grants):
        raise Forbidden(f"not allowed to refer to {target} {ref}")
    return row.id


def group_name(raw: str) -> str:
    """A usergroup name: NFC and exact (`tools.names`); a look-alike of `administrators` is refused."""
    try:
        name = names.identifier(raw, "usergroup name")
    except names.BadName as exc:
        raise BadRequest(str(exc), pointer=_pointer("name")) from None
    if names.lookalike_of(name, (masks.ADMIN_GROUP,)) is not None:
        raise BadRequest(f"usergroup name imitates {masks.ADMIN_GROUP!r}", pointer=_pointer("name"))
    return name


async def to_values(
    conn: AsyncConnection, model: Model, tm: TableModel, actor: Actor, attrs: Any, *, partial: bool, secret: str
) -> dict[str, Any]:
    """Validated DB values for the attributes a client sent; BadRequest names the offending attribute."""
    if not isinstance(attrs, dict):
        raise BadRequest("attributes must be an object", pointer="/data/attributes")
    attrs = validation.conform(tm.decl.conformations, attrs)
    for name in attrs:
        if not isinstance(name, str) or (name not in tm.columns and name not in READ_ONLY):
            raise BadRequest(f"unknown attribute {name!r} for {tm.name}", pointer=_pointer(str(name)))
    try:
        validation.validate(tm.decl.validations, attrs, partial=partial)
    except fieldtypes.FieldError as exc:
        raise BadRequest(str(exc), pointer=_pointer(exc.column)) from None
    if tm.name == "usergroup" and isinstance(attrs.get("name"), str):
        attrs["name"] = group_name(attrs["name"])
    values: dict[str, Any] = {}
    heavy: list[tuple[str, Any]] = []
    for name, raw in attrs.items():
        if name in READ_ONLY or name in ("permission", "user_account_id"):
            continue
        col = tm.columns[name]
        if col.exclude_from_api:
            continue
        target = tm.fks.get(name)
        if target is not None:
            values[name] = await resolve_ref(conn, model, actor, target, raw, _pointer(name))
            continue
        if partial and raw == "" and col.column_type in ("password", "bcrypt"):
            continue  # a client echoing back the "" it was given leaves the password alone
        if raw is None and not col.is_nullable:
            raise BadRequest(f"{name} cannot be null", pointer=_pointer(name))
        if fieldtypes.needs_thread(col):
            heavy.append((name, raw))
            continue
        try:
            values[name] = fieldtypes.to_db(col, raw, secret=secret)
        except fieldtypes.FieldError as exc:
            raise BadRequest(str(exc), pointer=_pointer(name)) from None
    for name, raw in heavy:
        try:
            values[name] = await asyncio.to_thread(fieldtypes.to_db, tm.columns[name], raw, secret=secret)
        except fieldtypes.FieldError as exc:
            raise BadRequest(str(exc), pointer=_pointer(name)) from None
    if not partial:
        for col in tm.columns.values():
            name = col.column_name
            if name in values or name in records.SERVER_SET:
                continue
            if col.default_value is not None:
                default = fieldtypes.default_for_insert(col)
                if default is not None:
                    values[name] = default
            elif not col.is_nullable and not col.exclude_from_api:
                raise BadRequest(f"{name} is required", pointer=_pointer(name))
    return values


def permission_value(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise BadRequest("permission must be an integer", pointer=_pointer("permission"))
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest("permission must be an integer", pointer=_pointer("permission")) from None
    if not masks.is_mask(value):
        raise BadRequest("permission must be between 0 and 4194303", pointer=_pointer("permission"))
    return value


def translate_db_error(exc: Exception) -> PortsideError:
    if isinstance(exc, IntegrityError):
        text = str(exc.orig).lower()
        if "unique" in text or "duplicate" in text:
            return Conflict("a row with the same unique value already exists")
        if "null" in text:
            return BadRequest("a required value is missing")
        return Conflict("the write conflicts with existing data")
    return BadRequest("the database rejected a value (too long or of the wrong type)")
