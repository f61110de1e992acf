"""Differential run: the same CalDAV/CardDAV operations against Portside and against Radicale (the reference
server, started here as a subprocess), compared answer by answer: statuses of writes and conditional
requests, which objects each calendar-query / addressbook-query returns (recurrences, overrides, all-day,
tasks, text and is-not-defined filters) and the sync-collection deltas."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import httpx
import pytest

from dav_support import NS, DavUser, card, event, running_dav_world
from support import PASSWORD, Server, World


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert importlib.util.find_spec("radicale") is not None, "radicale is a dev dependency (pyproject.toml)"
    tmp = tmp_path_factory.mktemp("radicale")
    (tmp / "users").write_text(f"alice:{PASSWORD}\n")
    port = _free_port()
    (tmp / "config").write_text(
        f"[server]\nhosts = 127.0.0.1:{port}\n[auth]\ntype = htpasswd\nhtpasswd_filename = {tmp / 'users'}\n"
        f"htpasswd_encryption = plain\n[storage]\nfilesystem_folder = {tmp / 'data'}\n[rights]\ntype = owner_only\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "radicale", "--config", str(tmp / "config")], stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(base + "/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def portside() -> Iterator[tuple[Server, World, dict[str, DavUser]]]:
    with running_dav_world("sqlite") as env:
        yield env


RECURRING = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n"
    "BEGIN:VEVENT\r\nUID:rec\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260105T100000Z\r\nDTEND:20260105T110000Z\r\n"
    "RRULE:FREQ=WEEKLY;COUNT=6\r\nSUMMARY:Weekly sync\r\nEND:VEVENT\r\n"
    "BEGIN:VEVENT\r\nUID:rec\r\nDTSTAMP:20260101T000000Z\r\nRECURRENCE-ID:20260119T100000Z\r\n"
    "DTSTART:20260401T100000Z\r\nDTEND:20260401T110000Z\r\nSUMMARY:Moved sync\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)
OBJECTS = {
    "simple.ics": event("simple", "20260110T090000Z", "20260110T100000Z"),
    "rec.ics": RECURRING,
    "endless.ics": event("endless", "20250601T080000Z", "20250601T083000Z", "RRULE:FREQ=MONTHLY\r\n"),
    "allday.ics": event("allday", "20260214", "20260215")
    .replace("DTSTART:", "DTSTART;VALUE=DATE:")
    .replace("DTEND:", "DTEND;VALUE=DATE:"),
    "dur.ics": event("dur", "20260301T120000Z", "x").replace("DTEND:x", "DURATION:PT2H"),
    "nodtend.ics": event("nodtend", "20260302T120000Z", "x").replace("DTEND:x\r\n", ""),
    "cat.ics": event("cat", "20260303T120000Z", "20260303T130000Z", "CATEGORIES:Work,Travel\r\n"),
    "todo.ics": "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VTODO\r\nUID:todo\r\n"
    "DTSTAMP:20260101T000000Z\r\nDUE:20260120T120000Z\r\nSUMMARY:Task with due\r\nEND:VTODO\r\nEND:VCALENDAR\r\n",
    "undated.ics": "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VTODO\r\nUID:undated\r\n"
    "DTSTAMP:20260101T000000Z\r\nSUMMARY:Someday\r\nEND:VTODO\r\nEND:VCALENDAR\r\n",
}
CARDS = {
    "ann.vcf": card("ann", "Ann Example", "ann@example.org"),
    "bob.vcf": card("bob", "Bob Other", "bob@other.net", "4.0"),
    "cyd.vcf": card("cyd", "Cyd Example-Other", "cyd@example.org"),
}


def _range(comp: str, start: str, end: str) -> str:
    return (
        f'<C:comp-filter name="VCALENDAR"><C:comp-filter name="{comp}">'
        f'<C:time-range start="{start}" end="{end}"/></C:comp-filter></C:comp-filter>'
    )


CAL_FILTERS = {
    "jan events": _range("VEVENT", "20260101T000000Z", "20260201T000000Z"),
    "third week (override moved away)": _range("VEVENT", "20260119T000000Z", "20260120T000000Z"),
    "april (override moved here)": _range("VEVENT", "20260401T000000Z", "20260402T000000Z"),
    "far future (endless rule)": _range("VEVENT", "20300101T000000Z", "20300201T000000Z"),
    "all-day": _range("VEVENT", "20260214T100000Z", "20260214T110000Z"),
    "duration": _range("VEVENT", "20260301T130000Z", "20260301T133000Z"),
    "zero length": _range("VEVENT", "20260302T115959Z", "20260302T120001Z"),
    "jan todos": _range("VTODO", "20260101T000000Z", "20260201T000000Z"),
    "all events": '<C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"/></C:comp-filter>',
    "summary text": '<C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"><C:prop-filter name="SUMMARY">'
    "<C:text-match>SYNC</C:text-match></C:prop-filter></C:comp-filter></C:comp-filter>",
    "no dtend": '<C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"><C:prop-filter name="DTEND">'
    "<C:is-not-defined/></C:prop-filter></C:comp-filter></C:comp-filter>",
    "category": '<C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"><C:prop-filter name="CATEGORIES">'
    "<C:text-match>Travel</C:text-match></C:prop-filter></C:comp-filter></C:comp-filter>",
}
CARD_FILTERS = {
    "email contains": '<CR:prop-filter name="EMAIL"><CR:text-match>example.org</CR:text-match></CR:prop-filter>',
    "fn equals": '<CR:prop-filter name="FN"><CR:text-match match-type="equals">bob other</CR:text-match>'
    "</CR:prop-filter>",
    "fn starts": '<CR:prop-filter name="FN"><CR:text-match match-type="starts-with">Cyd</CR:text-match>'
    "</CR:prop-filter>",
}


def _names(r: httpx.Response) -> dict[str, str]:
    """Last path segment -> status of every object in a multistatus (the collection itself left out)."""
    assert r.status_code == 207, r.text
    out = {}
    for resp in ET.fromstring(r.content).findall("D:response", NS):
        href = resp.findtext("D:href", default="", namespaces=NS)
        if href.endswith("/"):
            continue
        status = resp.findtext("D:status", default="", namespaces=NS) or "200"
        out[href.rsplit("/", 1)[1]] = "404" if " 404 " in status else "200"
    return out


def _scenario(c: httpx.Client, cal: str, book: str) -> dict[str, object]:
    out: dict[str, object] = {}
    out["mkcalendar"] = c.request("MKCALENDAR", cal).status_code
    mkbook = (
        '<D:mkcol xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav"><D:set><D:prop><D:resourcetype>'
        "<D:collection/><CR:addressbook/></D:resourcetype></D:prop></D:set></D:mkcol>"
    )
    out["mkcol book"] = c.request("MKCOL", book, content=mkbook).status_code
    out["puts"] = [c.put(cal + name, content=body).status_code for name, body in OBJECTS.items()]
    out["cards"] = [c.put(book + name, content=body).status_code for name, body in CARDS.items()]
    etag = c.get(cal + "simple.ics").headers["etag"]
    out["conditional"] = [
        c.put(cal + "simple.ics", content=OBJECTS["simple.ics"], headers={"If-None-Match": "*"}).status_code,
        c.put(cal + "simple.ics", content=OBJECTS["simple.ics"], headers={"If-Match": '"x"'}).status_code,
        c.put(cal + "simple.ics", content=OBJECTS["simple.ics"], headers={"If-Match": etag}).status_code,
        c.delete(cal + "missing.ics").status_code,
        c.get(cal + "missing.ics").status_code,
        c.put(cal + "dupe.ics", content=event("simple")).status_code,
        c.put(cal + "bad.ics", content="BEGIN:VCALENDAR\r\nnot ical\r\n").status_code // 100,
    ]
    for name, f in CAL_FILTERS.items():
        body = (
            '<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/></D:prop>'
            f"<C:filter>{f}</C:filter></C:calendar-query>"
        )
        out[f"query {name}"] = sorted(_names(c.request("REPORT", cal, headers={"Depth": "1"}, content=body)))
    for name, f in CARD_FILTERS.items():
        body = (
            '<CR:addressbook-query xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav"><D:prop><D:getetag/>'
            f"</D:prop><CR:filter>{f}</CR:filter></CR:addressbook-query>"
        )
        out[f"card query {name}"] = sorted(_names(c.request("REPORT", book, headers={"Depth": "1"}, content=body)))
    sync = (
        '<D:sync-collection xmlns:D="DAV:"><D:sync-token>{}</D:sync-token><D:sync-level>1</D:sync-level>'
        "<D:prop><D:getetag/></D:prop></D:sync-collection>"
    )
    first = c.request("REPORT", cal, headers={"Depth": "1"}, content=sync.format(""))
    out["initial sync"] = _names(first)
    token = ET.fromstring(first.content).findtext("D:sync-token", default="", namespaces=NS)
    c.put(cal + "new.ics", content=event("new"))
    c.put(cal + "cat.ics", content=OBJECTS["cat.ics"].replace("Travel", "Leisure"))
    c.delete(cal + "todo.ics")
    out["delta"] = _names(c.request("REPORT", cal, headers={"Depth": "1"}, content=sync.format(token)))
    return out


def test_same_answers_as_radicale(radicale: str, portside: tuple[Server, World, dict[str, DavUser]]) -> None:
    srv, _, users = portside
    user = users["owner"]
    with httpx.Client(base_url=radicale, auth=("alice", PASSWORD), timeout=30) as c:
        reference = _scenario(c, "/alice/diff/", "/alice/book/")
    with httpx.Client(base_url=srv.url, auth=user.auth, timeout=30) as c:
        ours = _scenario(c, user.home() + "diff/", user.home("addressbooks") + "book/")
    differences = {k: (ours.get(k), v) for k, v in reference.items() if ours.get(k) != v}
    assert differences == {}, "\n".join(f"{k}: portside {o!r} / radicale {r!r}" for k, (o, r) in differences.items())
