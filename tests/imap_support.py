"""IMAP test support: a Portside process with IMAP switched on by config keys, two mail accounts, and
stock clients (imaplib) connected over real sockets (STARTTLS and implicit TLS, self-signed certificate)."""

from __future__ import annotations

import imaplib
import ssl
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from portside.actions.builtin import builtin_doc
from portside.actions.certs import certs_doc
from portside.core.db import Database
from portside.core.model import Model, build
from portside.core.systables import system_doc
from portside.mail.store import MailStore
from portside.mail.tables import mail_doc
from portside.mail.values import Target
from portside.realtime.redis_bus import RedisBus
from support import REDIS, Server, create, fresh_database, me, new_user, start_server, stored_config

ALICE, ALICE_PW = "alice@example.com", "pw1"
BOB, BOB_PW = "bob@example.com", "pw2"
CAROL, CAROL_PW = "carol@example.com", "pw3"


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
    return connect_port(world.port("imap"), user, password)


def connect_port(port: int, user: str = ALICE, password: str = ALICE_PW) -> imaplib.IMAP4:
    m = imaplib.IMAP4("127.0.0.1", port, timeout=20)
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
        mail_account(c, CAROL, CAROL_PW, other_ref, server_ref)
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


@contextmanager
def running_imap_world(kind: str = "sqlite", *extra: str) -> Iterator[ImapWorld]:
    """`start_imap_world` on a fresh `kind` database; the server stopped and the database dropped after."""
    url, drop = fresh_database(kind)
    try:
        world = start_imap_world(url, *extra)
        try:
            yield world
        finally:
            world.server.stop()
    finally:
        drop()


def message(subject: str = "hello", sender: str = "Bob <bob@ext.org>", body: str = "body text") -> bytes:
    return (
        f"From: {sender}\r\nTo: alice@example.com\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@ext.org>\r\nDate: Sun, 06 Dec 2026 10:00:00 +0000\r\n\r\n{body}\r\n"
    ).encode()


class _Holder:
    def __init__(self, model: Model):
        self.model = model


async def deliver(db_url: str, username: str, raw: bytes, mailbox: str = "INBOX", *, publish: bool = True) -> int:
    """Store a message as another node would (SMTP delivery there): through `MailStore`, its events
    published on the cluster's Redis channel. Returns the new UID."""
    db = Database(db_url)
    bus = None
    try:
        store = MailStore(db, _Holder(build([system_doc(), builtin_doc(), certs_doc(), mail_doc()])))
        if publish:
            bus = RedisBus(db, REDIS, f"portside:events:{stored_config(db_url, 'cluster.id')}")
            await bus.start()
            db.after_commit.append(bus.publish)
        account = await store.account(username)
        assert account is not None
        box = await store.mailbox(account.id, mailbox)
        assert box is not None
        async with db.transaction() as uow:
            [stored] = await store.deliver(uow, [Target(box)], raw)
        return stored.uid
    finally:
        if bus is not None:
            await bus.stop()
        await db.dispose()


def untagged_within(m: imaplib.IMAP4, predicate: object, seconds: float) -> tuple[bytes, float]:
    """Read lines from an IDLE-ing connection until one satisfies `predicate`; (line, seconds taken)."""
    sock = m.socket()
    start = time.monotonic()
    deadline = start + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no matching untagged response within {seconds} s")
        sock.settimeout(left)
        line = m.readline()
        if not line:
            raise AssertionError("connection closed")
        if predicate(line):  # type: ignore[operator]
            return line, time.monotonic() - start


def idle(m: imaplib.IMAP4, tag: bytes = b"I1") -> None:
    m.send(tag + b" IDLE\r\n")
    line = m.readline()
    assert line.startswith(b"+"), line


def idle_done(m: imaplib.IMAP4, tag: bytes = b"I1") -> list[bytes]:
    m.send(b"DONE\r\n")
    m.socket().settimeout(10)
    lines = []
    while True:
        line = m.readline()
        lines.append(line)
        if line.startswith(tag + b" "):
            assert line.startswith(tag + b" OK"), line
            return lines


def raw_command(m: imaplib.IMAP4, line: bytes, tag: bytes = b"R1") -> list[bytes]:
    """Send one command line as is; every response line up to the tagged one."""
    m.send(tag + b" " + line + b"\r\n")
    m.socket().settimeout(10)
    out = []
    while True:
        got = m.readline()
        if not got:
            raise AssertionError("connection closed")
        out.append(got)
        if got.startswith(tag + b" "):
            return out
