"""Write streams into a store: bounded by the store's upload limit, and leaving nothing behind on failure.

`Writer` writes the file itself (a new upload, an append, a local resumed upload). `rewrite` serves a
resumed upload (`REST n` + `STOR`) on an object store, which cannot write into an object: the first `n`
bytes of the object are copied into a hidden sibling object, the new data follows, and on close the
sibling replaces the object. Until then the object is unchanged, and a failed or aborted upload removes
only the sibling.
"""

from __future__ import annotations

import contextlib
import errno
import uuid
from typing import TYPE_CHECKING, Any

from portside.storage.paths import Segments, join

if TYPE_CHECKING:
    from portside.storage.store import Store

HIDDEN = ".portside-"  # names the store keeps for itself (folder markers, rewrites): never listed
LOCAL_BUFFER = 64 * 1024  # a local file's write buffer: small chunks are gathered, big ones go straight to the kernel
COPY_CHUNK = 1024 * 1024


class UploadTooLarge(OSError):
    def __init__(self, limit: int):
        super().__init__(errno.EFBIG, f"upload exceeds the limit of {limit} bytes")


class Writer:
    """A write stream into the store that stops at `limit` bytes, discarding what it wrote."""

    def __init__(self, store: Store, parts: Segments, raw: Any, limit: int, start: int = 0):
        self.store, self.parts, self.raw, self.limit = store, parts, raw, limit
        self.written = start
        self.name = "/" + join(parts)
        self.failed = False

    @property
    def closed(self) -> bool:
        return bool(self.raw.closed)

    def write(self, data: bytes) -> int:
        if self.failed:
            raise UploadTooLarge(self.limit)
        if self.limit and self.written + len(data) > self.limit:
            self.abort()
            raise UploadTooLarge(self.limit)
        self.raw.write(data)
        self.written += len(data)
        return len(data)

    def abort(self) -> None:
        self.failed = True
        discard = getattr(self.raw, "discard", None)
        with contextlib.suppress(Exception):
            if callable(discard):
                discard()
            self.raw.close()
        with contextlib.suppress(Exception):
            self.store.remove(self.parts)

    def close(self) -> None:
        if not self.failed and not self.raw.closed:
            self.raw.close()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is not None:
            self.abort()
        else:
            self.close()


class Replacing(Writer):
    """Writes a hidden sibling (`parts`) that replaces `target` on close."""

    def __init__(self, store: Store, parts: Segments, raw: Any, limit: int, target: Segments):
        super().__init__(store, parts, raw, limit)
        self.target = target
        self.name = "/" + join(target)

    def close(self) -> None:
        if self.failed or self.raw.closed:
            return
        try:
            self.raw.close()
            self.store.fs.mv(self.store.path(self.parts), self.store.path(self.target))
        except BaseException:
            self.failed = True
            with contextlib.suppress(Exception):
                self.store.remove(self.parts)
            raise


def rewrite(store: Store, parts: Segments, offset: int) -> Replacing:
    """A resumed upload into an object store: the object's first `offset` bytes, then what is written."""
    if not parts:
        raise IsADirectoryError(errno.EISDIR, "is a folder")
    if store.max_upload and offset > store.max_upload:
        raise UploadTooLarge(store.max_upload)
    sibling = (*parts[:-1], f"{HIDDEN}resume-{uuid.uuid4().hex}")
    writer = Replacing(store, sibling, store.fs.open(store.path(sibling), "wb"), store.max_upload, parts)
    try:
        with store.fs.open(store.path(parts), "rb") as src:
            left = offset
            while left:
                chunk = src.read(min(left, COPY_CHUNK))
                if not chunk:
                    raise OSError(errno.EINVAL, "the resume offset is past the end of the file")
                writer.write(chunk)
                left -= len(chunk)
    except BaseException:
        writer.abort()
        raise
    return writer
