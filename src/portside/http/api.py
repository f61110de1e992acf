"""/api/{table} routes: JSON:API list, create, read, update, delete and relationship endpoints."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from portside.actions.links import related_where
from portside.auth import access
from portside.core import query
from portside.errors import NotFound
from portside.http import jsonapi
from portside.http.common import JSONAPI, actor, json_response, read_json, services
from portside.tools.ids import parse_uuid


def _params(request: Request) -> tuple[dict[str, str], dict[str, list[str]]]:
    multi: dict[str, list[str]] = {}
    for k, v in request.query_params.multi_items():
        multi.setdefault(k, []).append(v)
    return {k: vs[-1] for k, vs in multi.items()}, multi


async def collection(request: Request) -> Response:
    svc = services(request)
    table = request.path_params["table"]
    who = await actor(request)
    if request.method == "GET":
        params, multi = _params(request)
        page = await svc.crud.find(who, table, params, multi)
        tm = svc.model.table(table)
        return json_response(jsonapi.list_document(svc.model, tm, page, request.url.path, params), media_type=JSONAPI)
    svc.model.table(table)  # 404 before reading the body
    body = await read_json(request)
    attrs, rels, rid = jsonapi.parse_resource(body, table)
    row = await svc.crud.create(who, table, attrs, rels, ref=rid)
    tm = svc.model.table(table)
    return json_response(
        {"data": jsonapi.resource(tm, row)}, 201, JSONAPI, headers={"Location": f"/api/{table}/{row.ref}"}
    )


async def item(request: Request) -> Response:
    svc = services(request)
    table, ref = request.path_params["table"], request.path_params["ref"]
    who = await actor(request)
    ref = access.own_account_ref(who, table, ref)
    tm = svc.model.table(table)
    if request.method == "GET":
        _, multi = _params(request)
        include = query.include_names(multi)
        page = await svc.crud.get(who, table, ref, include)
        return json_response(jsonapi.single_document(svc.model, tm, page), media_type=JSONAPI)
    if request.method == "DELETE":
        await svc.crud.delete(who, table, ref)
        return json_response({"meta": None}, media_type=JSONAPI)
    body = await read_json(request)
    attrs, rels, _ = jsonapi.parse_resource(body, table, url_id=parse_uuid(ref) or ref)
    row = await svc.crud.update(who, table, ref, attrs, rels)
    return json_response({"data": jsonapi.resource(tm, row)}, media_type=JSONAPI)


async def related(request: Request) -> Response:
    """GET /api/{t}/{ref}/{rel}: the related rows, as a permission-filtered list of the target type."""
    svc = services(request)
    table, ref, name = (request.path_params[k] for k in ("table", "ref", "rel"))
    who = await actor(request)
    tm = svc.model.table(table)
    rel = tm.relations.get(name)
    if rel is None:
        raise NotFound(f"no relationship {name!r} on {table}")
    page_one = await svc.crud.get(who, table, ref)
    row = page_one.rows[0]
    target = svc.model.table(rel.target)
    params, multi = _params(request)
    where = related_where(svc.model, tm, row, rel)
    page = await svc.crud.find(who, rel.target, params, multi, extra_where=[where])
    return json_response(jsonapi.list_document(svc.model, target, page, request.url.path, params), media_type=JSONAPI)


async def relationship(request: Request) -> Response:
    svc = services(request)
    table, ref, name = (request.path_params[k] for k in ("table", "ref", "rel"))
    who = await actor(request)
    tm = svc.model.table(table)
    if request.method == "GET":
        rel = tm.relations.get(name)
        if rel is None:
            raise NotFound(f"no relationship {name!r} on {table}")
        page = await svc.crud.get(who, table, ref, [name])
        data = jsonapi.resource(tm, page.rows[0], page.linked)["relationships"].get(name, {"data": None})
        return json_response(data, media_type=JSONAPI)
    body = await read_json(request)
    mode = {"POST": "add", "PATCH": "replace", "DELETE": "remove"}[request.method]
    await svc.crud.change_links(who, table, ref, name, body, mode)
    return Response(status_code=204)


routes = [
    Route("/api/{table}", collection, methods=["GET", "POST"]),
    Route("/api/{table}/{ref}", item, methods=["GET", "PATCH", "PUT", "DELETE"]),
    Route("/api/{table}/{ref}/relationships/{rel}", relationship, methods=["GET", "POST", "PATCH", "DELETE"]),
    Route("/api/{table}/{ref}/{rel}", related, methods=["GET"]),
]
