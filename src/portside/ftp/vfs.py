"""The FTP file system: `/` lists one folder per site; `/<hostname>/<path>` is that path in the site's folder
of its cloud store, with the rights of spec §E.4 and the path rules of §E.5.

pyftpdlib resolves `..` lexically against the working directory before a path gets here (so
`/a.com/../b.com/x` is a path in `b.com`, checked against b.com's rights); backslashes count as `/`. The
first segment names the site; the rest goes through `storage.paths` (no `..`, NUL, control or encoded
separators) and the store's symlink check against the site's own folder. A site the user may not Peek is
reported exactly like a site that does not exist. Every refusal is a `FilesystemError`, which pyftpdlib
answers with `550 <reason>.`
"""

from __future__ import annotations

import errno
import functools
import io
import os
import posixpath
import stat as st
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pyftpdlib.filesystems import AbstractedFS, FilesystemError

from portside import log
from portside.auth import access
from portside.auth.permissions import CREATE, DELETE, PEEK, READ, UPDATE
from portside.errors import PortsideError
from portside.storage import paths
from portside.storage.sites import Site
from portside.storage.store import Entry, Store

if TYPE_CHECKING:
    from portside.ftp.handler import PortsideHandler

logger = log.get("ftp")
F = TypeVar("F", bound=Callable[..., Any])
NO_SUCH_PATH = "no such path"
INVALID_SITE = "invalid site"
DENIED = "permission denied"
ESCAPES = "path escapes site root"
DIR_MODE = st.S_IFDIR | 0o750
FILE_MODE = st.S_IFREG | 0o600


def guarded(method: F) -> F:
    """Store failures of any kind become a 550 reply (pyftpdlib handles OSError and FilesystemError only;
    anything else would end the session)."""

    @functools.wraps(method)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except (FilesystemError, OSError):
            raise
        except PortsideError as exc:
            raise FilesystemError(f"refused ({exc.code})") from None
        except Exception:
            logger.exception("FTP store operation failed")
            raise FilesystemError("the store failed") from None

    return cast(F, run)


def _stat(entry: Entry | None, is_dir: bool = False) -> os.stat_result:
    size = 0 if entry is None or entry.is_dir else entry.size
    mtime = entry.mtime if entry is not None and entry.mtime else time.time()
    mode = DIR_MODE if is_dir or (entry is not None and entry.is_dir) else FILE_MODE
    return os.stat_result((mode, 0, 0, 1, 0, 0, size, mtime, mtime, mtime))


class Target:
    """A resolved FTP path: the root, a site's root, or a path inside a site."""

    def __init__(self, site: Site | None, store: Store | None, parts: paths.Segments):
        self.site, self.store, self.parts = site, store, parts

    def need_store(self) -> Store:
        if self.store is None:
            raise FilesystemError(INVALID_SITE)
        return self.store


class SiteFS(AbstractedFS):  # type: ignore[misc]
    cmd_channel: PortsideHandler

    # -- paths ---------------------------------------------------------------------------------------

    def ftpnorm(self, ftppath: str) -> str:
        return str(super().ftpnorm(ftppath.replace("\\", "/")))

    def ftp2fs(self, ftppath: str) -> str:
        return self.ftpnorm(ftppath)

    def fs2ftp(self, fspath: str) -> str:
        return posixpath.normpath("/" + fspath.lstrip("/"))

    def validpath(self, path: str) -> bool:
        return True  # every path is resolved (and refused when unsafe) by `resolve`

    def realpath(self, path: str) -> str:
        return path

    def _right(self, site: Site, right: int) -> bool:
        actor = self.cmd_channel.actor
        return actor is not None and access.site_right(actor, site.grants, right)

    def resolve(self, path: str, right: int) -> Target:
        """The target of `path` if the user holds `right` on its site (PEEK for the root of a site)."""
        if "\x00" in path:
            raise FilesystemError(NO_SUCH_PATH)
        segs = [p for p in path.split("/") if p]
        if not segs:
            return Target(None, None, ())
        backend = self.cmd_channel.backend
        site = backend.site(segs[0])
        if site is None or not self._right(site, PEEK):
            raise FilesystemError(NO_SUCH_PATH)
        if not self._right(site, right):
            raise FilesystemError(DENIED)
        try:
            parts = paths.segments("/".join(segs[1:]))
        except PortsideError:
            raise FilesystemError(ESCAPES) from None
        store = backend.store(site)
        try:
            store.path(parts)  # the symlink check against the site's folder
        except paths.SymlinkEscape:
            raise FilesystemError(ESCAPES + " through symlink") from None
        return Target(site, store, parts)

    def _entry(self, t: Target) -> Entry | None:
        if t.site is None or not t.parts:
            return Entry(t.site.hostname if t.site else "", True, 0, time.time())
        return t.need_store().info(t.parts)

    # -- directories ---------------------------------------------------------------------------------

    @guarded
    def chdir(self, path: str) -> None:
        t = self.resolve(path, PEEK)
        e = self._entry(t)
        if e is None or not e.is_dir:
            raise FilesystemError(NO_SUCH_PATH)
        self.cwd = self.fs2ftp(path)

    @guarded
    def listdir(self, path: str) -> list[str]:
        t = self.resolve(path, READ)
        if t.site is None:
            return sorted({s.hostname for s in self.cmd_channel.backend.sites() if self._right(s, PEEK)})
        try:
            return [e.name for e in t.need_store().listdir(t.parts)]
        except FileNotFoundError:
            if not t.parts:
                return []  # the site's folder does not exist yet
            raise

    def listdirinfo(self, path: str) -> list[str]:
        return self.listdir(path)

    @guarded
    def mkdir(self, path: str) -> None:
        t = self.resolve_for_root_change(path, CREATE)
        t.need_store().mkdir(t.parts)

    @guarded
    def rmdir(self, path: str) -> None:
        t = self.resolve_for_root_change(path, DELETE)
        t.need_store().rmdir(t.parts)

    def resolve_for_root_change(self, path: str, right: int) -> Target:
        """A target that must be inside a site (never `/`, never a site's own folder)."""
        segs = [p for p in path.split("/") if p]
        if len(segs) <= 1:
            site = self.cmd_channel.backend.site(segs[0]) if segs else None
            if site is None or not self._right(site, PEEK):  # a hidden site is as invalid as a missing one
                raise FilesystemError(INVALID_SITE)
            raise FilesystemError("cannot change a site root")
        return self.resolve(path, right)

    # -- files ---------------------------------------------------------------------------------------

    @guarded
    def open(self, filename: str, mode: str) -> Any:
        if "r" in mode and "+" not in mode:
            t = self.resolve(filename, READ)
            e = self._entry(t)
            if e is None or e.is_dir or not t.parts:
                raise FilesystemError(NO_SUCH_PATH)
            return _Reader(t.need_store().open_read(t.parts), filename)
        t = self.resolve_for_root_change(filename, PEEK)  # once: then the right the write needs
        assert t.site is not None
        if not self._right(t.site, UPDATE if self._entry(t) is not None else CREATE):
            raise FilesystemError(DENIED)
        store = t.need_store()
        if mode.startswith("r+"):  # STOR after REST: pyftpdlib checks the offset, then seeks to it
            return _Resumable(store, t.parts, filename)
        return store.open_write(t.parts, append="a" in mode)

    def mkstemp(self, suffix: str = "", prefix: str = "", dir: str | None = None, mode: str = "wb") -> Any:
        raise FilesystemError("STOU is not supported")

    @guarded
    def remove(self, path: str) -> None:
        t = self.resolve_for_root_change(path, DELETE)
        t.need_store().remove(t.parts)

    @guarded
    def rename(self, src: str, dst: str) -> None:
        a = [p for p in src.split("/") if p]
        b = [p for p in dst.split("/") if p]
        if a and b and a[0].lower() != b[0].lower():
            raise FilesystemError("cannot rename across sites")
        s = self.resolve_for_root_change(src, UPDATE)
        d = self.resolve_for_root_change(dst, UPDATE)
        s.need_store().move(s.parts, d.parts)

    @guarded
    def chmod(self, path: str, mode: int) -> None:
        self.resolve_for_root_change(path, UPDATE)  # modes are the store's business: accepted, nothing changes

    @guarded
    def utime(self, path: str, timeval: float) -> None:
        t = self.resolve_for_root_change(path, UPDATE)
        store = t.need_store()
        if not store.local:
            raise FilesystemError("this store keeps its own modification times")
        os.utime(store.path(t.parts), (timeval, timeval))

    # -- facts ---------------------------------------------------------------------------------------

    @guarded
    def stat(self, path: str) -> os.stat_result:
        segs = [p for p in path.split("/") if p]
        t = self.resolve(path, PEEK if len(segs) <= 1 else READ)
        e = self._entry(t)
        if e is None:
            raise FilesystemError(NO_SUCH_PATH)
        return _stat(e)

    lstat = stat

    def readlink(self, path: str) -> str:
        raise FilesystemError("no symlinks here")

    def isfile(self, path: str) -> bool:
        try:
            return not st.S_ISDIR(self.stat(path).st_mode)
        except (FilesystemError, OSError):
            return False

    def islink(self, path: str) -> bool:
        return False

    def isdir(self, path: str) -> bool:
        try:
            return st.S_ISDIR(self.stat(path).st_mode)
        except (FilesystemError, OSError):
            return False

    def getsize(self, path: str) -> int:
        return int(self.stat(path).st_size)

    def getmtime(self, path: str) -> float:
        return float(self.stat(path).st_mtime)

    def lexists(self, path: str) -> bool:
        try:
            self.stat(path)
            return True
        except (FilesystemError, OSError):
            return False

    def get_user_by_uid(self, uid: int) -> str:
        return "owner"

    def get_group_by_gid(self, gid: int) -> str:
        return "site"


class _Reader:
    """A read stream with the attributes pyftpdlib looks at (`name`, `closed`); a local store's file also
    gives its descriptor, so a plain (non-TLS) binary download goes out with sendfile(2)."""

    def __init__(self, raw: Any, name: str):
        self.raw, self.name = raw, name
        self._fd = raw.fileno() if isinstance(raw, io.BufferedReader) and isinstance(raw.raw, io.FileIO) else None

    @property
    def closed(self) -> bool:
        return bool(self.raw.closed)

    def fileno(self) -> int:
        if self._fd is None:
            raise io.UnsupportedOperation("not a local file")
        return self._fd

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.raw.read(size)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self.raw.seek(offset, whence))

    def tell(self) -> int:
        return int(self.raw.tell())

    def close(self) -> None:
        self.raw.close()


class _Resumable:
    """STOR after REST: the write stream opens at the offset pyftpdlib seeks to once it has checked the
    offset against the file's size (refused offsets never seek, and then nothing is written or cut)."""

    def __init__(self, store: Store, parts: paths.Segments, name: str):
        self.store, self.parts, self.name = store, parts, name
        self._offset: int | None = None
        self._writer: Any = None
        self.closed = False

    def seek(self, offset: int, whence: int = 0) -> int:
        self._offset = offset
        return offset

    def _open(self) -> Any:
        if self._writer is None:
            if self._offset is None:
                raise OSError(errno.EINVAL, "no resume offset")
            self._writer = self.store.open_write(self.parts, offset=self._offset)
        return self._writer

    def write(self, data: bytes) -> int:
        return int(self._open().write(data))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._offset is not None:
            self._open().close()  # an empty resumed upload still cuts the file at the offset
