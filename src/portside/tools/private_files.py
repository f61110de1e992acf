"""Files only the server's own user may read: the data directory (0700) and database files (0600).

The SQLite database holds `jwt.secret` and `encryption.secret`; anyone who can read it can forge tokens.
What Portside creates it creates private; what it finds looser it reports (the operator decides).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_dir(path: Path) -> bool:
    """Create `path` (and missing parents) with mode 0700 for the last part; True when it was created."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=DIR_MODE)
    except FileExistsError:
        return False
    os.chmod(path, DIR_MODE)  # mkdir's mode passes through the umask; say it exactly
    return True


def private_file(path: Path) -> bool:
    """Create an empty `path` with mode 0600 unless it exists (SQLite takes an empty file as a new
    database, and makes its -wal/-shm files with the database file's mode); True when it was created."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except (FileExistsError, FileNotFoundError):  # exists, or no such directory (SQLite will say so)
        return False
    os.close(fd)
    os.chmod(path, FILE_MODE)
    return True


def sqlite_files(db_file: Path) -> list[Path]:
    """The database file and whichever of its -wal/-shm/-journal files exist."""
    side = [Path(f"{db_file}{suffix}") for suffix in SQLITE_SIDE_FILES]
    return [db_file, *(p for p in side if p.exists())]


def loose(path: Path) -> str | None:
    """A warning when `path` is open to its group or to others, else None (also None when it is missing)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    if not mode & 0o077:
        return None
    want = DIR_MODE if path.is_dir() else FILE_MODE
    return f"{path} is accessible by group/others (mode {mode:04o}); it holds secrets: chmod {want:o} {path}"
