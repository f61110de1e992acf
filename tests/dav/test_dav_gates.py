"""DAV passes the table gates as /api does: the `collection` table's world row gates the calendars and address
books, the `calendar` table's world row their objects, on top of each collection's own grants. A user whose
gate is taken away loses DAV access at once, and DAV and /api agree. SQLite and PostgreSQL."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator

import httpx
import pytest

from dav_support import NS, DavUser, client, event, mkcalendar, multistatus, running_dav_world
from support import Server, World

PRIVS = '<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:current-user-privilege-set/></D:prop></D:propfind>'


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest) -> Iterator[tuple[Server, World, dict[str, DavUser]]]:
    with running_dav_world(request.param) as env:
        yield env


LINKS = "world_world_id_has_usergroup_usergroup_id"


class Gate:
    """One table's world row closed (no guest/owner bits, its group links granting nothing) and reopened."""

    def __init__(self, srv: Server, admin: str, table: str):
        self.srv, self.admin, self.table = srv, admin, table
        with srv.client(admin) as c:
            q = f'[{{"column":"table_name","operator":"is","value":"{table}"}}]'
            row = c.get("/api/world", params={"query": q}).json()["data"][0]
            self.ref: str = row["id"]
            self.permission: int = row["attributes"]["permission"]
            r = c.get(f"/api/{LINKS}", params={"page[size]": "500"})
            assert r.status_code == 200, r.text
            self.links: dict[str, int] = {
                x["id"]: x["attributes"]["permission"]
                for x in r.json()["data"]
                if x["attributes"].get("world_id") == self.ref
            }
        assert self.links, "the gate should have group links to take away"

    def _set(self, c: httpx.Client, table: str, ref: str, permission: int) -> None:
        body = {"data": {"type": table, "id": ref, "attributes": {"permission": permission}}}
        r = c.patch(f"/api/{table}/{ref}", json=body)
        assert r.status_code == 200, r.text

    def close(self) -> None:
        with self.srv.client(self.admin) as c:
            self._set(c, "world", self.ref, 0)
            for link in self.links:
                self._set(c, LINKS, link, 0)

    def reopen(self) -> None:
        with self.srv.client(self.admin) as c:
            for link, permission in self.links.items():
                self._set(c, LINKS, link, permission)
            self._set(c, "world", self.ref, self.permission)


def _privileges(c: httpx.Client, url: str) -> set[str]:
    r = c.request("PROPFIND", url, headers={"Depth": "0"}, content=PRIVS)
    cups = multistatus(r)[url].get("{DAV:}current-user-privilege-set")
    assert isinstance(cups, ET.Element), r.text
    return {p[0].tag.split("}")[1] for p in cups.findall("D:privilege", NS)}


def test_object_gate_closes_dav_and_api_alike(env: tuple[Server, World, dict[str, DavUser]]) -> None:
    srv, world, users = env
    owner = users["owner"]
    with client(srv, owner) as c:
        url = mkcalendar(c, owner, "gated-objects")
        assert c.put(url + "a.ics", content=event("gate-a")).status_code == 201
    with srv.client(owner.token) as api:
        obj = next(r["id"] for r in api.get("/api/calendar").json()["data"] if r["attributes"]["href"] == "a.ics")
        assert api.get(f"/api/calendar/{obj}").status_code == 200
    gate = Gate(srv, world.admin, "calendar")
    gate.close()
    try:
        with srv.client(owner.token) as api:
            assert api.get(f"/api/calendar/{obj}").status_code == 403
            assert api.get("/api/calendar").status_code == 403
        with client(srv, owner) as c:
            assert c.get(url + "a.ics").status_code == 403
            assert c.put(url + "b.ics", content=event("gate-b")).status_code == 403
            assert c.delete(url + "a.ics").status_code == 403
            report = c.request("REPORT", url, headers={"Depth": "1"}, content=_MULTIGET.format(href=url + "a.ics"))
            assert report.status_code == 403
            # the collection itself (its own gate is open) is still there, without object privileges
            privileges = _privileges(c, url)
            assert not privileges & {"read", "bind", "unbind", "write-content"}, privileges
        with client(srv, users["admin"]) as a:  # administrators pass every gate
            assert a.get(url + "a.ics").status_code == 200
    finally:
        gate.reopen()
    with client(srv, owner) as c:
        assert c.get(url + "a.ics").status_code == 200
        assert {"read", "bind", "unbind", "write-content"} <= _privileges(c, url)
    with srv.client(owner.token) as api:
        assert api.get(f"/api/calendar/{obj}").status_code == 200


def test_collection_gate_hides_collections_like_api(env: tuple[Server, World, dict[str, DavUser]]) -> None:
    srv, world, users = env
    owner = users["owner"]
    with client(srv, owner) as c:
        url = mkcalendar(c, owner, "gated-colls")
        assert c.put(url + "a.ics", content=event("gate-c")).status_code == 201
    gate = Gate(srv, world.admin, "collection")
    gate.close()
    try:
        with srv.client(owner.token) as api:
            assert api.get("/api/collection").status_code == 403
        with client(srv, owner) as c:
            assert c.request("PROPFIND", url, headers={"Depth": "0"}).status_code == 404
            assert c.get(url + "a.ics").status_code == 404
            home = multistatus(c.request("PROPFIND", owner.home(), headers={"Depth": "1"}))
            assert url not in home
            assert c.request("MKCALENDAR", owner.home() + "another/").status_code == 403
            assert c.request("PROPPATCH", url, content=_PROPPATCH).status_code == 404
            assert c.delete(url).status_code == 404
    finally:
        gate.reopen()
    with client(srv, owner) as c:
        assert c.request("PROPFIND", url, headers={"Depth": "0"}).status_code == 207
        assert url in multistatus(c.request("PROPFIND", owner.home(), headers={"Depth": "1"}))
        assert c.get(url + "a.ics").status_code == 200
    with srv.client(owner.token) as api:
        assert api.get("/api/collection").status_code == 200


_MULTIGET = (
    '<?xml version="1.0"?><C:calendar-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
    "<D:prop><D:getetag/></D:prop><D:href>{href}</D:href></C:calendar-multiget>"
)
_PROPPATCH = (
    '<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><D:displayname>x</D:displayname>'
    "</D:prop></D:set></D:propertyupdate>"
)
