"""Client attributes → DB values for one table: conform, validate, convert, resolve references."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from portside.auth import access, writes
from portside.auth.permissions import REFER, Actor
from portside.core import db_errors, fieldtypes, masks, records, validation
from portside.core.db_errors import Fault
from portside.core.model import OWNER_COLUMN, STANDARD, Model, TableModel
from portside.core.records import RowData
from portside.errors import BadRequest, Conflict, Forbidden, Kind, NotFound, PortsideError, Unavailable
from portside.tools import names
from portside.tools.ids import parse_uuid

INVALID = Kind.VALIDATION_FAILED  # a value for a column is not acceptable
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
        raise BadRequest(f"expected a {target} reference id", pointer=pointer, kind=INVALID)
    tm = model.table(target)
    row = await records.fetch_one(conn, model, tm, ref=ref)
    if row is None:
        raise NotFound(f"no {target} with id {ref}", kind=Kind.ROW_NOT_FOUND)
    if not access.may(actor, REFER, row.grants):
        raise Forbidden(f"not allowed to refer to {target} {ref}")
    return row.id


def group_name(raw: str) -> str:
    """A usergroup name: NFC and exact (`tools.names`); a look-alike of `administrators` is refused."""
    try:
        name = names.identifier(raw, "usergroup name")
    except names.BadName as exc:
        raise BadRequest(str(exc), pointer=_pointer("name"), kind=INVALID) from None
    if names.lookalike_of(name, (masks.ADMIN_GROUP,)) is not None:
        raise BadRequest(f"usergroup name imitates {masks.ADMIN_GROUP!r}", pointer=_pointer("name"), kind=INVALID)
    return name


async def to_values(
    conn: AsyncConnection,
    model: Model,
    tm: TableModel,
    actor: Actor,
    attrs: Any,
    *,
    partial: bool,
    secret: str,
    current: RowData | None = None,
) -> dict[str, Any]:
    """Validated DB values for the attributes a client sent; BadRequest names the offending attribute.

    Every attribute sent is either applied or refused (a 2xx never drops a value): unknown names are 400;
    read-only ones (`reference_id`, timestamps, ...) are accepted only as an echo of the row's current
    value (`current`, on update); `permission` and the owner column are applied; columns the caller may
    not set are refused by `auth.writes` (403). On create, `reference_id` is taken by the caller (crud).
    """
    if not isinstance(attrs, dict):
        raise BadRequest("attributes must be an object", pointer="/data/attributes")
    attrs = validation.conform(tm.decl.conformations, attrs)
    owner = OWNER_COLUMN if tm.owner else None
    for name in attrs:
        if not isinstance(name, str) or (name not in tm.columns and name not in READ_ONLY and name != owner):
            raise BadRequest(f"unknown attribute {name!r} for {tm.name}", pointer=_pointer(str(name)))
        if name in READ_ONLY and not _echo(tm, name, attrs[name], current):
            raise BadRequest(f"{name} is read-only", pointer=_pointer(name))
    writes.check_columns(actor, tm, [n for n in attrs if n not in READ_ONLY])
    try:
        validation.validate(tm.decl.validations, attrs, partial=partial)
    except fieldtypes.FieldError as exc:
        raise BadRequest(str(exc), pointer=_pointer(exc.column), kind=INVALID) from None
    if tm.name == "usergroup" and isinstance(attrs.get("name"), str):
        attrs["name"] = group_name(attrs["name"])
    values: dict[str, Any] = {}
    heavy: list[tuple[str, Any]] = []
    for name, raw in attrs.items():
        if name in READ_ONLY:
            continue
        if name == "permission":
            values[name] = permission_value(raw)
            continue
        col = tm.columns[name]
        target = tm.fks.get(name)
        if target is not None:  # FK columns, the owner column of owned tables included
            values[name] = await resolve_ref(conn, model, actor, target, raw, _pointer(name))
            continue
        if col.column_type.strip().lower() in fieldtypes.HASHED_TYPES and (not isinstance(raw, str) or not raw.strip()):
            detail = f"{name} must be a non-empty string (omit it to leave it unchanged)"
            raise BadRequest(detail, pointer=_pointer(name), kind=INVALID)
        if raw is None and not col.is_nullable:
            raise BadRequest(f"{name} cannot be null", pointer=_pointer(name), kind=INVALID)
        if fieldtypes.needs_thread(col):
            heavy.append((name, raw))
            continue
        try:
            values[name] = fieldtypes.to_db(col, raw, secret=secret)
        except fieldtypes.FieldError as exc:
            raise BadRequest(str(exc), pointer=_pointer(name), kind=INVALID) from None
    for name, raw in heavy:
        try:
            values[name] = await asyncio.to_thread(fieldtypes.to_db, tm.columns[name], raw, secret=secret)
        except fieldtypes.FieldError as exc:
            raise BadRequest(str(exc), pointer=_pointer(name), kind=INVALID) from None
    if not partial:
        for col in tm.columns.values():
            name = col.column_name
            if name in values or name in STANDARD or name == owner:
                continue
            if col.default_value is not None:
                default = fieldtypes.default_for_insert(col)
                if default is not None:
                    values[name] = default
            elif not col.is_nullable and not col.exclude_from_api:
                raise BadRequest(f"{name} is required", pointer=_pointer(name), kind=INVALID)
    return values


def _echo(tm: TableModel, name: str, value: Any, current: RowData | None) -> bool:
    """A read-only attribute is accepted when it only repeats what the row already has."""
    if name == "__type":
        return bool(value == tm.name)
    if current is None:
        return name == "reference_id"  # on create: the client-chosen id (crud checks it)
    return name in current.attrs and bool(value == current.attrs[name])


def permission_value(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise BadRequest("permission must be an integer", pointer=_pointer("permission"), kind=INVALID)
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest("permission must be an integer", pointer=_pointer("permission"), kind=INVALID) from None
    if not masks.is_mask(value):
        raise BadRequest("permission must be between 0 and 4194303", pointer=_pointer("permission"), kind=INVALID)
    return value


def translate_db_error(exc: Exception) -> PortsideError:
    """The client-visible error for a database error, decided by its driver code (`core.db_errors`). An
    error that is not a known fault is re-raised: a bug or an outage is an internal error, not bad input."""
    fault = db_errors.classify(exc)
    if fault is Fault.UNIQUE:
        return Conflict("a row with the same unique value already exists", kind=Kind.UNIQUE_VIOLATION)
    if fault is Fault.FOREIGN_KEY:
        return Conflict("the write conflicts with existing data")
    if fault is Fault.NOT_NULL:
        return BadRequest("a required value is missing", kind=INVALID)
    if fault in (Fault.OUT_OF_RANGE, Fault.CHECK):
        return BadRequest("the database rejected a value (too long or of the wrong type)", kind=INVALID)
    if fault in (Fault.LOCKED, Fault.RETRY):
        return Unavailable("the database is busy; try again", retry_after=1)
    if isinstance(exc, IntegrityError):  # a constraint of a kind not listed in core.db_errors
        return Conflict("the write conflicts with existing data")
    if isinstance(exc, DataError):
        return BadRequest("the database rejected a value", kind=INVALID)
    raise exc
