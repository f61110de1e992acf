"""List query parameters (`query=`, `filter=`, `sort`, `page[...]`, `fields`, FK filters) → SQL.

Every identifier is checked against the table; values are bound parameters, never pasted into SQL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from portside.core import fieldtypes
from portside.core.model import Model, TableModel
from portside.core.schema import Column
from portside.errors import BadRequest
from portside.tools import jsonutil
from portside.tools.ids import parse_uuid

DEFAULT_PAGE_SIZE = 10
MAX_FILTERS = 50
MAX_IN_VALUES = 1000

EQ = {"is", "eq", "="}
NEQ = {"is not", "neq", "!="}
GT = {"more than", "after", "gt", ">"}
GTE = {"gte", ">="}
LT = {"less than", "before", "lt", "<"}
LTE = {"lte", "<="}
LIKE = {"like", "contains", "begins with", "ends with"}
NOT_LIKE = {"not like", "not contains"}
ILIKE = {"ilike"}
NOT_ILIKE = {"not ilike"}
IN = {"in", "any of"}
NOT_IN = {"none of", "not in"}
NULLARY = {"is empty", "is null", "not empty", "not null", "is not null", "is true", "is false"}
FUZZY = {"fuzzy", "fuzzy_any", "fuzzy_all"}
OPERATORS = EQ | NEQ | GT | GTE | LT | LTE | LIKE | NOT_LIKE | ILIKE | NOT_ILIKE | IN | NOT_IN | NULLARY | FUZZY


@dataclass
class ListQuery:
    where: list[sa.ColumnElement[bool]] = field(default_factory=list)
    order_by: list[Any] = field(default_factory=list)
    page: int = 1
    size: int = DEFAULT_PAGE_SIZE
    fields: list[str] | None = None
    include: list[str] = field(default_factory=list)


MAX_INT = 2**63 - 1


def typed_value(col: Column, sql_type: sa.types.TypeEngine[Any], raw: Any, pointer: str) -> Any:
    """A filter value converted to what the column stores, or 400 naming the value."""
    name = col.column_name
    if isinstance(sql_type, sa.Boolean):
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in {"true", "1", "false", "0"}:
            return text in {"true", "1"}
        raise BadRequest(f"{name}: expected true or false", pointer=pointer)
    if isinstance(sql_type, sa.Integer | sa.Double | sa.DateTime):
        if isinstance(raw, bool):
            raise BadRequest(
                f"{name}: expected a {'date' if isinstance(sql_type, sa.DateTime) else 'number'}", pointer=pointer
            )
        if isinstance(sql_type, sa.DateTime):
            try:
                return fieldtypes.to_db(Column(name, "datetime", data_type="timestamp"), raw, secret="")
            except fieldtypes.FieldError:
                raise BadRequest(f"{name}: expected a date-time", pointer=pointer) from None
        try:
            number = float(raw) if isinstance(sql_type, sa.Double) else int(str(raw).strip())
        except (TypeError, ValueError, OverflowError):
            raise BadRequest(f"{name}: expected a number", pointer=pointer) from None
        if (isinstance(number, float) and not math.isfinite(number)) or abs(number) > MAX_INT:
            raise BadRequest(f"{name}: number out of range", pointer=pointer)
        return number
    if not isinstance(raw, str | int | float) or isinstance(raw, bool):
        raise BadRequest(f"{name}: expected a string", pointer=pointer)
    text = str(raw)
    if "\x00" in text or len(text) > 10_000:
        raise BadRequest(f"{name}: value not allowed", pointer=pointer)
    return text


def _pattern(op: str, value: str) -> str:
    if "%" in value or op == "like":
        return value  # the client supplied its own wildcards (Daptin style)
    if op == "contains":
        return f"%{value}%"
    if op == "begins with":
        return f"{value}%"
    if op == "ends with":
        return f"%{value}"
    return value


class QueryBuilder:
    def __init__(self, model: Model, tm: TableModel):
        self.model = model
        self.tm = tm
        self.t = tm.sa

    def column(self, name: Any, pointer: str) -> sa.ColumnElement[Any]:
        if not isinstance(name, str) or name not in self.tm.columns or name == "id":
            raise BadRequest(f"unknown column {name!r} for {self.tm.name}", pointer=pointer)
        col = self.tm.columns[name]
        if col.exclude_from_api or fieldtypes.is_secret(col):
            raise BadRequest(f"column {name!r} cannot be filtered", pointer=pointer)
        return self.t.c[name]

    def value(self, name: str, raw: Any, pointer: str) -> Any:
        """Convert a filter value to what the column stores; FK refs become an id subquery."""
        target = self.tm.fks.get(name)
        if target is not None:
            ref = parse_uuid(raw)
            if ref is None:
                raise BadRequest(f"{name}: expected a reference id", pointer=pointer)
            tt = self.model.table(target).sa
            return sa.select(tt.c.id).where(tt.c.reference_id == ref).scalar_subquery()
        if name == "reference_id":
            ref = parse_uuid(raw)
            if ref is None:
                raise BadRequest("reference_id: expected a UUID", pointer=pointer)
            return ref
        if isinstance(raw, dict | list):
            raise BadRequest(f"{name}: expected a scalar value", pointer=pointer)
        if raw is None:
            return None
        return typed_value(self.tm.columns[name], self.t.c[name].type, raw, pointer)

    def condition(self, f: Any, pointer: str) -> tuple[str | None, sa.ColumnElement[bool]]:
        if not isinstance(f, dict):
            raise BadRequest("each filter must be an object", pointer=pointer)
        op = f.get("operator", "is")
        if not isinstance(op, str) or op.strip().lower() not in OPERATORS:
            raise BadRequest(f"unknown operator {op!r}", pointer=f"{pointer}/operator")
        op = op.strip().lower()
        group = f.get("logical_group")
        group = str(group) if isinstance(group, str | int) and group != "" else None
        raw = f.get("value")
        if op in FUZZY:
            names = f.get("column")
            if not isinstance(names, str):
                raise BadRequest("fuzzy needs a column list", pointer=f"{pointer}/column")
            if raw is not None and (not isinstance(raw, str) or "\x00" in raw or len(raw) > 1000):
                raise BadRequest("fuzzy needs a text value", pointer=f"{pointer}/value")
            words = [w for w in str(raw or "").split() if w][:10]
            cols = [self.column(n.strip(), f"{pointer}/column") for n in names.split(",") if n.strip()]
            parts = [
                sa.or_(*(sa.func.lower(sa.cast(c, sa.String)).like(f"%{w.lower()}%") for c in cols)) for w in words
            ]
            if not parts:
                return group, sa.true()
            return group, (sa.or_(*parts) if op in {"fuzzy", "fuzzy_any"} else sa.and_(*parts))
        name = f.get("column")
        col = self.column(name, f"{pointer}/column")
        assert isinstance(name, str)
        if op in NULLARY:
            if op in {"is empty", "is null"}:
                return group, col.is_(None)
            if op in {"not empty", "not null", "is not null"}:
                return group, col.is_not(None)
            if not isinstance(col.type, sa.Boolean):
                raise BadRequest(f"operator {op!r} needs a true/false column", pointer=f"{pointer}/operator")
            return group, col == (op == "is true")
        vp = f"{pointer}/value"
        if op in IN | NOT_IN:
            values = raw if isinstance(raw, list) else [v for v in str(raw or "").split(",") if v != ""]
            if len(values) > MAX_IN_VALUES:
                raise BadRequest(f"at most {MAX_IN_VALUES} values", pointer=vp)
            conv = [self.value(name, v, vp) for v in values]
            return group, (col.in_(conv) if op in IN else col.not_in(conv))
        value = self.value(name, raw, vp)
        if op in LIKE | NOT_LIKE | ILIKE | NOT_ILIKE:
            if not isinstance(raw, str | int | float):
                raise BadRequest("expected a string", pointer=vp)
            pat = _pattern(op, str(raw))
            text = sa.cast(col, sa.String)
            if op in ILIKE | NOT_ILIKE:
                expr = sa.func.lower(text).like(pat.lower())
                return group, (expr if op in ILIKE else sa.not_(expr))
            return group, (text.like(pat) if op in LIKE else text.not_like(pat))
        if isinstance(col.type, sa.Boolean) and op in GT | GTE | LT | LTE:
            raise BadRequest(f"operator {op!r} does not apply to a true/false column", pointer=f"{pointer}/operator")
        if value is None:
            if op in EQ | NEQ:
                return group, (col.is_(None) if op in EQ else col.is_not(None))
            raise BadRequest(f"operator {op!r} needs a value", pointer=vp)
        if op in EQ:
            return group, col == value
        if op in NEQ:
            return group, col != value
        if op in GT:
            return group, col > value
        if op in GTE:
            return group, col >= value
        if op in LT:
            return group, col < value
        return group, col <= value

    def filters(self, raw: str) -> list[sa.ColumnElement[bool]]:
        try:
            items = jsonutil.loads(raw, max_depth=8)
        except jsonutil.JSONError as exc:
            raise BadRequest(f"query: {exc}", pointer="/query") from None
        if isinstance(items, dict):
            items = [items]
        if not isinstance(items, list):
            raise BadRequest("query must be a JSON array of filter objects", pointer="/query")
        if len(items) > MAX_FILTERS:
            raise BadRequest(f"at most {MAX_FILTERS} filters", pointer="/query")
        plain: list[sa.ColumnElement[bool]] = []
        groups: dict[str, list[sa.ColumnElement[bool]]] = {}
        for i, f in enumerate(items):
            group, cond = self.condition(f, f"/query/{i}")
            if group is None:
                plain.append(cond)
            else:
                groups.setdefault(group, []).append(cond)
        return plain + [sa.or_(*conds) for conds in groups.values()]

    def text_filter(self, words: str) -> sa.ColumnElement[bool] | None:
        cols = [
            self.t.c[c.column_name]
            for c in self.tm.columns.values()
            if (c.is_indexed or c.is_unique)
            and c.column_name in self.t.c
            and (c.column_type in {"label", "email"} or "name" in c.column_type)
        ]
        if not cols or not words:
            return None
        return sa.or_(*(c.like(f"%{words}%") for c in cols))

    def sort(self, raw: str | None) -> list[Any]:
        spec = raw if raw else (self.tm.decl.default_order or "-created_at")
        out: list[Any] = []
        first_desc: bool | None = None
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            desc = part.startswith("-")
            name = part.lstrip("+-")
            if name == "id":
                col: Any = self.t.c.id
            elif raw is None and name not in self.t.c:
                continue  # a stale DefaultOrder never breaks listing
            else:
                col = self.column(name, "/sort")
            out.append(col.desc() if desc else col.asc())
            first_desc = desc if first_desc is None else first_desc
        out.append(self.t.c.id.desc() if first_desc else self.t.c.id.asc())  # stable pages
        return out


def _positive_int(raw: str | None, name: str, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer", pointer=f"/{name}") from None
    if value < 0:
        raise BadRequest(f"{name} must not be negative", pointer=f"/{name}")
    return value


def parse(
    model: Model,
    tm: TableModel,
    params: Mapping[str, str],
    multi: Mapping[str, Sequence[str]],
    max_page_size: int,
) -> ListQuery:
    qb = QueryBuilder(model, tm)
    lq = ListQuery()
    if params.get("query"):
        lq.where += qb.filters(params["query"])
    else:
        text = params.get("filter") or params.get("filter[]")
        if text:
            cond = qb.text_filter(text)
            if cond is not None:
                lq.where.append(cond)
    for name in tm.fks:
        if name in params:
            refs = [r for r in params[name].split(",") if r]
            lq.where.append(tm.sa.c[name].in_([qb.value(name, r, f"/{name}") for r in refs]))
    lq.order_by = qb.sort(params.get("sort"))
    for key, newer in (("page[after]", True), ("page[before]", False)):
        if params.get(key):
            ref = parse_uuid(params[key])
            if ref is None:
                raise BadRequest(f"{key} must be a reference id", pointer=f"/{key}")
            t = tm.sa
            anchor = sa.select(t.c.id).where(t.c.reference_id == ref).scalar_subquery()
            lq.where.append(t.c.id > anchor if newer else t.c.id < anchor)
            lq.order_by = [t.c.id.asc() if newer else t.c.id.desc()]  # keyset paging follows insertion order
    lq.page = max(1, _positive_int(params.get("page[number]"), "page[number]", 1))
    size = _positive_int(params.get("page[size]"), "page[size]", DEFAULT_PAGE_SIZE)
    lq.size = min(max(size, 1), max_page_size)
    fields = params.get("fields") or params.get(f"fields[{tm.name}]")
    if fields:
        names = [f.strip() for f in fields.split(",") if f.strip()]
        for n in names:
            qb.column(n, "/fields")
        lq.fields = sorted(set(names) | {"reference_id", "permission", "user_account_id"})
    inc = ",".join(multi.get("included_relations", [])) + "," + ",".join(multi.get("include", []))
    lq.include = [x.strip() for x in inc.split(",") if x.strip()]
    return lq
