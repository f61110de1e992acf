"""The content inside a file column (a JSON list of `{name, file|contents, type, path}` with base64 data).

Used by collaborative editing: a row-bound document is seeded from the first file and written back by
replacing that file's content (the other entries are kept). A first file of type `x-crdt/yjs` holds a Yjs
update (the document state itself, `bytes` here); any other first file is text, decoded as UTF-8 (`str`).
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from typing import Any, BinaryIO

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


YJS_TYPE = "x-crdt/yjs"


def is_yjs(item: Any) -> bool:
    """Whether a file entry holds a Yjs update (its `type`, ignoring case and parameters)."""
    kind = item.get("type") if isinstance(item, dict) else None
    return isinstance(kind, str) and kind.split(";")[0].strip().lower() == YJS_TYPE


def decode(data: str) -> bytes | None:
    """A file entry's `contents`/`file` data as bytes (base64 or a data: URL), None when malformed."""
    return _decode(data)


def content_of(value: Any) -> str | bytes | None:
    """The first file's content: its Yjs update (bytes) for an `x-crdt/yjs` entry, else its text; None
    when the column holds no file."""
    for item in _entries(value):
        if not isinstance(item, dict):
            continue
        yjs = is_yjs(item)
        for key in ("contents", "file"):
            data = item.get(key)
            if isinstance(data, str):
                raw = _decode(data)
                if raw is not None:
                    return raw if yjs else raw.decode("utf-8", "replace")
        return b"" if yjs else ""
    return None


def with_content(value: Any, content: str | bytes, default_name: str) -> list[dict[str, Any]]:
    """The column value with the first file's content replaced: text, or (bytes) a Yjs update stored as an
    `x-crdt/yjs` entry. A new file when the column is empty."""
    entries = [e for e in _entries(value) if isinstance(e, dict)]
    yjs = isinstance(content, bytes)
    encoded = base64.b64encode(content if isinstance(content, bytes) else content.encode()).decode()
    if not entries:
        if yjs:
            return [{"name": default_name.rsplit(".", 1)[0] + ".yjs", "type": YJS_TYPE, "contents": encoded}]
        return [{"name": default_name, "type": "text/plain", "contents": encoded}]
    first = dict(entries[0])
    if yjs:
        first["type"] = YJS_TYPE
    key = "file" if "file" in first and "contents" not in first else "contents"
    first.pop("file" if key == "contents" else "contents", None)
    first[key] = encoded
    return [first, *entries[1:]]


_DECODE_CHUNK = 4 * 1024 * 1024  # characters of base64 decoded at a time (a multiple of 4)


def decode_into(data: str, out: BinaryIO) -> int | None:
    """`decode` written to `out` a chunk at a time (the decoded bytes never whole in memory): the number of
    bytes written, None when malformed (`out` then holds a partial result the caller discards)."""
    if data.startswith("data:"):
        header, _, data = data.partition(",")
        if not header.lower().endswith(";base64"):
            raw = urllib.parse.unquote_to_bytes(data)
            out.write(raw)
            return len(raw)
    for alt in (None, b"-_"):
        out.seek(0)
        out.truncate()
        written = _decode_chunks(data, out, alt)
        if written is not None:
            return written
    return None


def _decode_chunks(data: str, out: BinaryIO, alt: bytes | None) -> int | None:
    pending, written = "", 0
    for start in range(0, len(data), _DECODE_CHUNK):
        pending += "".join(data[start : start + _DECODE_CHUNK].split())
        cut = len(pending) - len(pending) % 4
        try:
            chunk = base64.b64decode(pending[:cut], altchars=alt, validate=True)
        except (binascii.Error, ValueError):
            return None
        out.write(chunk)
        written += len(chunk)
        pending = pending[cut:]
    if pending:
        try:
            chunk = base64.b64decode(pending + "=" * (-len(pending) % 4), altchars=alt, validate=True)
        except (binascii.Error, ValueError):
            return None
        out.write(chunk)
        written += len(chunk)
    return written
