"""Checks for asset (file list) column values: plain file names, relative paths, valid base64."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from pycrdt import Doc

from portside.core import filetext


def _base64_ok(data: str) -> bool:
    if data.startswith("data:"):
        header, sep, data = data.partition(",")
        if not sep:
            return False
        if not header.lower().endswith(";base64"):
            return True  # percent-encoded text payload
    compact = "".join(data.split())
    compact += "=" * (-len(compact) % 4)
    for alt in (None, b"-_"):
        try:
            base64.b64decode(compact, altchars=alt, validate=True)
            return True
        except (binascii.Error, ValueError):
            continue
    return False


def _bad_path(p: str) -> bool:
    return "\x00" in p or "\\" in p or p.startswith("/") or ".." in p.split("/")


def file_problem(i: int, item: Any) -> str | None:
    if not isinstance(item, dict):
        return f"file {i} must be an object"
    name = item.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        return f"file {i} needs a string name"
    if "/" in name or _bad_path(name) or name in (".", ".."):
        return f"file {i} has an unsafe name"
    path = item.get("path")
    if path is not None and (not isinstance(path, str) or _bad_path(path)):
        return f"file {i} has an unsafe path"
    if item.get("type") is not None and not isinstance(item.get("type"), str):
        return f"file {i} type must be a string"
    for key in ("file", "contents"):
        data = item.get(key)
        if data is not None and (not isinstance(data, str) or not _base64_ok(data)):
            return f"file {i} {key} is not valid base64"
        if isinstance(data, str) and filetext.is_yjs(item) and not _yjs_ok(filetext.decode(data)):
            return f"file {i} {key} is not a Yjs update (type {filetext.YJS_TYPE})"
    return None


def _yjs_ok(data: bytes | None) -> bool:
    if data is None:
        return False
    if not data:
        return True  # an empty document
    try:
        Doc().apply_update(data)
    except Exception:  # pycrdt raises its own error types for undecodable updates
        return False
    return True
