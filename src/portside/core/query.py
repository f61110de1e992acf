"""List query parameters (`query=`, `filter=`, `sort`, `page[...]`, `fields`, FK filters) → SQL.

Every identifier is checked against the table; values are bound parameters, never pasted into SQL, and
are checked against their column's range first. Every shape is bounded by `core.limits`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from portside.core import coerce, fieldtypes, limits
from portside.core.model import Model, TableModel
from portside.core.schema import Column
from portside.errors import BadRequest
from portside.tools import jsonutil
from portside.tools.ids import parse_uuid

DEFAULT_PAGE_SIZE = 10

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
    cursors: list[tuple[str, str]] = field(default_factory=list)  # (page[after]|page[before], reference id)


def typed_value(col: Column, sql_type: sa.types.TypeEngine[Any], raw: Any, pointer: str) -> Any:
    """A filter value converted to what the column stores and checked against the column's range (int32 for
    int columns, int64 for bigint, finite floats, date-times in years 1-9999), or 400 naming the value."""
    name = col.column_name
    try:
        if isinstance(sql_type, sa.Boolean):
            return coerce.as_bool(col, raw)
        if isinstance(sql_type, sa.Integer | sa.Double | sa.DateTime) and isinstance(raw, bool):
            raise coerce.bad(col, "expected a date-time" if isinstance(sql_type, sa.DateTime) else "expected a number")
        if isinstance(sql_type, sa.BigInteger):
            return coerce.as_int(col, raw, coerce.INT64, exact=True)
        if isinstance(sql_type, sa.Integer):
            return coerce.as_int(col, raw, coerce.INT32, exact=True)
        if isinstance(sql_type, sa.Double):
            return coerce.as_float(col, raw)
        if isinstance(sql_type, sa.DateTime):
            return fieldtypes.to_db(Column(name, "datetime", data_type="timestamp"), raw, secret="")
        if isinstance(raw, dict | list):
            raise coerce.bad(col, "expected a scalar value")
        text = coerce.as_text(col, raw)
    except fieldtypes.FieldError as exc:
        raise BadRequest(exc.message, pointer=pointer) from None
    if len(text) > limits.MAX_VALUE_CHARS:
        raise BadRequest(f"{name}: value longer than {limits.MAX_VALUE_CHARS} characters", pointer=pointer)
    return text


def check_pattern(value: str, pointer: str, parameter: str | None = None) -> str:
    """A LIKE pattern within bounds (length, `%` count; SQL LIKE backtracks on each) and without a dangling
    escape character (PostgreSQL and MariaDB refuse one)."""
    if len(value) > limits.MAX_PATTERN_CHARS or value.count("%") > limits.MAX_PATTERN_WILDCARDS or "\x00" in value:
        raise BadRequest(
            f"a pattern has at most {limits.MAX_PATTERN_CHARS} characters and {limits.MAX_PATTERN_WILDCARDS} %",
            pointer=pointer,
            parameter=parameter,
        )
    if (len(value) - len(value.rstrip("\\"))) % 2:
        raise BadRequest("a pattern must not end with an escape character", pointer=pointer, parameter=parameter)
    return value


def _pattern(op: str, value: str, pointer: str) -> str:
    check_pattern(value, pointer)
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
        self.terms = 0  # comparisons so far (bounded: SQL expression depth)
        self.values = 0  # bound values so far (bounded: parameters per statement)

    def charge(self, terms: int, values: int, pointer: str) -> None:
        """Count a condition's comparisons and values against the per-request budget."""
        self.terms += terms
        self.values += values
        if self.terms > limits.MAX_TERMS or self.values > limits.MAX_VALUES:
            raise BadRequest(
                f"the filters are too large: at most {limits.MAX_TERMS} comparisons and {limits.MAX_VALUES} values",
                pointer=pointer,
                parameter=None if pointer.startswith("/query") else pointer.lstrip("/"),
            )

    def column(self, name: Any, pointer: str, parameter: str = "query") -> sa.ColumnElement[Any]:
        if not isinstance(name, str) or name not in self.tm.columns or name == "id":
            shown = name[:100] if isinstance(name, str) else name
            raise BadRequest(f"unknown column {shown!r} for {self.tm.name}", pointer=pointer, parameter=parameter)
        col = self.tm.columns[name]
        if col.exclude_from_api or fieldtypes.is_secret(col):
            raise BadRequest(f"column {name!r} cannot be filtered", pointer=pointer, parameter=parameter)
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

    def refs_in(self, name: str, raws: Sequence[Any], pointer: str) -> sa.Select[Any]:
        """The ids of the rows of `name`'s target table with these reference ids (one subquery)."""
        refs = []
        for raw in raws:
            ref = parse_uuid(raw)
            if ref is None:
                raise BadRequest(f"{name}: expected a reference id", pointer=pointer, parameter=pointer.split("/")[1])
            refs.append(ref)
        tt = self.model.table(self.tm.fks[name]).sa
        return sa.select(tt.c.id).where(tt.c.reference_id.in_(refs))

    def fuzzy(self, f: dict[str, Any], op: str, pointer: str) -> sa.ColumnElement[bool]:
        names, raw = f.get("column"), f.get("value")
        if not isinstance(names, str):
            raise BadRequest("fuzzy needs a column list", pointer=f"{pointer}/column")
        if raw is not None and (not isinstance(raw, str) or "\x00" in raw or len(raw) > limits.MAX_PATTERN_CHARS):
            raise BadRequest("fuzzy needs a text value", pointer=f"{pointer}/value")
        words = [w for w in str(raw or "").split() if w]
        listed = [n.strip() for n in names.split(",") if n.strip()]
        if len(listed) > limits.MAX_FUZZY_COLUMNS or len(words) > limits.MAX_FUZZY_WORDS:
            raise BadRequest(
                f"fuzzy takes at most {limits.MAX_FUZZY_COLUMNS} columns and {limits.MAX_FUZZY_WORDS} words",
                pointer=f"{pointer}/column" if len(listed) > limits.MAX_FUZZY_COLUMNS else f"{pointer}/value",
                parameter="query",
            )
        cols = [self.column(n, f"{pointer}/column") for n in dict.fromkeys(listed)]
        self.charge(len(cols) * len(words), len(cols) * len(words), pointer)
        patterns = [f"%{check_pattern(w.lower(), f'{pointer}/value')}%" for w in words]
        parts = [sa.or_(*(sa.func.lower(sa.cast(c, sa.String)).like(p) for c in cols)) for p in patterns]
        if not parts or not cols:
            return sa.true()
        return sa.or_(*parts) if op in {"fuzzy", "fuzzy_any"} else sa.and_(*parts)

    def condition(self, f: Any, pointer: str) -> tuple[str | None, sa.ColumnElement[bool]]:
        if not isinstance(f, dict):
            raise BadRequest("each filter must be an object", pointer=pointer)
        op = f.get("operator", "is")
        if not isinstance(op, str) or op.strip().lower() not in OPERATORS:
            shown = op[:50] if isinstance(op, str) else op
            raise BadRequest(f"unknown operator {shown!r}", pointer=f"{pointer}/operator")
        op = op.strip().lower()
        group = f.get("logical_group")
        group = str(group) if isinstance(group, str | int) and group != "" else None
        raw = f.get("value")
        if op in FUZZY:
            return group, self.fuzzy(f, op, pointer)
        name = f.get("column")
        col = self.column(name, f"{pointer}/column")
        assert isinstance(name, str)
        if op in NULLARY:
            self.charge(1, 0, pointer)
            if op in {"is empty", "is null"}:
                return group, col.is_(None)
            if op in {"not empty", "not null", "is not null"}:
                return group, col.is_not(None)
            if not isinstance(col.type, sa.Boolean):
                raise BadRequest(f"operator {op!r} needs a true/false column", pointer=f"{pointer}/operator")
            return group, col == (op == "is true")
        vp = f"{pointer}/value"
        if op in IN | NOT_IN:
            if isinstance(raw, str) and len(raw) > limits.MAX_VALUE_CHARS * 10:
                raise BadRequest("value list too long", pointer=vp)
            values = raw if isinstance(raw, list) else [v for v in str(raw or "").split(",") if v != ""]
            if len(values) > limits.MAX_IN_VALUES:
                raise BadRequest(f"at most {limits.MAX_IN_VALUES} values", pointer=vp)
            self.charge(1, len(values), pointer)
            if name in self.tm.fks:
                ids = self.refs_in(name, values, vp)
                return group, (col.in_(ids) if op in IN else col.not_in(ids))
            conv = [self.value(name, v, f"{vp}/{i}" if isinstance(raw, list) else vp) for i, v in enumerate(values)]
            return group, (col.in_(conv) if op in IN else col.not_in(conv))
        self.charge(1, 1, pointer)
        value = self.value(name, raw, vp)
        if op in LIKE | NOT_LIKE | ILIKE | NOT_ILIKE:
            if isinstance(raw, bool) or not isinstance(raw, str | int | float):
                raise BadRequest("expected a string", pointer=vp)
            pat = _pattern(op, str(raw), vp)
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
        if len(raw) > limits.MAX_QUERY_CHARS:
            raise BadRequest(f"query longer than {limits.MAX_QUERY_CHARS} characters", pointer="/query")
        try:
            items = jsonutil.loads(raw, max_depth=limits.MAX_QUERY_DEPTH)
        except jsonutil.JSONError as exc:
            raise BadRequest(f"query: {exc}", pointer="/query") from None
        if isinstance(items, dict):
            items = [items]
        if not isinstance(items, list):
            raise BadRequest("query must be a JSON array of filter objects", pointer="/query")
        if len(items) > limits.MAX_FILTERS:
            raise BadRequest(f"at most {limits.MAX_FILTERS} filters", pointer="/query")
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
        check_pattern(words, "/filter", "filter")
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
        parts = [p.strip() for p in spec.split(",") if p.strip()]
        if raw and len(parts) > limits.MAX_SORT_KEYS:
            raise BadRequest(f"sort takes at most {limits.MAX_SORT_KEYS} keys", pointer="/sort", parameter="sort")
        out: list[Any] = []
        first_desc: bool | None = None
        for part in parts:
            desc = part.startswith("-")
            name = part.lstrip("+-")
            if name == "id":
                col: Any = self.t.c.id
            elif raw is None and name not in self.t.c:
                continue  # a stale DefaultOrder never breaks listing
            else:
                col = self.column(name, "/sort", "sort")
            out.append(col.desc() if desc else col.asc())
            first_desc = desc if first_desc is None else first_desc
        out.append(self.t.c.id.desc() if first_desc else self.t.c.id.asc())  # stable pages
        return out


def include_names(multi: Mapping[str, Sequence[str]]) -> list[str]:
    """Relation names asked for by `included_relations=` and `include=` (bounded)."""
    names = [x.strip() for k in ("included_relations", "include") for v in multi.get(k, []) for x in v.split(",")]
    names = list(dict.fromkeys(n for n in names if n))
    if len(names) > limits.MAX_INCLUDES:
        raise BadRequest(f"at most {limits.MAX_INCLUDES} included relations", parameter="included_relations")
    return names


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
        try:
            lq.where += qb.filters(params["query"])
        except BadRequest as exc:
            exc.parameter = exc.parameter or "query"
            raise
    else:
        text = params.get("filter") or params.get("filter[]")
        if text:
            cond = qb.text_filter(text)
            if cond is not None:
                lq.where.append(cond)
    for name in tm.fks:
        if name in params:
            refs = [r for r in params[name].split(",") if r]
            if len(refs) > limits.MAX_IN_VALUES:
                raise BadRequest(f"{name}: at most {limits.MAX_IN_VALUES} references", parameter=name)
            qb.charge(1, len(refs), f"/{name}")
            lq.where.append(tm.sa.c[name].in_(qb.refs_in(name, refs, f"/{name}")))
    lq.order_by = qb.sort(params.get("sort"))
    for key, newer in (("page[after]", True), ("page[before]", False)):
        if params.get(key):
            ref = parse_uuid(params[key])
            if ref is None:
                raise BadRequest(f"{key} must be a reference id", pointer=f"/{key}", parameter=key)
            lq.cursors.append((key, ref))
            t = tm.sa
            anchor = sa.select(t.c.id).where(t.c.reference_id == ref).scalar_subquery()
            lq.where.append(t.c.id > anchor if newer else t.c.id < anchor)
            lq.order_by = [t.c.id.asc() if newer else t.c.id.desc()]  # keyset paging follows insertion order
    lq.page = limits.whole_number(params.get("page[number]"), "page[number]", 1, limits.MAX_PAGE_NUMBER, default=1)
    size = limits.whole_number(
        params.get("page[size]"), "page[size]", 1, limits.MAX_PAGE_SIZE_PARAM, default=DEFAULT_PAGE_SIZE
    )
    lq.size = min(size, max(max_page_size, 1))
    fields = params.get("fields") or params.get(f"fields[{tm.name}]")
    if fields:
        names = [f.strip() for f in fields.split(",") if f.strip()]
        if len(names) > limits.MAX_FIELDS:
            raise BadRequest(f"fields takes at most {limits.MAX_FIELDS} names", pointer="/fields", parameter="fields")
        for n in names:
            qb.column(n, "/fields", "fields")
        lq.fields = sorted(set(names) | {"reference_id", "permission", "user_account_id"})
    lq.include = include_names(multi)
    return lq
