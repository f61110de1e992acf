"""One open cloud store: an fsspec filesystem and a root inside it, with the operations the edges need.

Every path comes in as segments (`paths.segments`) and is joined under the root here; a local store also
resolves symlinks and refuses a path whose real location is outside the real root. Reads and writes are
file objects (streams), never whole files; a write past `max_upload` bytes fails and leaves nothing behind.
All calls block: async callers run them in a thread, the FTP edge calls them from its session threads.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import stat as st
from dataclasses import dataclass
from typing import Any, BinaryIO

from fsspec import AbstractFileSystem

from portside.storage.paths import Segments, SymlinkEscape, UnsafePath, join
from portside.storage.writers import HIDDEN, LOCAL_BUFFER, Writer, rewrite

DIR_MARKER = HIDDEN + "folder"  # keeps an empty folder alive in an object store (hidden from listings)
MAX_VIEWS = 4096


@dataclass(frozen=True)
class Entry:
    name: str
    is_dir: bool
    size: int
    mtime: float


def _mtime(info: dict[str, Any]) -> float:
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, dt.datetime):
            return value.timestamp()
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return 0.0


class Store:
    def __init__(self, row_id: int, name: str, kind: str, fs: AbstractFileSystem, root: str, max_upload: int):
        self.row_id, self.name, self.kind, self.fs = row_id, name, kind, fs
        self.root = root.rstrip("/") or "/"
        self.max_upload = max_upload
        self.local = kind in ("local", "file")
        self._views: dict[Segments, Store] = {}
        self._base: tuple[Store, Segments] | None = None  # a view: its store and folder
        self._resolved: str | None = None  # a store's real root, once it exists

    def view(self, folder: Segments) -> Store:
        """The same store rooted at `folder` (a site's folder): no path of the view can leave it, and the
        folder itself may not lead out of the store. Views are kept as long as their store (a changed store
        row opens a new store)."""
        if not folder:
            return self
        view = self._views.get(folder)
        if view is None:
            root = f"{self.root.rstrip('/')}/{join(folder)}"
            view = Store(self.row_id, self.name, self.kind, self.fs, root, self.max_upload)
            view._base = (self, folder)
            if len(self._views) >= MAX_VIEWS:
                self._views.clear()
            self._views[folder] = view
        view.max_upload = self.max_upload
        return view

    def ensure_root(self) -> None:
        """A local store's (or view's) folder exists (object stores have no folders to make)."""
        if self.local and not os.path.isdir(self.root):
            self.path(())  # never through a symlink that leaves the store
            os.makedirs(self.root, 0o750, exist_ok=True)

    def _real_root(self) -> str:
        """The real location of the root. A store's own root is resolved once (again if it is replaced by a
        link); a view's folder is walked from its store's root on every call, so a folder that is, or
        becomes, a link out of the store is refused (SymlinkEscape) and never followed."""
        if self._base is not None:
            base, folder = self._base
            full, linked = base._walk(base._real_root(), folder)
            return os.path.realpath(full) if linked else full
        real = self._resolved
        if real is None or os.path.islink(real):
            real = os.path.realpath(self.root)
            self._resolved = real if os.path.isdir(real) else None
        return real

    @staticmethod
    def _walk(real_root: str, parts: Segments) -> tuple[str, bool]:
        """`parts` below `real_root` (one lstat per segment; a full `realpath` only when a link is met, which
        must lead to a place inside the root), and whether a link was met."""
        base = real_root.rstrip("/")
        full = f"{base}/{join(parts)}" if parts else real_root
        at = base
        for name in parts:
            at = f"{at}/{name}"
            try:
                mode = os.lstat(at).st_mode
            except OSError:
                return full, False  # missing (or not a folder): nothing below can be a link
            if st.S_ISLNK(mode):
                real = os.path.realpath(full)
                if real != real_root and not real.startswith(base + "/"):
                    raise SymlinkEscape("path escapes the store root through a symlink")
                return full, True
        return full, False

    def path(self, parts: Segments) -> str:
        """The filesystem path of `parts`: in a local store built on the root's real location, and refused
        when a symlink on the way leads out of the root."""
        if not self.local:
            return self.root if not parts else f"{self.root.rstrip('/')}/{join(parts)}"
        return self._walk(self._real_root(), parts)[0]

    # -- queries -------------------------------------------------------------------------------------

    def info(self, parts: Segments) -> Entry | None:
        path = self.path(parts)
        if self.local:  # the plain stat (fsspec's `info` adds path handling on every call)
            try:
                s = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                return None
            is_dir = st.S_ISDIR(s.st_mode)
            return Entry(parts[-1] if parts else "", is_dir, 0 if is_dir else s.st_size, s.st_mtime)
        try:
            info = self.fs.info(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        name = parts[-1] if parts else ""
        is_dir = info.get("type") == "directory"
        return Entry(name, is_dir, 0 if is_dir else int(info.get("size") or 0), _mtime(info))

    def listdir(self, parts: Segments) -> list[Entry]:
        path = self.path(parts)
        out = []
        for info in self.fs.ls(path, detail=True):
            name = str(info["name"]).rstrip("/").rsplit("/", 1)[-1]
            if not name or name.startswith(HIDDEN) or str(info["name"]).rstrip("/") == path.rstrip("/"):
                continue
            is_dir = info.get("type") == "directory"
            if self.local and os.path.islink(f"{path}/{name}"):
                try:  # a symlink is listed only when it stays inside the root
                    self.path((*parts, name))
                except UnsafePath:
                    continue
            out.append(Entry(name, is_dir, 0 if is_dir else int(info.get("size") or 0), _mtime(info)))
        return sorted(out, key=lambda e: e.name)

    # -- streams -------------------------------------------------------------------------------------

    def open_read(self, parts: Segments) -> BinaryIO:
        if self.local:  # the plain file: no wrapper between the transfer and the kernel
            return open(self.path(parts), "rb")
        f: BinaryIO = self.fs.open(self.path(parts), "rb")
        return f

    def open_write(self, parts: Segments, *, append: bool = False, offset: int | None = None) -> Writer:
        """A bounded write stream: truncate, append, or keep the first `offset` bytes and write from there
        (in place in a local store; an object store's object is rewritten and replaced on close)."""
        path = self.path(parts)
        if offset is not None:
            if not self.local:
                return rewrite(self, parts, offset)
            raw: Any = open(path, "r+b", buffering=LOCAL_BUFFER)  # noqa: SIM115 - the Writer closes it
            raw.seek(offset)
            raw.truncate()
            return Writer(self, parts, raw, self.max_upload, offset)
        if append:
            start = self.info(parts)
            raw = open(path, "ab", buffering=LOCAL_BUFFER) if self.local else self.fs.open(path, "ab")  # noqa: SIM115
            return Writer(self, parts, raw, self.max_upload, start.size if start else 0)
        raw = open(path, "wb", buffering=LOCAL_BUFFER) if self.local else self.fs.open(path, "wb")  # noqa: SIM115
        return Writer(self, parts, raw, self.max_upload)

    # -- changes -------------------------------------------------------------------------------------

    def mkdir(self, parts: Segments) -> None:
        """One folder (its parent must exist)."""
        if self.info(parts) is not None:
            raise FileExistsError(errno.EEXIST, "already exists")
        if parts[:-1] and not self._is_dir(parts[:-1]):
            raise FileNotFoundError(errno.ENOENT, "no such folder")
        if self.local:
            os.mkdir(self.path(parts), 0o750)
        else:
            self.fs.pipe_file(self.path((*parts, DIR_MARKER)), b"")

    def makedirs(self, parts: Segments) -> None:
        """A folder and its missing parents (uploads into a new folder); nothing to do in an object store."""
        if self.local:
            os.makedirs(self.path(parts), 0o750, exist_ok=True)

    def _is_dir(self, parts: Segments) -> bool:
        e = self.info(parts)
        return e is not None and e.is_dir

    def remove(self, parts: Segments) -> None:
        e = self.info(parts)
        if e is None:
            raise FileNotFoundError(errno.ENOENT, "no such file")
        if e.is_dir:
            raise IsADirectoryError(errno.EISDIR, "is a folder")
        self.fs.rm_file(self.path(parts))

    def rmdir(self, parts: Segments) -> None:
        if not self._is_dir(parts):
            raise NotADirectoryError(errno.ENOTDIR, "no such folder")
        if self.listdir(parts):
            raise OSError(errno.ENOTEMPTY, "folder not empty")
        if self.local:
            os.rmdir(self.path(parts))
        else:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self.path((*parts, DIR_MARKER)))

    def move(self, src: Segments, dst: Segments) -> None:
        if self.info(src) is None:
            raise FileNotFoundError(errno.ENOENT, "no such file")
        if self.local:
            os.rename(self.path(src), self.path(dst))
        else:
            self.fs.mv(self.path(src), self.path(dst), recursive=True)

    def invalidate(self) -> None:
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache()
