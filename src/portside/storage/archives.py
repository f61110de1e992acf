""".zip uploads unpacked into a store folder, safely (spec core §10.2: Daptin extracts `.zip` uploads).

The whole archive is checked before a byte is written: every member name passes `paths.segments` (no `..`,
absolute or backslash paths, control characters, percent-encoded separators), symlink and encrypted
members are refused, and the member count and the total uncompressed size (as declared, which also bounds
what `zipfile` will inflate) stay under the limits. Members then stream one at a time from the archive (a
temporary file, never whole in memory) through the store's bounded writer into a hidden staging folder next
to the target; only when every member is in does each move to its place. Any failure removes the staging
folder, so a refused or broken archive leaves the store as it was.
"""

from __future__ import annotations

import contextlib
import stat
import uuid
import zipfile
from dataclasses import dataclass
from typing import BinaryIO

from portside.errors import BadRequest, PayloadTooLarge
from portside.storage import paths
from portside.storage.store import Store

MAX_MEMBERS_KEY = "storage.zip.max_members"
MAX_TOTAL_KEY = "storage.zip.max_total_bytes"
DEFAULT_MAX_MEMBERS = 10_000
DEFAULT_MAX_TOTAL = 1024 * 1024 * 1024  # 1 GiB unpacked
STAGING_PREFIX = ".portside-unzip-"
CHUNK = 1024 * 1024


class BadArchive(BadRequest):
    """A .zip that cannot be unpacked safely (unreadable, unsafe member names, symlinks, encryption)."""


class ArchiveTooLarge(PayloadTooLarge):
    """A .zip with too many members or too many bytes once unpacked."""


@dataclass(frozen=True)
class Limits:
    max_members: int = DEFAULT_MAX_MEMBERS
    max_total: int = DEFAULT_MAX_TOTAL


@dataclass(frozen=True)
class Member:
    parts: paths.Segments
    info: zipfile.ZipInfo


def is_zip_name(name: str) -> bool:
    return name.lower().endswith(".zip")


def plan(zf: zipfile.ZipFile, limits: Limits) -> tuple[list[Member], list[paths.Segments]]:
    """(files, folders) of the archive, every one checked; raises before anything is written."""
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise ArchiveTooLarge(f"the archive has more than {limits.max_members} members")
    files: list[Member] = []
    folders: list[paths.Segments] = []
    total = 0
    for info in infos:
        try:
            parts = paths.segments(info.filename.rstrip("/"))
        except paths.UnsafePath as exc:
            raise BadArchive(f"archive member {info.filename[:100]!r}: {exc.detail}") from None
        if not parts:
            continue
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise BadArchive(f"archive member {info.filename[:100]!r} is a symbolic link")
        if info.flag_bits & 0x1:
            raise BadArchive(f"archive member {info.filename[:100]!r} is encrypted")
        if any(p.startswith(STAGING_PREFIX) for p in parts):
            raise BadArchive(f"archive member {info.filename[:100]!r} has a reserved name")
        if info.is_dir():
            folders.append(parts)
            continue
        total += info.file_size
        if total > limits.max_total:
            raise ArchiveTooLarge(f"the archive unpacks to more than {limits.max_total} bytes")
        files.append(Member(parts, info))
    names = {m.parts for m in files}
    for m in files:  # a file may not also be a folder of another member
        if any(m.parts[:i] in names for i in range(1, len(m.parts))):
            raise BadArchive(f"archive member {paths.join(m.parts)[:100]!r} is inside a file")
    return files, folders


def extract(store: Store, folder: paths.Segments, archive: BinaryIO, limits: Limits) -> tuple[int, int]:
    """Unpack `archive` into `folder` of `store`: (files, bytes) written. Blocking (run in a thread)."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise BadArchive("the .zip file is not a readable archive") from None
    with zf:
        files, folders = plan(zf, limits)
        _check_targets(store, folder, files, folders)
        staging = (*folder, STAGING_PREFIX + uuid.uuid4().hex[:12])
        written = 0
        try:
            store.makedirs(staging)
            for m in files:
                written += _copy(store, zf, m, (*staging, *m.parts))
            for parts in folders:
                store.makedirs((*folder, *parts))
            for m in files:
                store.makedirs((*folder, *m.parts[:-1]))
                store.move((*staging, *m.parts), (*folder, *m.parts))
        finally:
            _remove_tree(store, staging)
    return len(files), written


def _check_targets(store: Store, folder: paths.Segments, files: list[Member], folders: list[paths.Segments]) -> None:
    """No member would replace a folder with a file, or need a folder where a file is."""
    seen: dict[paths.Segments, bool | None] = {}

    def is_dir(parts: paths.Segments) -> bool | None:
        if parts not in seen:
            entry = store.info((*folder, *parts))
            seen[parts] = entry.is_dir if entry is not None else None
        return seen[parts]

    for parts, want_dir in [*((m.parts, False) for m in files), *((f, True) for f in folders)]:
        for i in range(1, len(parts)):
            if is_dir(parts[:i]) is False:
                raise BadArchive(f"archive member {paths.join(parts)[:100]!r} needs a folder where a file is")
        if is_dir(parts) is (not want_dir):
            kind = "file" if want_dir else "folder"
            raise BadArchive(f"archive member {paths.join(parts)[:100]!r} would replace a {kind}")


def _copy(store: Store, zf: zipfile.ZipFile, m: Member, target: paths.Segments) -> int:
    store.makedirs(target[:-1])
    n = 0
    try:
        with zf.open(m.info) as src, store.open_write(target) as dst:
            while chunk := src.read(CHUNK):
                n += len(chunk)
                if n > m.info.file_size:  # never more than declared (zipfile stops there too)
                    raise BadArchive(f"archive member {paths.join(m.parts)[:100]!r} is larger than declared")
                dst.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise BadArchive(f"archive member {paths.join(m.parts)[:100]!r} cannot be read: {exc}") from None
    except RuntimeError:  # zipfile: encrypted or otherwise unreadable member
        raise BadArchive(f"archive member {paths.join(m.parts)[:100]!r} cannot be read") from None
    return n


def _remove_tree(store: Store, parts: paths.Segments) -> None:
    with contextlib.suppress(FileNotFoundError, OSError, paths.UnsafePath):
        entry = store.info(parts)
        if entry is None:
            return
        if not entry.is_dir:
            store.remove(parts)
            return
        for child in store.listdir(parts):
            _remove_tree(store, (*parts, child.name))
        store.rmdir(parts)
