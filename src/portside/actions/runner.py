"""Run an action: gates, subject, in-field checks, then each outcome in order in one transaction.

Outcomes run as the caller: a CRUD outcome needs the same rights the caller would need through the API.
Built-in performers that must do more (sign-up, first administrator) say so where they are defined.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from portside.actions import expressions
from portside.actions.convert import translate_db_error
from portside.actions.registry import ActionContext, Response, response
from portside.actions.services import Services
from portside.auth import access
from portside.auth.permissions import EXECUTE, READ, Actor
from portside.core import fieldtypes, records, validation
from portside.core.schema import ActionDef, Outcome
from portside.errors import BadRequest, Forbidden, Kind, NotFound
from portside.tools import jsonutil
from portside.tools.ids import parse_uuid

FORCED_RESPONSE = {"client.notify", "client.redirect", "client.store.set", "client.cookie.set", "action.response"}


@dataclass
class ActionResult:
    responses: list[Response]
    status: int = 200
    cookies: list[tuple[str, str | None]] = field(default_factory=list)


async def _gate(services: Services, ctx: ActionContext, act: ActionDef) -> None:
    actor = ctx.actor
    if access.administers(actor):
        return
    model = services.model
    w, a = model.table("world"), model.table("action")
    conn = ctx.uow.conn
    world = await records.fetch(conn, model, w, w.sa.c.table_name == act.on_type)
    if not world or not access.may(actor, EXECUTE, world[0].grants):
        raise Forbidden(f"not allowed to run actions on {act.on_type}")
    rows = await records.fetch(conn, model, a, sa.and_(a.sa.c.action_name == act.name, a.sa.c.world_id == world[0].id))
    if not rows or not access.may(actor, EXECUTE, rows[0].grants):
        raise Forbidden(f"not allowed to run {act.on_type}/{act.name}")


def _in_fields(act: ActionDef, attrs: dict[str, Any], secret: str) -> dict[str, Any]:
    attrs = validation.conform(act.conformations, attrs)
    try:
        validation.validate(act.validations, attrs, partial=False)
    except fieldtypes.FieldError as exc:
        raise BadRequest(str(exc), pointer=f"/attributes/{exc.column}", kind=Kind.VALIDATION_FAILED) from None
    for col in act.in_fields:
        name = col.column_name
        if name not in attrs or attrs[name] is None:
            if col.default_value is not None:
                attrs[name] = fieldtypes.default_for_insert(col)
            elif not col.is_nullable:
                raise BadRequest(f"{name} is required", pointer=f"/attributes/{name}")
            continue
        if col.family in {"file", "image", "video", "gzip", "json"}:
            continue  # asset arrays and JSON values are handed to performers as sent
        if isinstance(attrs[name], dict | list):
            raise BadRequest(f"{name} must be a single value", pointer=f"/attributes/{name}")
    return attrs


async def run_action(
    services: Services, actor: Actor, on_type: str, name: str, attrs: dict[str, Any], *, client: str = ""
) -> ActionResult:
    model = services.model
    if on_type not in model.tables:
        raise NotFound(f"no such table: {on_type}", kind=Kind.TABLE_NOT_FOUND)
    act = model.action(on_type, name)
    try:
        async with services.db.transaction() as uow:
            ctx = ActionContext(services, actor, uow, on_type, name, attrs, client=client)
            await _gate(services, ctx, act)
            subject_ref = attrs.get(f"{on_type}_id")
            if subject_ref:
                ref = parse_uuid(subject_ref)
                if ref is None:
                    raise BadRequest(f"{on_type}_id must be a reference id", pointer=f"/attributes/{on_type}_id")
                ctx.subject = await services.crud.row(uow.conn, actor, model.table(on_type), ref, EXECUTE)
            elif not act.instance_optional:
                raise BadRequest(f"{on_type}_id is required for this action", pointer=f"/attributes/{on_type}_id")
            ctx.attributes = _in_fields(act, dict(attrs), services.crud.secret)
            out = await _outcomes(services, ctx, act)
        for step in ctx.post:
            out.extend(await step())
    except (IntegrityError, DBAPIError) as exc:
        raise translate_db_error(exc) from None
    return ActionResult(out, ctx.status, ctx.cookies)


def _context(ctx: ActionContext) -> dict[str, Any]:
    user = None
    if ctx.actor.ref is not None:
        user = {"reference_id": ctx.actor.ref, "email": ctx.actor.email, "name": ctx.actor.name}
    values: dict[str, Any] = dict(ctx.attributes)
    values.update(attributes=ctx.attributes, user=user, subject=ctx.subject.attrs if ctx.subject else None)
    if ctx.subject:
        values[f"{ctx.on_type}_id"] = ctx.subject.ref
    return values


async def _outcomes(services: Services, ctx: ActionContext, act: ActionDef) -> list[Response]:
    values = _context(ctx)
    out: list[Response] = []
    for outcome in act.out_fields:
        if outcome.condition:
            try:
                if not expressions.truthy(expressions.evaluate(outcome.condition, values)):
                    continue
            except BadRequest:
                continue  # a condition that cannot be evaluated skips its outcome
        try:
            attributes = expressions.evaluate(outcome.attributes, values)
        except BadRequest:
            if outcome.continue_on_error:
                continue
            raise
        result, produced = await _one(services, ctx, outcome, attributes)
        if outcome.reference:
            values[outcome.reference] = result
        if not outcome.skip_in_response:
            out.extend(produced)
    return out


async def _one(services: Services, ctx: ActionContext, o: Outcome, attrs: dict[str, Any]) -> tuple[Any, list[Response]]:
    crud, actor, uow = services.crud, ctx.actor, ctx.uow
    method = o.method
    if o.type in FORCED_RESPONSE or method == "ACTIONRESPONSE":
        return attrs, [response(o.type, attrs)]
    if method in {"", "EXECUTE"} or o.type.startswith("__"):
        performer = services.performers.get(o.type)
        if performer is None:
            raise BadRequest(f"no performer named {o.type!r}")
        produced = await performer(ctx, attrs)
        return (produced[0]["Attributes"] if len(produced) == 1 else produced), produced
    if method == "POST":
        row = await crud.create(actor, o.type, attrs, uow=uow)
        return row.attrs, [response(o.type, row.attrs)]
    if method in {"PATCH", "PUT"}:
        ref = attrs.pop("reference_id", None)
        if not isinstance(ref, str):
            raise BadRequest(f"{o.type} update needs reference_id")
        row = await crud.update(actor, o.type, ref, attrs, uow=uow)
        return row.attrs, [response(o.type, row.attrs)]
    if method == "DELETE":
        ref = attrs.get("reference_id")
        if not isinstance(ref, str):
            raise BadRequest(f"{o.type} delete needs reference_id")
        await crud.delete(actor, o.type, ref, uow=uow)
        return None, [response("client.notify", {"type": "success", "title": "Success", "message": "Deleted"})]
    if method in {"GET", "GET_BY_ID"}:
        tm = services.model.table(o.type)
        if method == "GET_BY_ID":
            row = await crud.row(uow.conn, actor, tm, str(attrs.get("reference_id") or ""), READ)
            return row.attrs, [response(o.type, row.attrs)]
        params = {k: (v if isinstance(v, str) else jsonutil.dumps_str(v)) for k, v in attrs.items()}
        page = await crud.find(actor, o.type, params, {})
        rows = [r.attrs for r in page.rows]
        return rows, [response(o.type, rows)]
    raise BadRequest(f"unknown outcome method {method!r}")
