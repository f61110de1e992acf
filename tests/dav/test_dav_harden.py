"""Bad input on the DAV edge: malformed iCalendar/vCard, XML attacks (XXE, entity expansion, depth), oversized
bodies, traversal and look-alike paths, conditional-request failures, malformed credentials and login
throttling. Each gets a clear error, nothing is stored, and the server keeps answering."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from dav_support import (
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


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Server, World, dict[str, DavUser]]]:
    with running_dav_world("sqlite") as env:
        yield env


BAD_CALENDARS = {
    "not ical": ("garbage\r\n", "valid-calendar-data"),
    "truncated": ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:x\r\n", "valid-calendar-data"),
    "bad date": (event("bd", start="notadate"), "valid-calendar-data"),
    "two uids": (
        event("u1").replace("END:VCALENDAR\r\n", "")
        + "BEGIN:VEVENT\r\nUID:u2\r\nDTSTART:20260101T000000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        "valid-calendar-object-resource",
    ),
    "method": (
        event("m").replace("VERSION:2.0\r\n", "VERSION:2.0\r\nMETHOD:REQUEST\r\n"),
        "valid-calendar-object-resource",
    ),
    "no uid": (event("x").replace("UID:x\r\n", ""), "valid-calendar-object-resource"),
    "vcard in calendar": (card("c", "Card", "c@example.org"), "supported-calendar-data"),
}


def test_malformed_objects_are_refused_and_nothing_is_stored(env: tuple[Server, World, dict[str, DavUser]]) -> None:
    srv, _, users = env
    owner = users["owner"]
    with client(srv, owner) as c:
        url = mkcalendar(c, owner)
        token = sync_token(sync(c, url))
        for name, (body, precondition) in BAD_CALENDARS.items():
            r = c.put(url + "bad.ics", content=body)
            assert r.status_code == 400, (name, r.status_code, r.text)
            assert precondition in r.text and "urn:ietf:params:xml:ns:caldav" in r.text, (name, r.text)
        r = c.put(url + "bad.ics", content=b"BEGIN:VCALENDAR\r\n\xff\xfe\r\nEND:VCALENDAR\r\n")
        assert r.status_code == 400
        assert c.get(url + "bad.ics").status_code == 404
        assert multistatus(sync(c, url, token)) == {}  # no change was logged
        # an address book refuses bad vCards with CardDAV's precondition
        book = owner.home("addressbooks") + "book/"
        assert c.request("MKCOL", book).status_code == 201
        for body in ("BEGIN:VCARD\r\nVERSION:3.0\r\nFN:x\r\n", card("v2", "Old", "o@x.org", "2.1"), event("e")):
            r = c.put(book + "bad.vcf", content=body)
            assert r.status_code == 400 and "urn:ietf:params:xml:ns:carddav" in r.text, r.text
        no_fn = "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:nofn\r\nEMAIL:a@b.c\r\nEND:VCARD\r\n"
        assert c.put(book + "bad.vcf", content=no_fn).status_code == 400
        assert c.get(book + "bad.vcf").status_code == 404


def test_uid_conflict_size_limit_and_conditions(env: tuple[Server, World, dict[str, DavUser]]) -> None:
    srv, _, users = env
    owner = users["owner"]
    with client(srv, owner) as c:
        url = mkcalendar(c, owner)
        r = c.put(url + "a.ics", content=event("same"))
        etag = r.headers["etag"]
        r = c.put(url + "b.ics", content=event("same"))
        assert r.status_code == 409 and "no-uid-conflict" in r.text
        big = event("big", extra="DESCRIPTION:" + "x" * (1024 * 1024) + "\r\n")
        r = c.put(url + "big.ics", content=big)
        assert r.status_code == 413 and "max-resource-size" in r.text
        assert c.get(url + "big.ics").status_code == 404
        # conditional requests
        assert c.put(url + "a.ics", content=event("same"), headers={"If-None-Match": "*"}).status_code == 412
        assert c.put(url + "a.ics", content=event("same"), headers={"If-Match": '"nope"'}).status_code == 412
        assert c.put(url + "new.ics", content=event("n"), headers={"If-Match": "*"}).status_code == 412
        assert c.get(url + "new.ics").status_code == 404
        assert c.delete(url + "a.ics", headers={"If-Match": '"nope"'}).status_code == 412
        assert c.get(url + "a.ics", headers={"If-None-Match": etag}).status_code == 304
        r = c.put(url + "a.ics", content=event("same", extra="LOCATION:x\r\n"), headers={"If-Match": etag})
        assert r.status_code == 204 and r.headers["etag"] != etag
        assert c.delete(url + "a.ics", headers={"If-Match": r.headers["etag"]}).status_code == 204


XXE = (
    '<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    '<D:propfind xmlns:D="DAV:"><D:prop><D:displayname>&x;</D:displayname></D:prop></D:propfind>'
)
LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>'
    '<D:propfind xmlns:D="DAV:"><D:prop><D:displayname>&d;&d;&d;</D:displayname></D:prop></D:propfind>'
)


def test_xml_attacks_and_oversized_documents(env: tuple[Server, World, dict[str, DavUser]]) -> None:
    srv, _, users = env
    owner = users["owner"]
    with client(srv, owner) as c:
        for body in (XXE, LAUGHS, "<D:propfind xmlns:D='DAV:'><D:prop>", "not xml at all"):
            r = c.request("PROPFIND", owner.home(), headers={"Depth": "0"}, content=body)
            assert r.status_code == 400, (body[:40], r.text)
            assert "root:" not in r.text
        deep = "<a>" * 5000 + "</a>" * 5000
        assert c.request("PROPFIND", owner.home(), headers={"Depth": "0"}, content=deep).status_code == 400
        wide = '<D:propfind xmlns:D="DAV:"><D:prop>' + "<D:x/>" * 30000 + "</D:prop></D:propfind>"
        assert c.request("PROPFIND", owner.home(), headers={"Depth": "0"}, content=wide).status_code == 400
        huge = b"<D:propfind xmlns:D='DAV:'>" + b" " * (2 * 1024 * 1024) + b"</D:propfind>"
        assert c.request("PROPFIND", owner.home(), headers={"Depth": "0"}, content=huge).status_code == 413
        assert c.request("PROPFIND", owner.home(), headers={"Depth": "2"}).status_code == 400
        url = mkcalendar(c, owner)
        report = (
            '<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/></D:prop>'
            '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
            '<C:time-range start="yesterday" end="20260101T000000Z"/></C:comp-filter></C:comp-filter></C:filter>'
            "</C:calendar-query>"
        )
        assert c.request("REPORT", url, headers={"Depth": "1"}, content=report).status_code == 400
        r = c.request("REPORT", url, content='<D:expand-property xmlns:D="DAV:"/>')
        assert r.status_code == 403 and "supported-report" in r.text
        # the server still answers
        assert c.request("PROPFIND", owner.home(), headers={"Depth": "1"}).status_code == 207


def test_traversal_look_alike_and_foreign_paths(env: tuple[Server, World, dict[str, DavUser]]) -> None:
    srv, _, users = env
    owner, stranger = users["owner"], users["stranger"]
    with client(srv, owner) as c:
        url = mkcalendar(c, owner, "private")
        assert c.put(url + "p.ics", content=event("private-1")).status_code == 201
    with client(srv, stranger) as s:
        for path in (
            f"/caldav/users/{stranger.ref}/calendars/%2e%2e/%2e%2e/{owner.ref}/calendars/private/p.ics",
            f"/caldav/users/{owner.ref}/calendars/private/p.ics",
            f"/caldav/users/{owner.ref.upper()}/calendars/private/p.ics",
            f"/caldav/users/{owner.ref}/calendars/private%2Fp.ics",
            f"/caldav/users/{owner.ref}/calendars/private/p.ics%00",
            "/caldav/users/" + "x" * 5000 + "/calendars/private/p.ics",
        ):
            r = s.get(path)
            assert r.status_code in (400, 404), (path[:80], r.status_code)
            assert "private-1" not in r.text
        assert s.request("MKCOL", f"/caldav/users/{stranger.ref}/calendars/bad%2Fname").status_code in (400, 404, 409)
        # ".." is resolved by the client: this names the principal, which exists (405)
        assert s.request("MKCOL", f"/caldav/users/{stranger.ref}/calendars/..").status_code in (400, 404, 405, 409)
    with client(srv, owner) as c:
        assert c.get(url + "p.ics").status_code == 200


def test_malformed_credentials_and_throttling(env: tuple[Server, World, dict[str, DavUser]]) -> None:
    srv, _, users = env
    home = users["owner"].home()
    for header in ("Basic !!!notbase64", "Basic " + base64.b64encode(b"no-colon").decode(), "Digest x", "Basic Og=="):
        with httpx.Client(base_url=srv.url, headers={"Authorization": header}, timeout=30) as c:
            r = c.request("PROPFIND", home, headers={"Depth": "0"})
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic"), header
    statuses = []
    with httpx.Client(base_url=srv.url, auth=("nobody@example.com", "wrong"), timeout=30) as c:
        for _ in range(13):
            statuses.append(c.request("PROPFIND", home, headers={"Depth": "0"}).status_code)
        last = c.request("PROPFIND", home, headers={"Depth": "0"})
    assert statuses[0] == 401 and 429 in statuses, statuses
    assert last.status_code == 429 and int(last.headers["retry-after"]) > 0
    with client(srv, users["owner"]) as c:  # other accounts are not locked out
        assert c.request("PROPFIND", home, headers={"Depth": "0"}).status_code == 207
