"""Fixtures: real Portside processes on port 0 over SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

from inprocess import InProcessServer
from support import REDIS, Server, fresh_database, start_server, wait_for_drops

DATABASES = ["sqlite", "postgresql", "mysql"]


@pytest.fixture(scope="session", autouse=True)
def dropped_databases() -> Iterator[None]:
    """Databases are dropped in the background (support.fresh_database): a worker's session ends once they
    are gone, with an error (on its last test's teardown) when one could not be dropped."""
    yield
    failed = wait_for_drops()
    assert not failed, "could not drop test databases:\n" + "\n".join(failed)


# An environment with PYTHONDONTWRITEBYTECODE makes every Portside process the tests start compile its ~200
# modules again (~0.25 s CPU a start, hundreds of starts a run): the processes started from here keep their
# bytecode in a cache under the temp directory instead (never in the source tree), shared by the whole run.
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
    os.environ.setdefault("PYTHONPYCACHEPREFIX", os.path.join(tempfile.gettempdir(), "portside-test-pycache"))


@pytest.fixture(scope="module", params=DATABASES)
def db_url(request: pytest.FixtureRequest) -> Iterator[str]:
    url, drop = fresh_database(request.param)
    yield url
    drop()


@pytest.fixture(scope="module")
def server(db_url: str) -> Iterator[Server]:
    srv = start_server(db_url)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def sqlite_server() -> Iterator[Server]:
    """A server of this module's own on a fresh SQLite database (state no other module sees)."""
    url, drop = fresh_database("sqlite")
    srv = start_server(url)
    yield srv
    srv.stop()
    drop()


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, Server, Server]]:
    """Two nodes on one PostgreSQL database, joined by Redis."""
    url, drop = fresh_database("postgresql")
    a = start_server(url, None, "--redis-url", REDIS)
    b = start_server(url, None, "--redis-url", REDIS)
    yield url, a, b
    a.stop()
    b.stop()
    drop()


@pytest.fixture(scope="module")
def inprocess_server() -> Iterator[InProcessServer]:
    """The fast tier (tests/inprocess.py): this module's own Portside runtime in a thread of the test process,
    on a fresh SQLite database, for pure HTTP behaviour."""
    url, drop = fresh_database("sqlite")
    srv = InProcessServer(url).start()
    yield srv
    srv.stop()
    drop()
