"""IMAP test support: a Portside process with IMAP switched on by config keys, two mail accounts, and
stock clients (imaplib) connected over real sockets (STARTTLS and implicit TLS, self-signed certificate)."""

from __future__ import annotations

import imaplib
import ssl
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from support import Server, create, me, new_user, start_server

ALICE, ALICE_PW = "alice@example.com", "pw1"
BOB, BOB_PW = "bob@example.com", "pw2"


@dataclass
class ImapWorld:
    server: Server
    db_url: str
    admin: str  # token
    owner: str  # token of alice's owner
    other: str  # token of bob's owner
    alice_ref: str
    bob_ref: str
    server_ref: str

    def port(self, name: str = "imap") -> int:
        url = self.server.listeners[name]
        port = urlsplit(url).port
        assert port is not None
        return port

    def config(self, key: str, value: str) -> None:
        with self.server.client(self.admin) as c:
            r = c.post(f"/_config/backend/{key}", content=value)
            assert r.status_code == 200, r.text


def tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the server's self-signed certificate
    return ctx


def plain(world: ImapWorld) -> imaplib.IMAP4:
    return imaplib.IMAP4("127.0.0.1", world.port("imap"), timeout=20)


def connect(world: ImapWorld, user: str = ALICE, password: str = ALICE_PW) -> imaplib.IMAP4:
    """A STARTTLS session, logged in."""
    m = plain(world)
    m.starttls(tls_context())
    typ, _ = m.login(user, password)
    assert typ == "OK"
    return m


def connect_tls(world: ImapWorld, user: str = ALICE, password: str = ALICE_PW) -> imaplib.IMAP4_SSL:
    m = imaplib.IMAP4_SSL("127.0.0.1", world.port("imaps"), ssl_context=tls_context(), timeout=20)
    typ, _ = m.login(user, password)
    assert typ == "OK"
    return m


def mail_account(c: object, username: str, password: str, owner_ref: str, server_ref: str) -> str:
    r = c.post(  # type: ignore[attr-defined]
        "/api/mail_account",
        json={
            "data": {
                "type": "mail_account",
                "attributes": {"username": username, "password": password, "user_account_id": owner_ref},
                "relationships": {"mail_server_id": {"data": {"type": "mail_server", "id": server_ref}}},
            }
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["data"]["id"])


def start_imap_world(db_url: str, *extra: str) -> ImapWorld:
    server = start_server(db_url, None, *extra)
    _, admin = new_user(server, "iadmin")
    _, owner = new_user(server, "iowner")
    _, other = new_user(server, "iother")
    with server.client(admin) as c:
        assert c.post("/action/world/become_an_administrator").status_code == 200
        r = create(c, "mail_server", hostname="example.com")
        assert r.status_code == 201, r.text
        server_ref = r.json()["data"]["id"]
        with server.client(owner) as oc:
            owner_ref = me(oc)["id"]
        with server.client(other) as oc:
            other_ref = me(oc)["id"]
        alice = mail_account(c, ALICE, ALICE_PW, owner_ref, server_ref)
        bob = mail_account(c, BOB, BOB_PW, other_ref, server_ref)
    world = ImapWorld(server, db_url, admin, owner, other, alice, bob, server_ref)
    mark = len(server.log)
    world.config("imap.listen_interface", "127.0.0.1:0")
    world.config("imap.tls_listen_interface", "127.0.0.1:0")
    world.config("imap.enabled", "true")
    server.wait_listening("imap", mark)
    server.wait_listening("imaps", mark)
    deadline = time.monotonic() + 10
    while not {"imap", "imaps"} <= set(server.listeners) and time.monotonic() < deadline:
        time.sleep(0.05)
    return world


def message(subject: str = "hello", sender: str = "Bob <bob@ext.org>", body: str = "body text") -> bytes:
    return (
        f"From: {sender}\r\nTo: alice@example.com\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@ext.org>\r\nDate: Sun, 06 Dec 2026 10:00:00 +0000\r\n\r\n{body}\r\n"
    ).encode()
