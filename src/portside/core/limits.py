"""Bounds on client-controlled numbers and query shapes, in one place (README "API summary" lists them).

Every whole number a client sends in a URL or a /live request (page numbers and sizes, feed pages, lease
seconds, event offsets) goes through `whole_number`: ASCII digits only (no sign, spaces, underscores,
other scripts' digits, exponents or hex), then an explicit range, or a 400 naming the parameter.
"""

from __future__ import annotations

from typing import Any

from portside.errors import BadRequest

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

# list parameters of /api/{table}
MAX_PAGE_NUMBER = INT32_MAX  # (page[number] - 1) * page[size] stays far inside a 64-bit OFFSET
MAX_PAGE_SIZE_PARAM = INT32_MAX  # larger values are a 400; within it, sizes above api.max_page_size are capped
MAX_QUERY_CHARS = 65_536  # length of the `query=` JSON text
MAX_QUERY_DEPTH = 4  # array > filter object > value list > scalar
MAX_FILTERS = 50  # filter objects in one `query=`
MAX_IN_VALUES = 1000  # values of one in/any-of/none-of list (also the refs of one `{fk}=` filter)
MAX_VALUES = 2000  # bound values of all filters of one request together (far below SQLite and PostgreSQL limits)
MAX_TERMS = 256  # comparisons of all filters together (fuzzy: columns times words); keeps SQL expressions shallow
MAX_FUZZY_COLUMNS = 20  # columns of one fuzzy filter
MAX_FUZZY_WORDS = 10  # words of one fuzzy value
MAX_VALUE_CHARS = 10_000  # one filter value (also `filter=` text)
MAX_PATTERN_CHARS = 1000  # one like/contains/... pattern
MAX_PATTERN_WILDCARDS = 10  # `%` in one pattern (SQL LIKE backtracks on each)
MAX_SORT_KEYS = 10
MAX_FIELDS = 200
MAX_INCLUDES = 20  # names in included_relations/include

# /live
MAX_OFFSET = INT64_MAX  # event offsets (`since`)


def whole_number(raw: Any, name: str, lo: int, hi: int, *, default: int | None = None) -> int:
    """`raw` (a URL parameter's text, or a JSON integer) as an int in [lo, hi]; anything else is a 400 whose
    `source.parameter` names `name`. An absent or empty value gives `default` when there is one."""
    if (raw is None or raw == "") and default is not None:
        return default
    problem = f"{name} must be a whole number from {lo} to {hi}"
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= len(str(hi)) + 2:
        value = int(raw)
    else:
        raise BadRequest(problem, parameter=name)
    if not lo <= value <= hi:
        raise BadRequest(problem, parameter=name)
    return value
