"""JSON:API documents: resource objects, list documents with Daptin-compatible pagination links."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode

from portside.actions.crud import Page
from portside.core.model import Model, TableModel
from portside.core.records import RowData
from portside.errors import BadRequest, Conflict
from portside.tools.ids import parse_uuid


def resource(tm: TableModel, row: RowData, linked: dict[str, dict[int, list[str]]] | None = None) -> dict[str, Any]:
    rels: dict[str, Any] = {}
    for rel in tm.relations.values():
        if rel.fk_column is not None:
            ref = row.attrs.get(rel.fk_column)
            rels[rel.name] = {"data": {"type": rel.target, "id": ref} if ref else None}
        elif rel.many:
            refs = (linked or {}).get(rel.name, {}).get(row.id, [])
            rels[rel.name] = {"data": [{"type": rel.target, "id": r} for r in refs]}
    return {"type": tm.name, "id": row.ref, "attributes": row.attrs, "relationships": rels}


def included(model: Model, page: Page) -> list[dict[str, Any]]:
    return [*(resource(model.table(name), row) for name, row in page.included), *page.files]


def list_document(model: Model, tm: TableModel, page: Page, path: str, params: dict[str, str]) -> dict[str, Any]:
    last = max(1, math.ceil(page.total / page.size)) if page.size else 1
    start = (page.page - 1) * page.size
    links: dict[str, Any] = {
        "current_page": page.page,
        "from": start,
        "to": start + len(page.rows),
        "per_page": page.size,
        "total": page.total,
        "last_page": last,
    }

    def url(n: int) -> str:
        q = {k: v for k, v in params.items() if not k.startswith("page[")}
        q.update({"page[number]": str(n), "page[size]": str(page.size)})
        return f"{path}?{urlencode(q)}"

    if page.page > 1:
        links["first_page_url"] = url(1)
        links["prev_page_url"] = url(page.page - 1)
    if page.page < last:
        links["next_page_url"] = url(page.page + 1)
        links["last_page_url"] = url(last)
    doc: dict[str, Any] = {
        "links": links,
        "meta": {"total": page.total, "page": page.page, "per_page": page.size, "last_page": last},
        "data": [resource(tm, r, page.linked) for r in page.rows],
    }
    if page.included or page.files:
        doc["included"] = included(model, page)
    return doc


def single_document(model: Model, tm: TableModel, page: Page) -> dict[str, Any]:
    doc: dict[str, Any] = {"data": resource(tm, page.rows[0], page.linked)}
    if page.included or page.files:
        doc["included"] = included(model, page)
    return doc


def parse_resource(body: Any, table: str, *, url_id: str | None = None) -> tuple[dict[str, Any], Any, str | None]:
    """(attributes, relationships, client id) from a POST/PATCH document to `table`; 400 on a bad shape, 409
    when `data.type` names another table or `data.id` another row (JSON:API)."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise BadRequest("expected a JSON:API document with a data object", pointer="/data")
    data = body["data"]
    kind = data.get("type")
    if kind is not None and not isinstance(kind, str):
        raise BadRequest("type must be a string", pointer="/data/type")
    if kind is not None and kind != table:
        raise Conflict(f"type {kind[:64]!r} does not match the endpoint's table {table!r}", pointer="/data/type")
    attrs = data.get("attributes", {})
    if attrs is None:
        attrs = {}
    if not isinstance(attrs, dict):
        raise BadRequest("attributes must be an object", pointer="/data/attributes")
    rid = data.get("id")
    if rid is not None and not isinstance(rid, str):
        raise BadRequest("id must be a string", pointer="/data/id")
    if url_id is not None and rid is not None and (parse_uuid(rid) or rid) != url_id:
        raise Conflict("id in the resource does not match servers endpoint", pointer="/data/id")
    return attrs, data.get("relationships"), rid
