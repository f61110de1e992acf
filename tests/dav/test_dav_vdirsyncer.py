"""vdirsyncer (a real two-way sync client) against Portside: discovery, collections created on both sides,
objects flowing both ways, changes and deletions on either side, calendars and address books."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dav_support import DavUser, card, client, event, running_dav_world
from support import PASSWORD, Server, World

VDIRSYNCER = shutil.which("vdirsyncer") or str(Path(sys.executable).parent / "vdirsyncer")


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Server, World, dict[str, DavUser]]]:
    with running_dav_world("sqlite") as env:
        yield env


def _config(tmp: Path, srv: Server, user: DavUser) -> Path:
    text = f"""
[general]
status_path = "{tmp}/status/"

[pair cal]
a = "cal_local"
b = "cal_remote"
collections = ["from a", "from b"]

[storage cal_local]
type = "filesystem"
path = "{tmp}/cal/"
fileext = ".ics"

[storage cal_remote]
type = "caldav"
url = "{srv.url}/caldav/"
username = "{user.email}"
password = "{PASSWORD}"

[pair con]
a = "con_local"
b = "con_remote"
collections = ["from a", "from b"]

[storage con_local]
type = "filesystem"
path = "{tmp}/con/"
fileext = ".vcf"

[storage con_remote]
type = "carddav"
url = "{srv.url}/carddav/"
username = "{user.email}"
password = "{PASSWORD}"
"""
    path = tmp / "config"
    path.write_text(text)
    return path


def _run(config: Path, *args: str) -> str:
    assert os.path.exists(VDIRSYNCER), "vdirsyncer is a dev dependency (pyproject.toml)"
    run = subprocess.run(
        [VDIRSYNCER, *args],
        input="y\n" * 20,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "VDIRSYNCER_CONFIG": str(config)},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout + run.stderr


def _texts(folder: Path) -> list[str]:
    return sorted(p.read_text() for p in folder.glob("*") if p.is_file())


def test_vdirsyncer_two_way_sync(env: tuple[Server, World, dict[str, DavUser]], tmp_path: Path) -> None:
    srv, _, users = env
    user = users["owner"]
    with client(srv, user) as c:
        assert c.request("MKCALENDAR", user.home() + "work/").status_code == 201
        assert c.put(user.home() + "work/remote-1.ics", content=event("remote-1")).status_code == 201
        assert c.request("MKCOL", user.home("addressbooks") + "people/").status_code == 201
        assert (
            c.put(user.home("addressbooks") + "people/r.vcf", content=card("r-1", "Remote", "r@x.org")).status_code
            == 201
        )
    (tmp_path / "cal" / "home").mkdir(parents=True)
    (tmp_path / "cal" / "home" / "local-1.ics").write_text(event("local-1"))
    (tmp_path / "cal" / "home" / "local-2.ics").write_text(event("local-2"))
    (tmp_path / "con" / "friends").mkdir(parents=True)
    (tmp_path / "con" / "friends" / "l.vcf").write_text(card("l-1", "Local Friend", "l@x.org"))
    config = _config(tmp_path, srv, user)
    _run(config, "discover")
    _run(config, "sync")
    # server → local
    assert any("UID:remote-1" in t for t in _texts(tmp_path / "cal" / "work"))
    assert any("UID:r-1" in t for t in _texts(tmp_path / "con" / "people"))
    # local → server: the local collections were created on the server with their objects
    with client(srv, user) as c:
        r = c.request("REPORT", user.home() + "home/", headers={"Depth": "1"}, content=SYNC_ALL)
        assert r.status_code == 207 and "UID:local-1" in r.text, r.text
        r = c.request("REPORT", user.home("addressbooks") + "friends/", headers={"Depth": "1"}, content=SYNC_ALL_CARDS)
        assert r.status_code == 207 and "UID:l-1" in r.text, r.text
        # a change on the server and a deletion
        assert (
            c.put(
                user.home() + "work/remote-1.ics", content=event("remote-1", extra="LOCATION:changed\r\n")
            ).status_code
            == 204
        )
    for f in (tmp_path / "cal" / "home").glob("*.ics"):
        if "UID:local-1" in f.read_text():
            f.unlink()  # deleted locally (not the last one: vdirsyncer refuses to empty a collection)
    _run(config, "sync")
    assert any("LOCATION:changed" in t for t in _texts(tmp_path / "cal" / "work"))
    with client(srv, user) as c:
        r = c.request("REPORT", user.home() + "home/", headers={"Depth": "1"}, content=SYNC_ALL)
        assert r.status_code == 207 and "UID:local-1" not in r.text and "UID:local-2" in r.text, r.text
    # a local edit reaches the server
    local = next((tmp_path / "cal" / "work").glob("*.ics"))
    local.write_text(local.read_text().replace("LOCATION:changed", "LOCATION:from-local"))
    _run(config, "sync")
    with client(srv, user) as c:
        assert "LOCATION:from-local" in c.get(user.home() + "work/remote-1.ics").text


SYNC_ALL = (
    '<?xml version="1.0"?><D:sync-collection xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
    "<D:sync-token/><D:sync-level>1</D:sync-level><D:prop><C:calendar-data/></D:prop></D:sync-collection>"
)
SYNC_ALL_CARDS = SYNC_ALL.replace("urn:ietf:params:xml:ns:caldav", "urn:ietf:params:xml:ns:carddav").replace(
    "C:calendar-data", "C:address-data"
)
