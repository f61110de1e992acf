"""OpenAPI 3.1 document generated from the live model (tables and actions)."""

from __future__ import annotations

from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from portside.core import fieldtypes
from portside.core.model import Model, TableModel
from portside.core.schema import Column
from portside.http.common import JSONAPI, json_response, services

ERROR = {"$ref": "#/components/schemas/Errors"}


def _column_schema(col: Column, tm: TableModel) -> dict[str, Any]:
    if col.column_name in tm.fks:
        return {"type": ["string", "null"], "format": "uuid"}
    sql = fieldtypes.sa_type(col).__class__.__name__.lower()
    if col.column_type == "truefalse" or "boolean" in sql:
        base: dict[str, Any] = {"type": "boolean"}
    elif "integer" in sql:
        base = {"type": "integer"}
    elif "double" in sql or "float" in sql:
        base = {"type": "number"}
    elif "datetime" in sql:
        base = {"type": "string", "format": "date-time"}
    else:
        base = {"type": "string"}
    if col.is_nullable:
        base["type"] = [base["type"], "null"]
    return base


def _attributes(tm: TableModel) -> dict[str, Any]:
    props = {c.column_name: _column_schema(c, tm) for c in tm.api_columns()}
    return {"type": "object", "properties": props}


def _input(tm: TableModel) -> dict[str, Any]:
    """What a client may send as attributes: the table's columns (unknown names are a 400)."""
    props: dict[str, Any] = {}
    for c in tm.api_columns():
        schema = _column_schema(c, tm)
        if fieldtypes.is_secret(c) or c.column_name in tm.fks or c.family in ASSETS:
            schema = {}  # hashed/encrypted text, references and file lists: checked by the server
        props[c.column_name] = schema
    props["__type"] = {"type": "string"}
    return {"type": "object", "properties": props, "additionalProperties": False}


ASSETS = frozenset({"file", "image", "video", "gzip"})


def _responses(ok: str, schema: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if schema is None:
        out[ok] = {"description": "done"}
    else:
        out[ok] = {"description": "ok", "content": {JSONAPI: {"schema": schema}}}
    for code in ("400", "401", "403", "404", "409", "413", "429"):
        out[code] = {"description": "error", "content": {JSONAPI: {"schema": ERROR}}}
    return out


def document(model: Model) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {
        "Errors": {
            "type": "object",
            "required": ["errors"],
            "properties": {
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "status": {"type": "string"},
                            "title": {"type": "string"},
                            "detail": {"type": "string"},
                        },
                    },
                }
            },
        }
    }
    ref_param = {"name": "ref", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
    list_params = [
        {"name": "page[number]", "in": "query", "schema": {"type": "integer", "minimum": 1}},
        {"name": "page[size]", "in": "query", "schema": {"type": "integer", "minimum": 1}},
        {"name": "sort", "in": "query", "schema": {"type": "string"}},
        {"name": "query", "in": "query", "schema": {"type": "string"}},
        {"name": "filter", "in": "query", "schema": {"type": "string"}},
        {"name": "included_relations", "in": "query", "schema": {"type": "string"}},
    ]
    for name, tm in sorted(model.tables.items()):
        attrs = _attributes(tm)
        schemas[f"{name}_attributes"] = attrs
        res = {
            "type": "object",
            "required": ["type", "id", "attributes"],
            "properties": {
                "type": {"const": name},
                "id": {"type": "string", "format": "uuid"},
                "attributes": {"$ref": f"#/components/schemas/{name}_attributes"},
                "relationships": {"type": "object"},
            },
        }
        schemas[name] = res
        schemas[f"{name}_input"] = _input(tm)
        item = {"$ref": f"#/components/schemas/{name}"}
        body = {
            "required": True,
            "content": {
                JSONAPI: {
                    "schema": {
                        "type": "object",
                        "required": ["data"],
                        "properties": {
                            "data": {
                                "type": "object",
                                "required": ["type"],
                                "properties": {
                                    "type": {"type": "string"},
                                    "id": {"type": "string", "format": "uuid"},
                                    "attributes": {"$ref": f"#/components/schemas/{name}_input"},
                                    "relationships": {
                                        "type": "object",
                                        "propertyNames": {"enum": sorted(tm.relations) or [""]},
                                    },
                                },
                            }
                        },
                    }
                }
            },
        }
        tag = [name]
        paths[f"/api/{name}"] = {
            "get": {
                "operationId": f"list_{name}",
                "tags": tag,
                "parameters": list_params,
                "responses": _responses(
                    "200",
                    {
                        "type": "object",
                        "properties": {
                            "data": {"type": "array", "items": item},
                            "links": {"type": "object"},
                            "meta": {"type": "object"},
                        },
                    },
                ),
            },
            "post": {
                "operationId": f"create_{name}",
                "tags": tag,
                "requestBody": body,
                "responses": _responses("201", {"type": "object", "properties": {"data": item}}),
            },
        }
        paths[f"/api/{name}/{{ref}}"] = {
            "parameters": [ref_param],
            "get": {
                "operationId": f"get_{name}",
                "tags": tag,
                "responses": _responses("200", {"type": "object", "properties": {"data": item}}),
            },
            "patch": {
                "operationId": f"update_{name}",
                "tags": tag,
                "requestBody": body,
                "responses": _responses("200", {"type": "object", "properties": {"data": item}}),
            },
            "delete": {"operationId": f"delete_{name}", "tags": tag, "responses": _responses("200", None)},
        }
    for (on_type, aname), act in sorted(model.actions.items()):
        props: dict[str, Any] = {c.column_name: {} for c in act.in_fields}
        required = [c.column_name for c in act.in_fields if not c.is_nullable]
        attrs_schema: dict[str, Any] = {"type": "object", "properties": props}
        if required:
            attrs_schema["required"] = required
        paths[f"/action/{on_type}/{aname}"] = {
            "post": {
                "operationId": f"action_{on_type}_{aname}".replace("-", "_"),
                "tags": ["actions"],
                "summary": act.label,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"type": "object", "properties": {"attributes": attrs_schema}}}
                    },
                },
                "responses": {
                    "200": {
                        "description": "action responses",
                        "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}},
                    }
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Portside", "version": "1"},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "security": [{}, {"bearer": []}],
        "paths": paths,
    }


async def openapi_json(request: Request) -> Response:
    return json_response(document(services(request).model))


async def openapi_yaml(request: Request) -> Response:
    text = yaml.safe_dump(document(services(request).model), sort_keys=False)
    return Response(text, media_type="application/yaml")


routes = [Route("/openapi.json", openapi_json), Route("/openapi.yaml", openapi_yaml)]
