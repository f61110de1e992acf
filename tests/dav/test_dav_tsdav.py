"""tsdav (npm; an independent JS CalDAV/CardDAV client used by many web apps) against Portside: discovery
through the well-known/principal/home-set chain, PUT, a time-range query, multiget, sync-collection deltas
after a PUT and after a DELETE, address books and vCards (tests/js/dav/dav_check.mjs)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dav_support import DavUser, client, running_dav_world
from support import PASSWORD, Server, World

CLIENTS = Path(__file__).parent.parent / "js" / "dav"


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Server, World, dict[str, DavUser]]]:
    with running_dav_world("sqlite") as env:
        yield env


@pytest.fixture(scope="session")
def tsdav() -> Path:
    """tsdav installed into tests/js/dav/node_modules (git-ignored) from the lock file."""
    if not (CLIENTS / "node_modules" / "tsdav").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=CLIENTS, check=True, timeout=300)
    return CLIENTS


def test_tsdav_discovery_queries_and_sync_deltas(env: tuple[Server, World, dict[str, DavUser]], tsdav: Path) -> None:
    srv, _, users = env
    user = users["member"]
    mkcal = (
        '<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop>'
        "<D:displayname>tsdav</D:displayname></D:prop></D:set></C:mkcalendar>"
    )
    mkbook = (
        '<D:mkcol xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav"><D:set><D:prop><D:resourcetype>'
        "<D:collection/><CR:addressbook/></D:resourcetype><D:displayname>tsdav contacts</D:displayname>"
        "</D:prop></D:set></D:mkcol>"
    )
    with client(srv, user) as c:
        assert c.request("MKCALENDAR", user.home() + "ts/", content=mkcal).status_code == 201
        assert c.request("MKCOL", user.home("addressbooks") + "tsc/", content=mkbook).status_code == 201
    run = subprocess.run(
        ["node", "dav_check.mjs", srv.url, user.email, PASSWORD], cwd=tsdav, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert "tsdav" in seen["calendars"] and seen["syncToken"] and seen["ctag"]
    assert seen["put"] == 201
    assert seen["timeRange"] == ["ts-1.ics"]
    assert seen["multiget"] == [True]
    assert [name for name, _ in seen["afterPut"]] == ["ts-3.ics"]  # exactly the one new object
    assert seen["afterDelete"] == [["ts-1.ics", 404]]  # exactly the one deletion
    assert "tsdav contacts" in seen["books"] and seen["cards"] == [True]
