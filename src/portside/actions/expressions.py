"""Outcome attribute values: `~path` lookups, `$path` string templates, literals.

JavaScript expressions (`!...`, `{{...}}`, `js:...`) are refused with a clear 400 naming the expression:
an embedded engine would be a sandbox to maintain, and Daptin's exposes the environment and secrets.
"""

from __future__ import annotations

import re
from typing import Any

from portside.errors import BadRequest, Kind

TEMPLATE_RE = re.compile(r"\$([A-Za-z_.][A-Za-z0-9_.\[\]]*)")
INDEX_RE = re.compile(r"^([^\[]*)((?:\[\d+\])*)$")
MAX_DEPTH = 16


class MissingPath(KeyError):
    def __init__(self, path: str):
        super().__init__(path)
        self.path = path


def lookup(ctx: dict[str, Any], path: str) -> Any:
    """`a.b[0].c` in the context; a leading `.` (or empty head) means the subject row."""
    if path.startswith(".") or path == "":
        path = "subject" + path
    cur: Any = ctx
    for part in path.split("."):
        m = INDEX_RE.match(part)
        if m is None:
            raise MissingPath(path)
        key, indexes = m.group(1), re.findall(r"\[(\d+)\]", m.group(2))
        if key:
            if isinstance(cur, dict) and key in cur:
                cur = cur[key]
            elif isinstance(cur, list) and len(cur) == 1 and isinstance(cur[0], dict) and key in cur[0]:
                cur = cur[0][key]  # a one-row result reads like the row
            else:
                raise MissingPath(path)
        for i in indexes:
            if not isinstance(cur, list) or int(i) >= len(cur):
                raise MissingPath(path)
            cur = cur[int(i)]
    return cur


def _is_js(value: str) -> bool:
    return value.startswith("!") or value.startswith("js:") or (value.startswith("{{") and value.endswith("}}"))


def evaluate(value: Any, ctx: dict[str, Any], depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise BadRequest("outcome attributes nested too deeply")
    if isinstance(value, dict):
        return {k: evaluate(v, ctx, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [evaluate(v, ctx, depth + 1) for v in value]
    if not isinstance(value, str) or value == "":
        return value
    if _is_js(value):
        raise BadRequest(f"JavaScript expressions are not supported: {value[:80]!r}", kind=Kind.UNSUPPORTED_EXPRESSION)
    if value.startswith("~"):
        try:
            return lookup(ctx, value[1:])
        except MissingPath as exc:
            raise BadRequest(f"no value for {value!r}: missing {exc.path!r}") from None

    def sub(m: re.Match[str]) -> str:
        try:
            found = lookup(ctx, m.group(1))
        except MissingPath:
            raise BadRequest(f"no value for ${m.group(1)} in {value!r}") from None
        return "" if found is None else str(found)

    return TEMPLATE_RE.sub(sub, value)


def truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in {"true", "1"}) or value == 1
