"""MOVE of an object is one transaction: when the copy cannot be put (here the destination calendar holds no
VEVENTs), the source stays, unchanged, and its sync-collection shows no deletion. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dav_support import DavUser, client, event, multistatus, running_dav_world, sync, sync_token
from support import Server, World

TODO_ONLY = (
    '<?xml version="1.0"?><C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop>'
    '<C:supported-calendar-component-set><C:comp name="VTODO"/></C:supported-calendar-component-set>'
    "</D:prop></D:set></C:mkcalendar>"
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest) -> Iterator[tuple[Server, World, dict[str, DavUser]]]:
    with running_dav_world(request.param) as env:
        yield env


def test_failed_move_keeps_the_source(env: tuple[Server, World, dict[str, DavUser]]) -> None:
    srv, _, users = env
    owner = users["owner"]
    with client(srv, owner) as c:
        src, todos = owner.home() + "events/", owner.home() + "todos/"
        assert c.request("MKCALENDAR", src).status_code == 201
        assert c.request("MKCALENDAR", todos, content=TODO_ONLY).status_code == 201
        assert c.put(src + "e.ics", content=event("atomic-1")).status_code == 201
        etag = c.get(src + "e.ics").headers["etag"]
        token = sync_token(sync(c, src))
        r = c.request("MOVE", src + "e.ics", headers={"Destination": todos + "e.ics"})
        assert r.status_code == 400 and "supported-calendar-component" in r.text, r.text
        kept = c.get(src + "e.ics")
        assert kept.status_code == 200 and kept.headers["etag"] == etag and "UID:atomic-1" in kept.text
        assert c.get(todos + "e.ics").status_code == 404
        assert multistatus(sync(c, src, token)) == {}  # no change recorded
        # a MOVE that can be done still moves (one transaction: both sides)
        r = c.request("MOVE", src + "e.ics", headers={"Destination": src + "renamed.ics"})
        assert r.status_code == 201, r.text
        assert c.get(src + "e.ics").status_code == 404 and "UID:atomic-1" in c.get(src + "renamed.ics").text
        assert set(multistatus(sync(c, src, token))) == {src + "e.ics", src + "renamed.ics"}
