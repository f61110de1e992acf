"""CalDAV/CardDAV over real sockets: discovery, Daptin's paths (spec §I 55-58 [R]), queries with recurrence,
sync-collection deltas, sharing through group links, application passwords. Clients: the `caldav` library
and raw DAV requests with httpx. SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import caldav
import httpx
import pytest

from dav_support import (
    NS,
    DavUser,
    card,
    client,
    event,
    mkcalendar,
    multistatus,
    running_dav_world,
    sync,
    sync_token,
)
from support import Server, World


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest) -> Iterator[tuple[Server, World, dict[str, DavUser]]]:
    with running_dav_world(request.param) as env:
        yield env


PROPFIND_PRINCIPAL = (
    '<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" '
    'xmlns:CR="urn:ietf:params:xml:ns:carddav"><D:prop><D:current-user-principal/><C:calendar-home-set/>'
    "<CR:addressbook-home-set/><D:principal-URL/></D:prop></D:propfind>"
)


def test_login_challenge_discovery_and_daptin_paths(env: tuple[Server, World, dict[str, DavUser]]) -> None:
    srv, _, users = env
    owner = users["owner"]
    with client(srv) as anon:
        r = anon.request("PROPFIND", "/caldav/", headers={"Depth": "1"}, content=PROPFIND_PRINCIPAL)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith('Basic realm="caldav"')
        r = anon.get("/.well-known/caldav", follow_redirects=False)
        assert r.status_code == 301 and r.headers["location"] == "/caldav/"
        assert anon.get("/.well-known/carddav").headers["location"] == "/carddav/"
    with client(srv, owner) as c:
        r = c.request("PROPFIND", "/caldav/", headers={"Depth": "0"}, content=PROPFIND_PRINCIPAL)
        root = multistatus(r)["/caldav/"]
        principal = root["{DAV:}current-user-principal"]
        assert not isinstance(principal, str)
        assert principal.findtext("D:href", namespaces=NS) == f"/caldav/users/{owner.ref}/"
        r = c.request("PROPFIND", f"/caldav/users/{owner.ref}/", headers={"Depth": "0"}, content=PROPFIND_PRINCIPAL)
        props = multistatus(r)[f"/caldav/users/{owner.ref}/"]
        home = props["{urn:ietf:params:xml:ns:caldav}calendar-home-set"]
        book = props["{urn:ietf:params:xml:ns:carddav}addressbook-home-set"]
        assert not isinstance(home, str) and not isinstance(book, str)
        assert home.findtext("D:href", namespaces=NS) == owner.home()
        assert book.findtext("D:href", namespaces=NS) == owner.home("addressbooks")
        # spec 56: MKCOL, PUT, GET the same bytes, the same item under /carddav
        r = c.request("MKCOL", owner.home() + "work")
        assert r.status_code == 201, r.text
        body = event("e1")
        r = c.put(owner.home() + "work/e1.ics", content=body)
        assert r.status_code == 201 and r.headers["etag"]
        assert c.get(owner.home() + "work/e1.ics").content == body.encode()
        assert c.get(f"/carddav/users/{owner.ref}/calendars/work/e1.ics").content == body.encode()
        assert c.request("MKCOL", owner.home() + "work").status_code == 405
        # a PROPFIND without a body is allprop
        r = c.request("PROPFIND", owner.home() + "work/", headers={"Depth": "1"})
        listed = multistatus(r)
        assert owner.home() + "work/e1.ics" in listed
        assert "{DAV:}getetag" in listed[owner.home() + "work/e1.ics"]
    # spec 57 [R]: another user's paths answer 404 and never their data
    with client(srv, users["stranger"]) as s:
        assert s.get(owner.home() + "work/e1.ics").status_code == 404
        assert s.request("PROPFIND", owner.home(), headers={"Depth": "1"}).status_code == 404
        assert s.request("PROPFIND", f"/caldav/users/{owner.ref}/", headers={"Depth": "0"}).status_code == 404
        assert s.put(owner.home() + "work/x.ics", content=event("x")).status_code in (403, 404, 409)
        assert s.request("MKCOL", owner.home() + "mine").status_code == 403
        assert s.delete(owner.home() + "work/e1.ics").status_code == 404
    with client(srv, owner) as c:
        assert c.get(owner.home() + "work/e1.ics").status_code == 200  # untouched


def test_caldav_library_discovery_and_recurrence(env: tuple[Server, World, dict[str, DavUser]]) -> None:
    srv, _, users = env
    owner = users["owner"]
    with caldav.DAVClient(url=srv.url + "/caldav/", username=owner.email, password="secret123") as dav:
        principal = dav.principal()
        cal = principal.make_calendar(name="Lib calendar", cal_id="lib")
        assert any(str(c.url).rstrip("/").endswith("/lib") for c in principal.calendars())
        weekly = (
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
            "BEGIN:VEVENT\r\nUID:weekly-1\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260105T100000Z\r\n"
            "DTEND:20260105T110000Z\r\nRRULE:FREQ=WEEKLY;COUNT=5\r\nSUMMARY:weekly\r\nEND:VEVENT\r\n"
            "BEGIN:VEVENT\r\nUID:weekly-1\r\nDTSTAMP:20260101T000000Z\r\nRECURRENCE-ID:20260112T100000Z\r\n"
            "DTSTART:20260301T100000Z\r\nDTEND:20260301T110000Z\r\nSUMMARY:moved\r\nEND:VEVENT\r\n"
            "END:VCALENDAR\r\n"
        )
        cal.save_event(weekly)
        cal.save_event(event("single-1", "20260210T090000Z", "20260210T100000Z"))
        cal.save_event(event("far-1", "20270210T090000Z", "20270210T100000Z"))
        utc = dt.UTC
        # February: only the single event (the weekly series ended on 2 Feb; the override moved to March)
        found = cal.search(
            start=dt.datetime(2026, 2, 3, tzinfo=utc), end=dt.datetime(2026, 3, 1, tzinfo=utc), event=True
        )
        assert sorted(str(e.icalendar_component["UID"]) for e in found) == ["single-1"]
        # March holds only the moved override of the weekly series
        found = cal.search(
            start=dt.datetime(2026, 3, 1, tzinfo=utc), end=dt.datetime(2026, 3, 2, tzinfo=utc), event=True
        )
        assert [str(e.icalendar_component["UID"]) for e in found] == ["weekly-1"]
        # January, expanded by the server: the instances on 5, 19 and 26 January (the 12th moved away)
        found = cal.search(
            start=dt.datetime(2026, 1, 1, tzinfo=utc),
            end=dt.datetime(2026, 2, 1, tzinfo=utc),
            event=True,
            expand=True,
            server_expand=True,
        )
        starts = sorted(e.icalendar_component["DTSTART"].dt.day for e in found)
        assert starts == [5, 19, 26]
        # nothing in December 2025
        found = cal.search(
            start=dt.datetime(2025, 12, 1, tzinfo=utc), end=dt.datetime(2026, 1, 1, tzinfo=utc), event=True
        )
        assert found == []


FREEBUSY = (
    '<?xml version="1.0"?><C:free-busy-query xmlns:C="urn:ietf:params:xml:ns:caldav">'
    '<C:time-range start="20260101T000000Z" end="20260201T000000Z"/></C:free-busy-query>'
)
MULTIGET = (
    '<?xml version="1.0"?><C:calendar-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
    "<D:prop><D:getetag/><C:calendar-data/></D:prop>{hrefs}</C:calendar-multiget>"
)


def test_multiget_and_free_busy(env: tuple[Server, World, dict[str, DavUser]]) -> None:
    srv, _, users = env
    owner = users["owner"]
    with client(srv, owner) as c:
        url = mkcalendar(c, owner)
        c.put(url + "a.ics", content=event("a", "20260110T100000Z", "20260110T120000Z"))
        c.put(url + "b.ics", content=event("b", "20260301T100000Z", "20260301T120000Z"))
        c.put(url + "t.ics", content=event("t", "20260111T100000Z", "20260111T120000Z", "TRANSP:TRANSPARENT\r\n"))
        hrefs = "".join(f"<D:href>{url}{n}</D:href>" for n in ("a.ics", "b.ics", "missing.ics"))
        got = multistatus(c.request("REPORT", url, headers={"Depth": "1"}, content=MULTIGET.format(hrefs=hrefs)))
        assert "UID:a" in str(got[url + "a.ics"]["{urn:ietf:params:xml:ns:caldav}calendar-data"].text)
        assert "UID:b" in str(got[url + "b.ics"]["{urn:ietf:params:xml:ns:caldav}calendar-data"].text)
        assert " 404 " in str(got[url + "missing.ics"]["status"])
        r = c.request("REPORT", url, headers={"Depth": "1"}, content=FREEBUSY)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/calendar")
        busy = [line for line in r.text.splitlines() if line.startswith("FREEBUSY")]
        assert len(busy) == 1 and "FBTYPE=BUSY" in busy[0], r.text  # the transparent and the March event are free
        assert busy[0].endswith(":20260110T100000Z/20260110T120000Z"), r.text


def test_sync_collection_exact_deltas(env: tuple[Server, World, dict[str, DavUser]]) -> None:
    srv, _, users = env
    owner = users["owner"]
    with client(srv, owner) as c:
        url = mkcalendar(c, owner)
        for n in ("1", "2", "3"):
            assert c.put(f"{url}{n}.ics", content=event(f"s{n}")).status_code == 201
        first = sync(c, url)
        assert sorted(multistatus(first)) == [f"{url}1.ics", f"{url}2.ics", f"{url}3.ics"]
        token = sync_token(first)
        assert multistatus(sync(c, url, token)) == {}  # nothing changed
        c.put(url + "4.ics", content=event("s4"))
        c.put(url + "1.ics", content=event("s1", extra="LOCATION:moved\r\n"))
        assert c.delete(url + "2.ics").status_code == 204
        delta = multistatus(sync(c, url, token))
        assert sorted(delta) == [f"{url}1.ics", f"{url}2.ics", f"{url}4.ics"]
        assert " 404 " in str(delta[f"{url}2.ics"]["status"])
        assert "{DAV:}getetag" in delta[f"{url}1.ics"] and "{DAV:}getetag" in delta[f"{url}4.ics"]
        # a deleted and re-created object is reported once, as present
        c.delete(url + "3.ics")
        c.put(url + "3.ics", content=event("s3b"))
        token2 = sync_token(sync(c, url, token))
        assert set(multistatus(sync(c, url, token))) == {f"{url}1.ics", f"{url}2.ics", f"{url}3.ics", f"{url}4.ics"}
        assert multistatus(sync(c, url, token2)) == {}
        # a limit truncates with 507 and a token from which the rest follows
        part = sync(c, url, token, limit=2)
        got = multistatus(part)
        assert " 507 " in str(got[url]["status"]) and len(got) == 3
        rest = multistatus(sync(c, url, sync_token(part)))
        assert set(got) - {url} | set(rest) == {f"{url}1.ics", f"{url}2.ics", f"{url}3.ics", f"{url}4.ics"}
        # an invalid token: 403 with DAV:valid-sync-token
        for bad in ("urn:portside:sync:nope:1", token.rsplit(":", 1)[0] + ":999999", "x" * 300):
            r = sync(c, url, bad)
            assert r.status_code == 403 and "valid-sync-token" in r.text, r.text


def test_writes_through_the_api_bump_etags_and_sync_tokens(env: tuple[Server, World, dict[str, DavUser]]) -> None:
    srv, _, users = env
    owner = users["owner"]
    with client(srv, owner) as c:
        url = mkcalendar(c, owner)
        r = c.put(url + "api.ics", content=event("api-1"))
        etag = r.headers["etag"]
        token = sync_token(sync(c, url))
    with srv.client(owner.token) as api:
        rows = api.get("/api/calendar", params={"filter": "api-1"}).json()["data"]
        row = next(x for x in rows if x["attributes"]["uid"] == "api-1")
        assert row["attributes"]["etag"] == etag.strip('"') and row["attributes"]["component"] == "VEVENT"
        new = event("api-1", extra="LOCATION:api\r\n")
        r = api.patch(
            f"/api/calendar/{row['id']}",
            json={"data": {"type": "calendar", "id": row["id"], "attributes": {"content": new}}},
        )
        assert r.status_code == 200, r.text
        assert r.json()["data"]["attributes"]["etag"] != etag.strip('"')
        # malformed content through the API is refused too, and nothing changes
        r = api.patch(
            f"/api/calendar/{row['id']}",
            json={"data": {"type": "calendar", "id": row["id"], "attributes": {"content": "BEGIN:VCALENDAR\r\nnope"}}},
        )
        assert r.status_code == 400, r.text
    with client(srv, owner) as c:
        got = c.get(url + "api.ics")
        assert "LOCATION:api" in got.text and got.headers["etag"] != etag
        delta = multistatus(sync(c, url, token))
        assert list(delta) == [url + "api.ics"]
        token = sync_token(sync(c, url, token))
    with srv.client(owner.token) as api:
        assert api.delete(f"/api/calendar/{row['id']}").status_code in (200, 204)
    with client(srv, owner) as c:
        delta = multistatus(sync(c, url, token))
        assert list(delta) == [url + "api.ics"] and " 404 " in str(delta[url + "api.ics"]["status"])


PRIVS = '<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:current-user-privilege-set/></D:prop></D:propfind>'


def _privileges(c: httpx.Client, url: str) -> set[str]:
    got = multistatus(c.request("PROPFIND", url, headers={"Depth": "0"}, content=PRIVS))[url]
    el = got["{DAV:}current-user-privilege-set"]
    assert not isinstance(el, str)
    return {p[0].tag.split("}")[1] for p in el.findall("D:privilege", NS)}


def test_sharing_through_a_group_link(env: tuple[Server, World, dict[str, DavUser]]) -> None:
    srv, world, users = env
    owner, member = users["owner"], users["member"]
    with client(srv, owner) as c:
        url = mkcalendar(c, owner, "team-cal")
        c.put(url + "m.ics", content=event("shared-1"))
        assert "write" in _privileges(c, url)
    with client(srv, member) as m:
        assert m.get(url + "m.ics").status_code == 404  # not shared yet
    with srv.client(owner.token) as api:
        ref = next(r["id"] for r in api.get("/api/collection").json()["data"] if r["attributes"]["name"] == "team-cal")
    with srv.client(world.admin) as admin:
        r = admin.post(
            f"/api/collection/{ref}/relationships/usergroup_id",
            json={"data": [{"type": "usergroup", "id": world.team}]},
        )
        assert r.status_code == 204, r.text
    acl_body = '<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:acl/></D:prop></D:propfind>'
    with client(srv, owner) as c:
        acl = multistatus(c.request("PROPFIND", url, headers={"Depth": "0"}, content=acl_body))[url]["{DAV:}acl"]
        assert not isinstance(acl, str)
        aces = {
            ace.findtext("D:principal/D:href", default="all", namespaces=NS): {
                p[0].tag.split("}")[1] for p in ace.findall("D:grant/D:privilege", NS)
            }
            for ace in acl.findall("D:ace", NS)
        }
        assert "write" in aces[f"/caldav/users/{owner.ref}/"]
        group = aces[f"/caldav/groups/{world.team}/"]
        assert "read" in group and "write-content" not in group
    with client(srv, member) as m:
        listed = multistatus(m.request("PROPFIND", member.home(), headers={"Depth": "1"}))
        assert url in listed  # the shared calendar appears in the member's home
        assert m.get(url + "m.ics").status_code == 200
        privileges = _privileges(m, url)
        assert "read" in privileges and "write-content" not in privileges and "bind" not in privileges
        assert m.put(url + "new.ics", content=event("by-member")).status_code == 403
        assert m.put(url + "m.ics", content=event("shared-1", extra="LOCATION:x\r\n")).status_code == 403
        assert m.delete(url + "m.ics").status_code == 403
    with client(srv, users["stranger"]) as s:
        assert s.get(url + "m.ics").status_code == 404
    # the link made read-write: the member may now write
    with srv.client(world.admin) as admin:
        links = admin.get("/api/collection_collection_id_has_usergroup_usergroup_id").json()["data"]
        link = next(x for x in links if x["attributes"].get("collection_id") == ref)
        rw = (1 | 2 | 4 | 8 | 16) << 14
        r = admin.patch(
            f"/api/collection_collection_id_has_usergroup_usergroup_id/{link['id']}",
            json={
                "data": {
                    "type": "collection_collection_id_has_usergroup_usergroup_id",
                    "id": link["id"],
                    "attributes": {"permission": rw},
                }
            },
        )
        assert r.status_code == 200, r.text
    with client(srv, member) as m:
        assert {"write-content", "bind", "unbind"} <= _privileges(m, url)
        assert m.put(url + "new.ics", content=event("by-member")).status_code == 201
    # the same sharing on /api: the members see the shared calendar's events as rows, strangers do not
    with srv.client(member.token) as api:
        uids = {r["attributes"]["uid"] for r in api.get("/api/calendar", params={"page[size]": "500"}).json()["data"]}
        assert {"shared-1", "by-member"} <= uids
    with srv.client(users["stranger"].token) as api:
        uids = {r["attributes"]["uid"] for r in api.get("/api/calendar", params={"page[size]": "500"}).json()["data"]}
        assert not {"shared-1", "by-member"} & uids
    with srv.client(world.admin) as admin:
        r = admin.request(
            "DELETE",
            f"/api/collection/{ref}/relationships/usergroup_id",
            json={"data": [{"type": "usergroup", "id": world.team}]},
        )
        assert r.status_code == 204, r.text
    with srv.client(member.token) as api:
        uids = {r["attributes"]["uid"] for r in api.get("/api/calendar", params={"page[size]": "500"}).json()["data"]}
        assert not {"shared-1", "by-member"} & uids
    with client(srv, member) as m:
        assert m.get(url + "m.ics").status_code == 404


def test_carddav_vcard3_and_4_query_and_multiget(env: tuple[Server, World, dict[str, DavUser]]) -> None:
    srv, _, users = env
    owner = users["owner"]
    book = owner.home("addressbooks") + "contacts/"
    mkcol = (
        '<?xml version="1.0"?><D:mkcol xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav"><D:set><D:prop>'
        "<D:resourcetype><D:collection/><CR:addressbook/></D:resourcetype><D:displayname>Contacts</D:displayname>"
        "</D:prop></D:set></D:mkcol>"
    )
    with client(srv, owner) as c:
        assert c.request("MKCOL", book, content=mkcol).status_code == 201
        assert c.put(book + "ann.vcf", content=card("ann", "Ann Example", "ann@example.org")).status_code == 201
        assert c.put(book + "bob.vcf", content=card("bob", "Bob Other", "bob@other.net", "4.0")).status_code == 201
        assert c.put(book + "ev.ics", content=event("not-a-card")).status_code == 400
        query = (
            '<?xml version="1.0"?><CR:addressbook-query xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav">'
            '<D:prop><D:getetag/><CR:address-data/></D:prop><CR:filter><CR:prop-filter name="EMAIL">'
            '<CR:text-match collation="i;unicode-casemap" match-type="contains">OTHER.net</CR:text-match>'
            "</CR:prop-filter></CR:filter></CR:addressbook-query>"
        )
        got = multistatus(c.request("REPORT", book, headers={"Depth": "1"}, content=query))
        assert list(got) == [book + "bob.vcf"]
        assert "FN:Bob Other" in str(got[book + "bob.vcf"]["{urn:ietf:params:xml:ns:carddav}address-data"].text)
        multi = (
            '<?xml version="1.0"?><CR:addressbook-multiget xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav">'
            f"<D:prop><D:getetag/><CR:address-data/></D:prop><D:href>{book}ann.vcf</D:href></CR:addressbook-multiget>"
        )
        got = multistatus(c.request("REPORT", book, headers={"Depth": "1"}, content=multi))
        assert "UID:ann" in str(got[book + "ann.vcf"]["{urn:ietf:params:xml:ns:carddav}address-data"].text)


def _app_password(token: str, srv: Server) -> str:
    with srv.client(token) as c:
        r = c.post(
            "/action/user_account/create_app_password", json={"attributes": {"name": f"phone-{uuid.uuid4().hex[:4]}"}}
        )
        assert r.status_code == 200, r.text
        out = [x for x in r.json() if x["ResponseType"] == "action.response"]
        secret = out[0]["Attributes"]["secret"]
        assert isinstance(secret, str)
        return secret


def test_application_password_and_bearer_login(env: tuple[Server, World, dict[str, DavUser]]) -> None:
    srv, _, users = env
    member = users["member"]
    secret = _app_password(member.token, srv)
    with httpx.Client(base_url=srv.url, auth=(member.email, secret), timeout=30) as c:
        assert c.request("PROPFIND", member.home(), headers={"Depth": "0"}).status_code == 207
    with httpx.Client(base_url=srv.url, auth=(member.email, secret[:-1] + "x"), timeout=30) as c:
        assert c.request("PROPFIND", member.home(), headers={"Depth": "0"}).status_code == 401
    with httpx.Client(base_url=srv.url, auth=(users["owner"].email, secret), timeout=30) as c:
        assert c.request("PROPFIND", member.home(), headers={"Depth": "0"}).status_code == 401  # not theirs
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {member.token}"}, timeout=30) as c:
        assert c.request("PROPFIND", member.home(), headers={"Depth": "0"}).status_code == 207
    with httpx.Client(base_url=srv.url, headers={"Authorization": "Bearer nonsense"}, timeout=30) as c:
        assert c.request("PROPFIND", member.home(), headers={"Depth": "0"}).status_code == 401


def test_caldav_enable_is_live(env: tuple[Server, World, dict[str, DavUser]]) -> None:
    srv, world, users = env
    owner = users["owner"]
    with srv.client(world.admin) as admin:
        assert admin.post("/_config/backend/caldav.enable", content="false").status_code == 200
    try:
        with client(srv, owner) as c:
            assert c.request("PROPFIND", owner.home(), headers={"Depth": "0"}).status_code in (404, 405)
            assert c.get("/.well-known/caldav", follow_redirects=False).status_code == 404
    finally:
        with srv.client(world.admin) as admin:
            assert admin.post("/_config/backend/caldav.enable", content="true").status_code == 200
    with client(srv, owner) as c:
        assert c.request("PROPFIND", owner.home(), headers={"Depth": "0"}).status_code == 207


def test_copy_move_and_proppatch(env: tuple[Server, World, dict[str, DavUser]]) -> None:
    srv, _, users = env
    owner = users["owner"]
    with client(srv, owner) as c:
        a, b = mkcalendar(c, owner), mkcalendar(c, owner)
        assert c.put(a + "x.ics", content=event("move-1")).status_code == 201
        token = sync_token(sync(c, a))
        r = c.request("COPY", a + "x.ics", headers={"Destination": srv.url + b + "x.ics"})
        assert r.status_code == 201, r.text
        assert c.request("COPY", a + "x.ics", headers={"Destination": b + "x.ics", "Overwrite": "F"}).status_code == 412
        assert c.request("COPY", a + "x.ics", headers={"Destination": a + "y.ics"}).status_code == 409  # same UID
        assert (
            c.request("COPY", a + "x.ics", headers={"Destination": "http://elsewhere.example/z.ics"}).status_code == 403
        )
        assert c.request("COPY", a + "x.ics").status_code == 400  # no Destination
        c.delete(b + "x.ics")
        r = c.request("MOVE", a + "x.ics", headers={"Destination": b + "moved.ics"})
        assert r.status_code == 201, r.text
        assert c.get(a + "x.ics").status_code == 404 and "UID:move-1" in c.get(b + "moved.ics").text
        delta = multistatus(sync(c, a, token))
        assert list(delta) == [a + "x.ics"] and " 404 " in str(delta[a + "x.ics"]["status"])
        # PROPPATCH: display name, colour, a dead property; protected ones refused as a whole
        patch = (
            '<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:I="http://apple.com/ns/ical/" '
            'xmlns:X="urn:example"><D:set><D:prop><D:displayname>Renamed</D:displayname>'
            "<I:calendar-color>#FF0000</I:calendar-color><X:custom>kept</X:custom></D:prop></D:set></D:propertyupdate>"
        )
        assert c.request("PROPPATCH", b, content=patch).status_code == 207
        asked = (
            '<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:I="http://apple.com/ns/ical/" '
            'xmlns:X="urn:example"><D:prop><D:displayname/><I:calendar-color/><X:custom/></D:prop></D:propfind>'
        )
        props = multistatus(c.request("PROPFIND", b, headers={"Depth": "0"}, content=asked))[b]
        assert getattr(props["{DAV:}displayname"], "text", None) == "Renamed"
        assert getattr(props["{http://apple.com/ns/ical/}calendar-color"], "text", None) == "#FF0000"
        assert getattr(props["{urn:example}custom"], "text", None) == "kept"
        bad = patch.replace("<X:custom>kept</X:custom>", "<D:getetag>x</D:getetag>").replace("Renamed", "Nope")
        r = c.request("PROPPATCH", b, content=bad)
        assert r.status_code == 207 and "403" in r.text and "424" in r.text
        props = multistatus(c.request("PROPFIND", b, headers={"Depth": "0"}, content=asked))[b]
        assert getattr(props["{DAV:}displayname"], "text", None) == "Renamed"  # nothing applied
