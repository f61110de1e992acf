"""The DAV tables on every database (SQLite, PostgreSQL, MariaDB): per-owner paths, derived index columns
(recurrence bounds, contact names and emails), rows written through /api seen over DAV with their ETags and
sync deltas, and the change log kept private."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from dav_support import DavUser, card, client, dav_world, event, multistatus, sync, sync_token
from support import Server, World, sync_url


@pytest.fixture(scope="module")
def env(server: Server, db_url: str) -> Iterator[tuple[Server, World, dict[str, DavUser]]]:
    world, users = dav_world(server, db_url)
    yield server, world, users


def _row(token: str, server: Server, uid: str) -> dict[str, object]:
    with server.client(token) as api:
        rows = api.get("/api/calendar", params={"page[size]": "500"}).json()["data"]
    found = [r for r in rows if r["attributes"]["uid"] == uid]
    assert len(found) == 1, rows
    row: dict[str, object] = found[0]
    return row


def test_two_users_same_paths_never_collide(env: tuple[Server, World, dict[str, DavUser]]) -> None:
    srv, _, users = env
    a, b = users["owner"], users["member"]
    for user, text in ((a, "owner's"), (b, "member's")):
        with client(srv, user) as c:
            assert c.request("MKCALENDAR", user.home() + "work/").status_code == 201
            r = c.put(user.home() + "work/e.ics", content=event("same-uid", extra=f"LOCATION:{text}\r\n"))
            assert r.status_code == 201, r.text
    for user, text in ((a, "owner's"), (b, "member's")):
        with client(srv, user) as c:
            got = c.get(user.home() + "work/e.ics")
            assert got.status_code == 200 and f"LOCATION:{text}" in got.text


def test_derived_index_columns(env: tuple[Server, World, dict[str, DavUser]]) -> None:
    srv, _, users = env
    owner = users["owner"]
    with client(srv, owner) as c:
        url = owner.home() + "index/"
        assert c.request("MKCALENDAR", url).status_code == 201
        c.put(url + "count.ics", content=event("count-1", extra="RRULE:FREQ=DAILY;COUNT=10\r\n"))
        c.put(url + "open.ics", content=event("open-1", extra="RRULE:FREQ=WEEKLY\r\n"))
        c.put(url + "until.ics", content=event("until-1", extra="RRULE:FREQ=DAILY;UNTIL=20260201T100000Z\r\n"))
        book = owner.home("addressbooks") + "people/"
        assert c.request("MKCOL", book).status_code == 201
        c.put(book + "zoe.vcf", content=card("zoe-1", "Zoe Zed", "zoe@example.org", "4.0"))
    counted = _row(owner.token, srv, "count-1")["attributes"]
    assert isinstance(counted, dict)
    assert str(counted["dtstart"]).startswith("2026-01-05T10:00") and str(counted["dtend"]).startswith(
        "2026-01-14T11:00"
    )
    assert counted["component"] == "VEVENT" and counted["summary"] == "event count-1"
    opened = _row(owner.token, srv, "open-1")["attributes"]
    assert isinstance(opened, dict) and opened["dtend"] is None
    until = _row(owner.token, srv, "until-1")["attributes"]
    assert isinstance(until, dict) and str(until["dtend"]).startswith("2026-02-01T11:00")
    zoe = _row(owner.token, srv, "zoe-1")["attributes"]
    assert isinstance(zoe, dict)
    assert zoe["component"] == "VCARD" and "Zoe Zed" in str(zoe["contact_names"])
    assert zoe["contact_emails"] == "zoe@example.org"


def test_rows_made_through_the_api_are_dav_objects(env: tuple[Server, World, dict[str, DavUser]]) -> None:
    srv, _, users = env
    owner = users["owner"]
    with srv.client(owner.token) as api:
        r = api.post(
            "/api/collection",
            json={"data": {"type": "collection", "attributes": {"name": "from-api", "kind": "calendar"}}},
        )
        assert r.status_code == 201, r.text
        coll = r.json()["data"]["id"]
    url = owner.home() + "from-api/"
    with client(srv, owner) as c:
        token = sync_token(sync(c, url))
    with srv.client(owner.token) as api:
        attrs = {"href": "api.ics", "content": event("api-made")}
        rel = {"collection_id": {"data": {"type": "collection", "id": coll}}}
        r = api.post("/api/calendar", json={"data": {"type": "calendar", "attributes": attrs, "relationships": rel}})
        assert r.status_code == 201, r.text
        etag = r.json()["data"]["attributes"]["etag"]
        bad = {"href": "bad.ics", "content": "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"}
        r = api.post("/api/calendar", json={"data": {"type": "calendar", "attributes": bad, "relationships": rel}})
        assert r.status_code == 400, r.text
        dupe = {"href": "dupe.ics", "content": event("api-made")}
        r = api.post("/api/calendar", json={"data": {"type": "calendar", "attributes": dupe, "relationships": rel}})
        assert r.status_code == 409, r.text
        assert api.get("/api/dav_change").status_code in (403, 404) or api.get("/api/dav_change").json()["data"] == []
    with client(srv, owner) as c:
        got = c.get(url + "api.ics")
        assert got.status_code == 200 and got.headers["etag"] == f'"{etag}"'
        assert list(multistatus(sync(c, url, token))) == [url + "api.ics"]
        assert c.get(url + "bad.ics").status_code == 404 and c.get(url + "dupe.ics").status_code == 404


def test_collection_names_and_deletes_through_the_api(env: tuple[Server, World, dict[str, DavUser]]) -> None:
    srv, _, users = env
    owner = users["owner"]
    with srv.client(owner.token) as api:
        for bad in ("a/b", "..", " padded", "x" * 201, "tab\there"):
            r = api.post("/api/collection", json={"data": {"type": "collection", "attributes": {"name": bad}}})
            assert r.status_code == 400, (bad, r.text)
        r = api.post(
            "/api/collection", json={"data": {"type": "collection", "attributes": {"name": "x", "kind": "folder"}}}
        )
        assert r.status_code == 400, r.text
    url = owner.home() + "doomed/"
    with client(srv, owner) as c:
        assert c.request("MKCALENDAR", url).status_code == 201
        assert c.put(url + "d.ics", content=event("doomed-1")).status_code == 201
    with srv.client(owner.token) as api:
        ref = next(r["id"] for r in api.get("/api/collection").json()["data"] if r["attributes"]["name"] == "doomed")
        obj = _row(owner.token, srv, "doomed-1")["id"]
        r = api.patch(
            f"/api/collection/{ref}",
            json={"data": {"type": "collection", "id": ref, "attributes": {"kind": "addressbook"}}},
        )
        assert r.status_code == 400, r.text
        assert api.delete(f"/api/collection/{ref}").status_code in (200, 204)
        assert api.get(f"/api/calendar/{obj}").status_code == 404  # its objects went with it
    with client(srv, owner) as c:
        assert c.get(url + "d.ics").status_code == 404
        assert c.request("MKCALENDAR", url).status_code == 201  # the name is free again
        r = sync(c, url)
        assert multistatus(r) == {}


QUERY = (
    '<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/></D:prop>'
    '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
    '<C:time-range start="{start}" end="{end}"/></C:comp-filter></C:comp-filter></C:filter></C:calendar-query>'
)


def test_time_ranges_from_the_indexes(env: tuple[Server, World, dict[str, DavUser]], db_url: str) -> None:
    """Plain events (indexed span), recurring ones with absolute times (instance index) and floating ones
    (expanded per query) answer the same way on every database."""
    srv, _, users = env
    owner = users["owner"]
    url = owner.home() + "ranges/"
    with client(srv, owner) as c:
        assert c.request("MKCALENDAR", url).status_code == 201
        c.put(url + "plain.ics", content=event("plain", "20260310T100000Z", "20260310T110000Z"))
        c.put(
            url + "weekly.ics",
            content=event("weekly", extra="RRULE:FREQ=WEEKLY;BYDAY=MO\r\nEXDATE:20260112T100000Z\r\n"),
        )
        c.put(
            url + "floating.ics",
            content=event("floating", "20260311T100000", "20260311T110000", "RRULE:FREQ=DAILY;COUNT=2\r\n"),
        )

        def found(start: str, end: str) -> list[str]:
            r = c.request("REPORT", url, headers={"Depth": "1"}, content=QUERY.format(start=start, end=end))
            return sorted(h.rsplit("/", 1)[1] for h in multistatus(r))

        assert found("20260310T000000Z", "20260313T000000Z") == ["floating.ics", "plain.ics"]
        assert found("20260309T000000Z", "20260310T000000Z") == ["weekly.ics"]  # a Monday
        assert found("20260112T000000Z", "20260113T000000Z") == []  # the excluded Monday
        assert found("20270104T090000Z", "20270104T103000Z") == ["weekly.ics"]  # next year, from the index
        assert found("20260310T103000Z", "20260310T103001Z") == ["plain.ics"]
        assert found("20260310T110000Z", "20260310T120000Z") == []  # the end is exclusive
    engine = sa.create_engine(sync_url(db_url))
    try:
        with engine.connect() as conn:
            listed = conn.execute(
                sa.text(
                    "SELECT COUNT(*) FROM _dav_instance i JOIN calendar o ON o.id = i.object_id "
                    "WHERE o.uid = 'weekly' AND o.indexed_until IS NOT NULL"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    assert listed > 200  # five years of Mondays, minus one
