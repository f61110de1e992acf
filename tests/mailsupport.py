"""Mail test support: a local DNS server (dnslib) on a real UDP port, DKIM keys, and a mail world on a
running Portside (administrator, mail servers, accounts). The module fixtures `dns` and `key` are defined here as
`dns_fixture` and `key_fixture`: a test module imports those names to use the fixtures."""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dnslib import QTYPE, RR, TXT, A, DNSLabel
from dnslib.server import BaseResolver, DNSServer

from support import Server, create, me, new_user


class ZoneResolver(BaseResolver):  # type: ignore[misc]
    """Answers from a dict {(name, type): [values]}; unknown names are NXDOMAIN. Changeable while running."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        self.queries: list[tuple[str, str]] = []

    def add(self, name: str, qtype: str, value: str) -> None:
        self.records.setdefault((name.lower().rstrip("."), qtype), []).append(value)

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        qname = str(request.q.qname).lower().rstrip(".")
        qtype = QTYPE[request.q.qtype]
        self.queries.append((qname, qtype))
        values = self.records.get((qname, qtype))
        if values:
            for v in values:
                if qtype == "TXT":
                    chunks = [v[i : i + 200] for i in range(0, len(v), 200)]
                    reply.add_answer(RR(DNSLabel(qname), QTYPE.TXT, rdata=TXT(chunks), ttl=60))
                elif qtype == "A":
                    reply.add_answer(RR(DNSLabel(qname), QTYPE.A, rdata=A(v), ttl=60))
        elif not any(k[0] == qname for k in self.records):
            reply.header.rcode = 3  # NXDOMAIN
        return reply


@dataclass
class LocalDNS:
    zone: ZoneResolver
    server: Any
    port: int

    @property
    def setting(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop()


def start_dns() -> LocalDNS:
    zone = ZoneResolver()
    server = DNSServer(zone, port=0, address="127.0.0.1")
    server.start_thread()
    port = server.server.server_address[1]
    return LocalDNS(zone, server, port)


def dkim_key() -> tuple[bytes, str]:
    """(PEM private key, DNS TXT value) of a new 2048-bit RSA DKIM key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    pub = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(pub).decode()


@pytest.fixture(scope="module", name="dns")
def dns_fixture() -> Iterator[LocalDNS]:
    """A local DNS server for the module: tests add records to `dns.zone`, Portside gets `dns.setting`."""
    d = start_dns()
    yield d
    d.stop()


@pytest.fixture(scope="module", name="key")
def key_fixture() -> tuple[bytes, str]:
    """The module's DKIM key: (PEM private key, DNS TXT value)."""
    return dkim_key()


def insecure_tls() -> ssl.SSLContext:
    """Self-signed certificates: the tests check the dialogue, not the chain."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass
class MailWorld:
    server: Server
    admin: str
    alice: str  # token of alice's owner user
    bob: str
    stranger: str
    ports: dict[str, int] = field(default_factory=dict)  # mail_server hostname -> SMTP port
    refs: dict[str, str] = field(default_factory=dict)  # mail_server hostname -> row ref


def wait_listener(server: Server, name: str, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        url = server.listeners.get(name)
        if url:
            return int(url.rsplit(":", 1)[1])
        time.sleep(0.05)
    raise AssertionError(f"{name} did not start:\n" + "".join(server.log[-40:]))


def wait_gone(server: Server, name: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if name not in server.listeners:
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} still listening")


def add_server(c: httpx.Client, hostname: str, **attrs: Any) -> str:
    attrs.setdefault("listen_interface", "127.0.0.1:0")
    attrs.setdefault("is_enabled", True)
    r = create(c, "mail_server", hostname=hostname, **attrs)
    assert r.status_code == 201, r.text
    ref: str = r.json()["data"]["id"]
    return ref


def add_account(c: httpx.Client, server_ref: str, username: str, password: str, owner_ref: str) -> str:
    r = c.post(
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
    ref: str = r.json()["data"]["id"]
    return ref


def user_ref(server: Server, token: str) -> str:
    with server.client(token) as c:
        ref: str = me(c)["id"]
        return ref


def mail_world(server: Server, *config: tuple[str, str]) -> MailWorld:
    """An administrator; users alice, bob, stranger; config keys set."""
    _, admin = new_user(server, "madmin")
    _, alice = new_user(server, "alice")
    _, bob = new_user(server, "bob")
    _, stranger = new_user(server, "stranger")
    with server.client(admin) as c:
        assert c.post("/action/world/become_an_administrator").status_code == 200
        for key, value in config:
            r = c.post(f"/_config/backend/{key}", content=value)
            assert r.status_code == 200, r.text
    return MailWorld(server, admin, alice, bob, stranger)


def mails(server: Server, token: str, **filters: str) -> list[dict[str, Any]]:
    """The `mail` rows the token's user can read (attributes), newest last."""
    with server.client(token) as c:
        r = c.get("/api/mail", params={"page[size]": 500, "sort": "id"})
        assert r.status_code == 200, r.text
        rows = [d["attributes"] for d in r.json()["data"]]
    return [row for row in rows if all(str(row.get(k)) == v for k, v in filters.items())]


def boxes(server: Server, token: str) -> dict[str, dict[str, Any]]:
    """reference id -> attributes of the user's mailboxes."""
    with server.client(token) as c:
        r = c.get("/api/mail_box", params={"page[size]": 500})
        assert r.status_code == 200, r.text
        return {d["id"]: d["attributes"] for d in r.json()["data"]}
