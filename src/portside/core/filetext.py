"""The text inside a file column (a JSON list of `{name, file|contents, type, path}` with base64 data).

Used by collaborative editing: a row-bound document is seeded from the first file's content decoded as
UTF-8, and written back by replacing that file's content (the other entries are kept).
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from typing import Any

from portside.tools import jsonutil


def _entries(value: Any) -> list[Any]:
    if isinstance(value, str):
        if not value.strip():
            return []
        try:
            value = jsonutil.loads(value)
        except jsonutil.JSONError:
            return []
    return list(value) if isinstance(value, list) else []


def _decode(data: str) -> bytes | None:
    if data.startswith("data:"):
        header, _, data = data.partition(",")
        if not header.lower().endswith(";base64"):
            return urllib.parse.unquote_to_bytes(data)
    compact = "".join(data.split())
    compact += "=" * (-len(compact) % 4)
    for alt in (None, b"-_"):
        try:
            return base64.b64decode(compact, altchars=alt, validate=True)
        except (binascii.Error, ValueError):
            continue
    return None


def text_of(value: Any) -> str | None:
    """The first file's content as text (None when the column holds no file)."""
    for item in _entries(value):
        if not isinstance(item, dict):
            continue
        for key in ("contents", "file"):
            data = item.get(key)
            if isinstance(data, str):
                raw = _decode(data)
                if raw is not None:
                    return raw.decode("utf-8", "replace")
        return ""
    return None


def with_text(value: Any, text: str, default_name: str) -> list[dict[str, Any]]:
    """The column value with the first file's content replaced by `text` (a new text file if empty)."""
    entries = [e for e in _entries(value) if isinstance(e, dict)]
    encoded = base64.b64encode(text.encode()).decode()
    if not entries:
        return [{"name": default_name, "type": "text/plain", "contents": encoded}]
    first = dict(entries[0])
    key = "file" if "file" in first and "contents" not in first else "contents"
    first.pop("file" if key == "contents" else "contents", None)
    first[key] = encoded
    return [first, *entries[1:]]
