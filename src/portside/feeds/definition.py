"""Feed definitions: a `feed` row (plus its `stream`, if any) read as typed values, and row → item mapping.

A feed takes its items from `table_name`, or else from its stream's contract (`RootEntityName`,
`QueryParams`, `Transformations`, spec/realtime.md §F.2). Mapping columns left empty fall back to the
first existing column of a default list; a column that does not exist maps to nothing (never an error).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from sqlalchemy.ext.asyncio import AsyncConnection

from portside.core import records
from portside.core.model import Model, TableModel
from portside.feeds.render import FORMATS, Item, clean
from portside.tools import jsonutil, names

TITLE_DEFAULTS = ("title", "name", "label")
CONTENT_DEFAULTS = ("content", "description", "body")
PUBLISHED_DEFAULTS = ("published_at", "created_at")
UPDATED_DEFAULTS = ("updated_at",)
AUTHOR_DEFAULTS = ("author", "author_name")
_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_]{1,100})\}")


@dataclass(frozen=True)
class FeedDef:
    ref: str
    name: str
    title: str
    description: str
    link: str
    author_name: str
    author_email: str
    enabled: bool
    formats: frozenset[str]
    page_size: int
    table: str | None
    params: dict[str, str] = field(default_factory=dict)  # list parameters: query, sort
    mapping: dict[str, str] = field(default_factory=dict)  # title/content/published/updated/author → column
    link_template: str = ""
    transformations: tuple[dict[str, Any], ...] = ()
    updated: dt.datetime | None = None


def parse_time(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _text(attrs: Mapping[str, Any], key: str) -> str:
    value = attrs.get(key)
    return value.strip() if isinstance(value, str) else ""


def _contract(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str) and raw.strip():
        try:
            raw = jsonutil.loads(raw, max_depth=16)
        except jsonutil.JSONError:
            return {}
    return raw if isinstance(raw, dict) else {}


def _param_value(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[-1] if value else None
    if isinstance(value, dict | list):
        return jsonutil.dumps_str(value)
    return None if value is None else str(value)


async def load(conn: AsyncConnection, model: Model, name: str) -> FeedDef | None:
    """The feed named `name` (NFC, exact: `tools.names`) as stored now, or None."""
    try:
        name = names.identifier(name, "feed name")
    except names.BadName:
        return None
    ft = model.table("feed")
    rows = await records.fetch(conn, model, ft, ft.sa.c.feed_name == name, limit=1, groups=False)
    if not rows:
        return None
    a = rows[0].attrs
    formats = frozenset(f for f in FORMATS if a.get(f"enable_{f}") is not False)
    params: dict[str, str] = {}
    table = _text(a, "table_name") or None
    transformations: tuple[dict[str, Any], ...] = ()
    stream_ref = a.get("stream_id")
    if table is None and isinstance(stream_ref, str):
        st = model.table("stream")
        srows = await records.fetch(conn, model, st, st.sa.c.reference_id == stream_ref, limit=1, groups=False)
        if srows:
            contract = _contract(srows[0].attrs.get("stream_contract"))
            root = contract.get("RootEntityName")
            table = root if isinstance(root, str) and root else None
            qp = contract.get("QueryParams")
            if isinstance(qp, dict):
                for key in ("query", "sort", "filter"):
                    value = _param_value(qp.get(key))
                    if value:
                        params[key] = value
            tr = contract.get("Transformations")
            if isinstance(tr, list):
                transformations = tuple(t for t in tr if isinstance(t, dict))
    filt = a.get("filter")
    if filt not in (None, "", [], {}):
        params["query"] = filt if isinstance(filt, str) else jsonutil.dumps_str(filt)
    if _text(a, "sort"):
        params["sort"] = _text(a, "sort")
    mapping = {
        key: _text(a, f"{key}_column")
        for key in ("title", "content", "published", "updated", "author")
        if _text(a, f"{key}_column")
    }
    page_size = a.get("page_size")
    return FeedDef(
        ref=rows[0].ref,
        name=name,
        title=_text(a, "title") or name,
        description=_text(a, "description"),
        link=_text(a, "link"),
        author_name=_text(a, "author_name"),
        author_email=_text(a, "author_email"),
        enabled=a.get("enable") is True,
        formats=formats,
        page_size=page_size if isinstance(page_size, int) and page_size > 0 else 1000,
        table=table,
        params=params,
        mapping=mapping,
        link_template=_text(a, "link_template"),
        transformations=transformations,
        updated=parse_time(a.get("updated_at")) or parse_time(a.get("created_at")),
    )


@dataclass(frozen=True)
class ItemMap:
    """Which attribute feeds which item field, resolved against the table as it is now."""

    title: str | None
    content: str | None
    published: str | None
    updated: str | None
    author: str | None


def resolve(fd: FeedDef, tm: TableModel) -> ItemMap:
    names = {c.column_name for c in tm.api_columns()}
    for step in fd.transformations:  # columns a stream contract renames or duplicates into being
        a = step.get("Attributes")
        if isinstance(a, dict):
            names |= {v for k, v in a.items() if k in ("NewName", "NewColumnName") and isinstance(v, str)}

    def pick(key: str, defaults: Sequence[str]) -> str | None:
        chosen = fd.mapping.get(key)
        if chosen:
            return chosen if chosen in names else None
        return next((d for d in defaults if d in names), None)

    return ItemMap(
        pick("title", TITLE_DEFAULTS),
        pick("content", CONTENT_DEFAULTS),
        pick("published", PUBLISHED_DEFAULTS),
        pick("updated", UPDATED_DEFAULTS),
        pick("author", AUTHOR_DEFAULTS),
    )


def needed_columns(fd: FeedDef, m: ItemMap, tm: TableModel) -> list[str]:
    """The columns the items are built from (mapped ones and link-template placeholders), for `fields=`."""
    names = {c.column_name for c in tm.api_columns()}
    wanted = {m.title, m.content, m.published, m.updated, m.author, "reference_id"}
    wanted |= set(_PLACEHOLDER.findall(fd.link_template))
    return sorted(n for n in wanted if n is not None and n in names)


def default_sort(m: ItemMap) -> str:
    return f"-{m.published}" if m.published else "-created_at"


def transform(attrs: dict[str, Any], steps: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Daptin stream transformations on one row; None when a `filter` step drops it."""
    out = dict(attrs)
    for step in steps:
        op = str(step.get("Operation", "")).lower()
        a = step.get("Attributes")
        a = a if isinstance(a, dict) else {}
        if op == "rename" and isinstance(a.get("OldName"), str) and isinstance(a.get("NewName"), str):
            if a["OldName"] in out:
                out[a["NewName"]] = out.pop(a["OldName"])
        elif op == "duplicate" and isinstance(a.get("ColumnName"), str) and isinstance(a.get("NewColumnName"), str):
            out[a["NewColumnName"]] = out.get(a["ColumnName"])
        elif op in ("drop", "select") and isinstance(a.get("Columns"), list):
            cols = {c for c in a["Columns"] if isinstance(c, str)}
            keep = {"reference_id", "__type"}
            out = {k: v for k, v in out.items() if (k in cols) != (op == "drop") or k in keep}
        elif op == "filter" and isinstance(a.get("ColumnName"), str):
            value, wanted = out.get(a["ColumnName"]), a.get("Value")
            comparator = str(a.get("Comparator", "eq")).lower()
            same = str(value) == str(wanted)
            if (comparator in ("eq", "is", "=", "==") and not same) or (comparator in ("neq", "!=") and same):
                return None
    return out


def fill_link(template: str, attrs: Mapping[str, Any]) -> str:
    def sub(m: re.Match[str]) -> str:
        value = attrs.get(m.group(1))
        return quote(clean(value), safe="") if value is not None else ""

    return _PLACEHOLDER.sub(sub, template)


def to_item(fd: FeedDef, m: ItemMap, attrs: Mapping[str, Any], base: str) -> Item:
    ref = str(attrs.get("reference_id") or "")
    if fd.link_template:
        url = fill_link(fd.link_template, attrs)
    else:
        url = f"{base}/api/{quote(str(attrs.get('__type', '')), safe='')}/{quote(ref, safe='')}"

    def text(col: str | None) -> str:
        value = attrs.get(col) if col else None
        return "" if value is None else clean(value)

    published = parse_time(attrs.get(m.published)) if m.published else None
    updated = parse_time(attrs.get(m.updated)) if m.updated else None
    return Item(
        id=f"urn:uuid:{ref}",
        url=url,
        title=text(m.title),
        content=text(m.content),
        published=published,
        updated=updated,
        author=text(m.author),
    )
