"""Helpers for the CalDAV/CardDAV tests: a world with DAV enabled, Basic credentials, raw DAV requests."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from support import PASSWORD, Server, World, fresh_database, me, setup_world, start_server

NS = {"D": "DAV:", "C": "urn:ietf:params:xml:ns:caldav", "CR": "urn:ietf:params:xml:ns:carddav"}


@dataclass
class DavUser:
    email: str
    ref: str
    token: str

    @property
    def auth(self) -> tuple[str, str]:
        return (self.email, PASSWORD)

    def home(self, kind: str = "calendars") -> str:
        prefix = "/carddav" if kind == "addressbooks" else "/caldav"
        return f"{prefix}/users/{self.ref}/{kind}/"


def dav_world(server: Server, db_url: str) -> tuple[World, dict[str, DavUser]]:
    world = setup_world(server, db_url, None, ("caldav.enable", "true"))
    users = {}
    for name in ("admin", "owner", "member", "stranger"):
        token = getattr(world, name)
        with server.client(token) as c:
            data = me(c)
        users[name] = DavUser(data["attributes"]["email"], data["id"], token)
    return world, users


def client(server: Server, user: DavUser | None = None) -> httpx.Client:
    return httpx.Client(base_url=server.url, auth=user.auth if user else None, timeout=30)


def event(uid: str, start: str = "20260105T100000Z", end: str = "20260105T110000Z", extra: str = "") -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{start}\r\nDTEND:{end}\r\nSUMMARY:event {uid}\r\n{extra}"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def card(uid: str, name: str, email: str, version: str = "3.0") -> str:
    return (
        f"BEGIN:VCARD\r\nVERSION:{version}\r\nUID:{uid}\r\nFN:{name}\r\nN:{name};;;;\r\nEMAIL:{email}\r\nEND:VCARD\r\n"
    )


def mkcalendar(c: httpx.Client, user: DavUser, name: str | None = None) -> str:
    name = name or f"cal-{uuid.uuid4().hex[:6]}"
    url = user.home() + name + "/"
    r = c.request("MKCALENDAR", url)
    assert r.status_code == 201, r.text
    return url


def multistatus(r: httpx.Response) -> dict[str, dict[str, ET.Element | str]]:
    """href -> {"status": status text or "", Clark name of each 200 property -> element}."""
    assert r.status_code == 207, (r.status_code, r.text)
    root = ET.fromstring(r.content)
    out: dict[str, dict[str, ET.Element | str]] = {}
    for resp in root.findall("D:response", NS):
        href = resp.findtext("D:href", default="", namespaces=NS)
        entry: dict[str, ET.Element | str] = {"status": resp.findtext("D:status", default="", namespaces=NS)}
        for ps in resp.findall("D:propstat", NS):
            if " 200 " in (ps.findtext("D:status", default="", namespaces=NS) or ""):
                for prop in ps.find("D:prop", NS) or []:
                    entry[prop.tag] = prop
        out[href] = entry
    return out


def sync_token(r: httpx.Response) -> str:
    token = ET.fromstring(r.content).findtext("D:sync-token", default="", namespaces=NS)
    assert token, r.text
    return token


SYNC = (
    '<?xml version="1.0"?><D:sync-collection xmlns:D="DAV:"><D:sync-token>{token}</D:sync-token>'
    "<D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop>{limit}</D:sync-collection>"
)


def sync(c: httpx.Client, url: str, token: str = "", limit: int | None = None) -> httpx.Response:
    lim = f"<D:limit><D:nresults>{limit}</D:nresults></D:limit>" if limit else ""
    return c.request("REPORT", url, headers={"Depth": "1"}, content=SYNC.format(token=token, limit=lim))


@contextmanager
def running_dav_world(kind: str) -> Iterator[tuple[Server, World, dict[str, DavUser]]]:
    """A server on a fresh `kind` database with the DAV users of `dav_world`; stopped and dropped after."""
    url, drop = fresh_database(kind)
    srv = start_server(url)
    try:
        world, users = dav_world(srv, url)
        yield srv, world, users
    finally:
        srv.stop()
        drop()
