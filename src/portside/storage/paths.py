"""Path safety for every store path, in one place.

A store path is a tuple of segments below a store's root. `segments(text)` accepts a relative path made
of plain names and refuses (with `BadRequest`) anything that could leave the root or mean something else
than it shows: NUL and other control characters, backslashes, `.`/`..` segments, percent-encoded
separators or dots, an absolute path (with `allow_absolute=False`), over-long names. Symlinks are checked
by the store itself (`stores.Store.local_path`), because only it knows where its root really is.
"""

from __future__ import annotations

import re
import unicodedata

from portside.errors import BadRequest

MAX_SEGMENT = 255
MAX_DEPTH = 64
MAX_PATH = 4096
_ENCODED = re.compile(r"%(2e|2f|5c|00)", re.IGNORECASE)

Segments = tuple[str, ...]


class UnsafePath(BadRequest):
    """A path that would leave its root or hide what it names."""


class SymlinkEscape(UnsafePath):
    """A path whose real location (symlinks resolved) is outside its root."""


def check_segment(name: str) -> str:
    if not name or name in (".", ".."):
        raise UnsafePath(f"unsafe path segment {name!r}")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_SEGMENT:
        raise UnsafePath("path segment too long")
    if "/" in name or "\\" in name or _ENCODED.search(name):
        raise UnsafePath(f"unsafe path segment {name!r}")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in name):
        raise UnsafePath("control characters in path")
    return name


def segments(text: str, *, allow_absolute: bool = False) -> Segments:
    """The segments of `text` (empty tuple for the root itself)."""
    if not isinstance(text, str):
        raise UnsafePath("path must be a string")
    if len(text) > MAX_PATH:
        raise UnsafePath("path too long")
    if "\x00" in text or "\\" in text:
        raise UnsafePath("unsafe characters in path")
    if text.startswith("/") and not allow_absolute:
        raise UnsafePath("path must be relative")
    parts = tuple(p for p in text.split("/") if p not in ("",))
    if len(parts) > MAX_DEPTH:
        raise UnsafePath("path too deep")
    return tuple(check_segment(p) for p in parts)


def join(parts: Segments) -> str:
    return "/".join(parts)
