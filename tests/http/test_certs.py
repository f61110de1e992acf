"""Certificates and HTTPS: a real `portside serve --tls-port 0` on every database, real TLS handshakes, and
real ACME issuance by Pebble (Let's Encrypt's test CA; `.ci/deps` installs it)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pebble_support import free_port, running_pebble
from support import REDIS, Server, World, create, fresh_database, read_events, setup_world, start_server

HOST = "localhost"


@pytest.fixture(scope="module")
def world(db_url: str) -> Iterator[World]:
    srv = start_server(db_url, None, "--tls-port", "0", "--hostname", HOST)
    assert srv.tls_url.startswith("https://127.0.0.1:") and not srv.tls_url.endswith(":0")
    try:
        yield setup_world(srv, db_url)
    finally:
        srv.stop()


# -- helpers -------------------------------------------------------------------------------------------


def tls_addr(w: World | Server) -> tuple[str, int]:
    u = urlsplit((w.server if isinstance(w, World) else w).tls_url)
    assert u.hostname is not None and u.port is not None
    return u.hostname, u.port


def served(w: World | Server, server_name: str | None) -> x509.Certificate:
    """The certificate the HTTPS port presents for this SNI (None: no SNI at all)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(tls_addr(w), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=server_name) as s,
    ):
        der = s.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def served_pem(w: World | Server, server_name: str | None) -> str:
    return served(w, server_name).public_bytes(serialization.Encoding.PEM).decode()


def names(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(n.value) for n in san]


def act(c: httpx.Client, name: str, ref: str, **attrs: Any) -> httpx.Response:
    return c.post(f"/action/certificate/{name}", json={"attributes": {"certificate_id": ref, **attrs}})


def row_of(c: httpx.Client, hostname: str) -> dict[str, Any] | None:
    q = json.dumps([{"column": "hostname", "operator": "is", "value": hostname}])
    r = c.get("/api/certificate", params={"query": q})
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()["data"]
    return rows[0] if rows else None


def new_row(w: World, hostname: str) -> str:
    with w.c(w.admin) as c:
        r = create(c, "certificate", hostname=hostname)
        assert r.status_code == 201, r.text
        ref: str = r.json()["data"]["id"]
        r = act(c, "generate_self_certificate", ref)
        assert r.status_code == 200, r.text
        assert f"Certificate generated for {hostname}" in r.text
    return ref


def download(c: httpx.Client, ref: str, action: str = "download_certificate") -> tuple[str, str]:
    r = act(c, action, ref)
    assert r.status_code == 200, r.text
    [item] = [x["Attributes"] for x in r.json() if x["ResponseType"] == "client.file.download"]
    return item["name"], base64.b64decode(item["content"]).decode()


def trusting(pem: str) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=pem)


def wait_for(predicate: Any, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# -- (1) HTTPS: /ping and a /live WebSocket over wss -------------------------------------------------------


def test_https_serves_ping_and_live_websocket(world: World) -> None:
    with world.c(world.admin) as c:
        row = row_of(c, HOST)
        assert row is not None and row["attributes"]["issuer"] == "self"
        name, pem = download(c, row["id"])
        assert name == f"{HOST}.pem.crt"
        key_name, pub = download(c, row["id"], "download_public_key")
        assert key_name == f"{HOST}.pem.key.pub" and pub.startswith("-----BEGIN PUBLIC KEY-----")
    cert = x509.load_pem_x509_certificate(pem.encode())
    assert names(cert) == [HOST]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=89) < lifetime < dt.timedelta(days=366)
    host, port = tls_addr(world)
    ctx = trusting(pem)  # verification on: chain and host name `localhost`
    with httpx.Client(verify=ctx) as h:
        r = h.get(f"https://{host}:{port}/ping", extensions={"sni_hostname": HOST})
        assert r.status_code == 200 and r.text == "pong"
        r = h.get(f"https://{host}:{port}/api/certificate", extensions={"sni_hostname": HOST})
        assert r.status_code == 200  # the whole application is there, guest view

    async def live() -> dict[str, Any]:
        url = f"wss://{host}:{port}/live?token={world.admin}&encoding=json"
        async with websockets.connect(url, ssl=ctx, server_hostname=HOST) as ws:
            session: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
            await ws.send(json.dumps({"id": "1", "method": "ping"}))
            pong = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert pong["type"] in ("pong", "response"), pong
            return session

    assert asyncio.run(live())["type"] == "session"

    async def yjs() -> bytes:  # the collaboration endpoint too: the server opens with its SyncStep1
        url = f"wss://{host}:{port}/yjs/tls-room-{uuid.uuid4().hex[:6]}?token={world.admin}"
        async with websockets.connect(url, ssl=ctx, server_hostname=HOST) as ws:
            frame = await asyncio.wait_for(ws.recv(), 10)
            assert isinstance(frame, bytes)
            return frame

    assert asyncio.run(yjs())[:2] == b"\x00\x00"  # messageSync, syncStep1
    # the same certificate does not pass for another name
    with pytest.raises(ssl.SSLCertVerificationError), socket.create_connection((host, port), timeout=10) as raw:
        ctx.wrap_socket(raw, server_hostname="other.test")


def test_tls_policy_refuses_tls_1_1(world: World) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer what old clients offer
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionError)), socket.create_connection(tls_addr(world), timeout=10) as raw:
        ctx.wrap_socket(raw, server_hostname=HOST)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(tls_addr(world), timeout=10) as raw, ctx.wrap_socket(raw, server_hostname=HOST) as s:
        cipher, version, _ = s.cipher() or ("", "", 0)
        assert version == "TLSv1.2" and cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher)


# -- (2) SNI -------------------------------------------------------------------------------------------------


def test_sni_selects_the_row_and_falls_back_to_the_configured_hostname(world: World) -> None:
    a, b = f"a-{uuid.uuid4().hex[:6]}.test", f"b-{uuid.uuid4().hex[:6]}.test"
    new_row(world, a)
    new_row(world, b)
    assert names(served(world, a)) == [a]
    assert names(served(world, b)) == [b]
    assert names(served(world, a.upper())) == [a]  # host names are case-insensitive
    assert names(served(world, "unknown.test")) == [HOST]  # no row: the listener's host name, no new row
    assert names(served(world, None)) == [HOST]
    with world.c(world.admin) as c:
        assert row_of(c, "unknown.test") is None
        r = create(c, "certificate", hostname=f"empty-{a}")  # a row without a certificate yet
        assert r.status_code == 201, r.text
    assert names(served(world, f"empty-{a}")) == [HOST]


# -- (3) reload without restart -------------------------------------------------------------------------------


def test_changed_row_is_served_on_the_next_handshake(world: World) -> None:
    host = f"r-{uuid.uuid4().hex[:6]}.test"
    ref = new_row(world, host)
    first = served(world, host)
    with world.c(world.admin) as c:
        r = act(c, "generate_self_certificate", ref)  # Daptin: a row with a certificate is left alone
        assert r.status_code == 200, r.text
        assert served(world, host).serial_number == first.serial_number
        r = act(c, "generate_self_certificate", ref, regenerate=True)
        assert r.status_code == 200, r.text
        second = served(world, host)  # this node's write: reloaded before the action answered
        assert second.serial_number != first.serial_number and names(second) == [host]
        _, pem = download(c, ref)
        assert x509.load_pem_x509_certificate(pem.encode()).serial_number == second.serial_number
        r = c.delete(f"/api/certificate/{ref}")
        assert r.status_code in (200, 204), r.text
    assert names(served(world, host)) == [HOST]
    assert world.server.proc.poll() is None  # same process throughout


def test_other_nodes_serve_a_changed_row_without_restart() -> None:
    """Two nodes on one PostgreSQL + Redis: a certificate written through one is served by the other."""
    url, drop = fresh_database("postgresql")
    a = start_server(url, None, "--redis-url", REDIS, "--tls-port", "0")
    b = start_server(url, None, "--redis-url", REDIS, "--tls-port", "0")
    try:
        w = setup_world(a, url)
        host = f"n-{uuid.uuid4().hex[:6]}.test"
        ref = new_row(w, host)
        wait_for(lambda: names(served(b, host)) == [host], "the other node to serve the new row")
        first = served(b, host)
        with w.c(w.admin) as c:
            assert act(c, "generate_self_certificate", ref, regenerate=True).status_code == 200
        wait_for(lambda: served(b, host).serial_number != first.serial_number, "the other node to reload")
        assert served(b, host).serial_number == served(a, host).serial_number
    finally:
        a.stop()
        b.stop()
        drop()


def test_a_broken_fallback_row_keeps_its_last_good_certificate(world: World) -> None:
    before = served(world, None)
    with world.c(world.admin) as c:
        row = row_of(c, HOST)
        assert row is not None
        for broken in ("not a certificate", served_pem(world, "unknown.test").replace("M", "N", 5), ""):
            r = c.patch(
                f"/api/certificate/{row['id']}",
                json={"data": {"type": "certificate", "id": row["id"], "attributes": {"certificate_pem": broken}}},
            )
            assert r.status_code == 200, r.text
            assert served(world, None).serial_number == before.serial_number  # handshakes still work
        other = new_row(world, f"o-{uuid.uuid4().hex[:6]}.test")
        _, pem = download(c, other)  # a valid certificate whose key this row does not have
        r = c.patch(
            f"/api/certificate/{row['id']}",
            json={"data": {"type": "certificate", "id": row["id"], "attributes": {"certificate_pem": pem}}},
        )
        assert r.status_code == 200, r.text
        assert served(world, "unknown.test").serial_number == before.serial_number
        r = act(c, "generate_self_certificate", row["id"])  # unusable row: the action makes a new one
        assert r.status_code == 200, r.text
    after = served(world, None)
    assert after.serial_number != before.serial_number and names(after) == [HOST]


# -- (5) bad input, rights, secrets ---------------------------------------------------------------------------

BAD_HOSTNAMES = [
    "../../etc/passwd",
    "a/b.test",
    "\uff41.test",  # full-width look-alike
    "p\u0430ypal.test",  # Cyrillic a
    "a..b.test",
    "-a.test",
    "a-.test",
    "*.test",
    "a.test:443",
    "a.test.",
    "a b.test",
    "a_b.test",
    "a.te\nst",
    "%2e%2e",
    "",
    "x" * 64 + ".test",  # label over 63
    ".".join(["abcdefghij"] * 10),  # over 100 characters
    "a.test,b.test",
]


def test_bad_hostnames_are_refused_and_change_nothing(world: World) -> None:
    with world.c(world.admin) as c:
        before = c.get("/api/certificate", params={"page[size]": 500}).json()["meta"]
        for bad in BAD_HOSTNAMES:
            r = create(c, "certificate", hostname=bad)
            assert r.status_code == 400, (bad, r.text)
            err = r.json()["errors"][0]
            assert err["source"]["pointer"] == "/data/attributes/hostname", (bad, err)
        for bad in (["a.test"], {"x": 1}, 7, None):
            r = create(c, "certificate", hostname=bad)
            assert r.status_code == 400, (bad, r.text)
        ref = new_row(world, f"ok-{uuid.uuid4().hex[:6]}.test")
        r = c.patch(
            f"/api/certificate/{ref}",
            json={"data": {"type": "certificate", "id": ref, "attributes": {"hostname": "../x"}}},
        )
        assert r.status_code == 400, r.text
        after = c.get("/api/certificate", params={"page[size]": 500}).json()["meta"]
        assert after["total"] == before["total"] + 1
        r = act(c, "generate_self_certificate", ref, regenerate="perhaps")
        assert r.status_code == 400, r.text
        r = act(c, "generate_acme_certificate", ref, email="not-an-email")
        assert r.status_code == 400, r.text
        r = act(c, "generate_acme_certificate", ref, email="nobody-here@example.com")
        assert r.status_code == 400 and "invalid email" in r.text, r.text
        r = act(c, "download_certificate", "not-a-uuid")
        assert r.status_code == 400, r.text
        r = c.get("/.well-known/acme-challenge/unknown-token")
        assert r.status_code == 404 and r.json()["errors"][0]["status"] == "404"
        r = c.get("/.well-known/acme-challenge/..%2f..%2fetc%2fpasswd")
        assert r.status_code == 404


def test_only_administrators_generate_and_readers_download(world: World) -> None:
    host = f"p-{uuid.uuid4().hex[:6]}.test"
    ref = new_row(world, host)
    first = served(world, host)
    for token in (world.owner, world.member, world.stranger):
        with world.c(token) as c:
            r = act(c, "generate_self_certificate", ref, regenerate=True)
            assert r.status_code == 403, r.text
            r = act(c, "generate_acme_certificate", ref)
            assert r.status_code == 403, r.text
            r = create(c, "certificate", hostname=f"x-{host}")
            assert r.status_code == 403, r.text
            r = act(c, "download_certificate", ref)
            assert r.status_code == 403, r.text
    with world.c() as guest:
        r = act(guest, "generate_self_certificate", ref, regenerate=True)
        assert r.status_code in (401, 403), r.text
    assert served(world, host).serial_number == first.serial_number
    with world.c(world.admin) as c:
        assert row_of(c, f"x-{host}") is None


def test_private_key_never_leaves_the_server(world: World) -> None:
    with world.c(world.admin) as c:
        ref = new_row(world, f"k-{uuid.uuid4().hex[:6]}.test")
        bodies = [
            c.get("/api/certificate", params={"page[size]": 500}).text,
            c.get(f"/api/certificate/{ref}").text,
            act(c, "generate_self_certificate", ref, regenerate=True).text,
            act(c, "download_certificate", ref).text,
            act(c, "download_public_key", ref).text,
            c.get("/_config").text,
            c.get("/openapi.json").text,
        ]
        for body in bodies:
            assert "PRIVATE KEY" not in body and "private_key_pem" not in body
        for raw in bodies[3:5]:
            for item in json.loads(raw):
                content = item["Attributes"].get("content")
                if content:
                    assert "PRIVATE" not in base64.b64decode(content).decode()
        q = json.dumps([{"column": "private_key_pem", "operator": "like", "value": "%"}])
        assert c.get("/api/certificate", params={"query": q}).status_code == 400  # not even as a filter
        for params in ({"fields": "private_key_pem"}, {"sort": "private_key_pem"}, {"filter": "PRIVATE"}):
            r = c.get("/api/certificate", params=params)
            assert r.status_code in (200, 400) and "PRIVATE KEY" not in r.text, (params, r.text)
            if r.status_code == 200:
                assert all("private_key_pem" not in row["attributes"] for row in r.json()["data"])
    events = [e for e in read_events(world.db_url) if e["table"] == "certificate"]
    assert events and all("private_key_pem" not in e["data"] for e in events)
    assert "PRIVATE KEY" not in json.dumps(events)
    assert "PRIVATE KEY" not in "".join(world.server.log)


# -- renewal ---------------------------------------------------------------------------------------------------


def test_renewal_decision() -> None:
    from portside.certs.x509 import needs_renewal

    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert needs_renewal(now + dt.timedelta(days=29), now, 30)
    assert not needs_renewal(now + dt.timedelta(days=31), now, 30)
    assert needs_renewal(now - dt.timedelta(days=1), now, 30)  # expired
    assert needs_renewal(now + dt.timedelta(hours=1), now, 0) is False
    assert needs_renewal(now + dt.timedelta(days=5), now, -3) is False


def test_keys_in_every_stored_format_are_read() -> None:
    """Daptin stored PKCS#1 bodies under a PKCS#8 label; PKCS#1, SEC1 and PKCS#8 all load, and a key that does
    not belong to the certificate is refused."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from portside.certs import x509 as certx

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pkcs1 = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    daptin = "-----BEGIN PRIVATE KEY-----\n" + base64.encodebytes(pkcs1).decode() + "-----END PRIVATE KEY-----\n"
    traditional = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    for pem in (daptin, traditional, certx.key_to_pem(key)):
        assert certx.load_key(pem).public_key().public_numbers() == key.public_key().public_numbers()
    for bad in ("", "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----", "x" * 70_000):
        with pytest.raises(certx.CertError):
            certx.load_key(bad)
    m = certx.self_signed("k.test")
    assert certx.material("k.test", m.cert_pem, m.cert_pem, m.key_pem).chain_pem == ""  # leaf copy dropped
    with pytest.raises(certx.CertError):
        certx.material("k.test", m.cert_pem, "", daptin)


SERVE = [sys.executable, "-m", "portside.cli.main", "serve", "--port", "0", "--tls-port", "0"]


def test_bad_listener_hostname_stops_start_up(tmp_path: Path) -> None:
    for bad in ("../x", "a b", "*.test"):
        r = subprocess.run(
            [*SERVE, "--data-dir", str(tmp_path), "--hostname", bad],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 1 and "invalid --hostname" in r.stderr, (bad, r.stderr[-500:])


# -- (4) ACME with Pebble ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pebble(world: World) -> Iterator[dict[str, str]]:
    """Pebble validating HTTP-01 on this module's server."""
    with running_pebble(urlsplit(world.server.url).port or 0) as found:
        yield found


def test_acme_certificate_from_pebble_is_served_by_sni(world: World, pebble: dict[str, str]) -> None:
    host = f"acme-{uuid.uuid4().hex[:6]}.example.org"
    with world.c(world.admin) as c:
        for key, value in (("acme.directory_url", pebble["directory"]), ("acme.ca_file", pebble["ca_file"])):
            r = c.post(f"/_config/backend/{key}", content=value)
            assert r.status_code == 200, r.text
        r = create(c, "certificate", hostname=host)
        assert r.status_code == 201, r.text
        ref = r.json()["data"]["id"]
        r = act(c, "generate_acme_certificate", ref)
        assert r.status_code == 200, (r.text, Path(pebble["log"]).read_text()[-3000:])
        row = row_of(c, host)
        assert row is not None and row["attributes"]["issuer"] == "acme"
        _, pem = download(c, ref)
        assert c.get("/_config").json()["acme.account_key"] == "********"
        stored = c.get("/_config/backend/acme.account_key").text  # an administrator sees ciphertext only
        assert stored and "PRIVATE KEY" not in stored and "BEGIN" not in stored
    intermediate_pem = httpx.get(
        f"{pebble['management']}/intermediates/0", verify=ssl.create_default_context(cafile=pebble["ca_file"])
    ).text
    intermediate = x509.load_pem_x509_certificate(intermediate_pem.encode())
    leaf = served(world, host)
    assert names(leaf) == [host]
    assert leaf.issuer == intermediate.subject  # issued by Pebble's intermediate, not self-signed
    leaf.verify_directly_issued_by(intermediate)
    assert x509.load_pem_x509_certificate(pem.encode()).serial_number == leaf.serial_number
    assert names(served(world, "unknown.test")) == [HOST]  # the fallback is untouched
    # the whole chain is served: a client trusting only Pebble's root verifies it
    root_pem = httpx.get(
        f"{pebble['management']}/roots/0", verify=ssl.create_default_context(cafile=pebble["ca_file"])
    ).text
    ctx = ssl.create_default_context(cadata=root_pem)
    with socket.create_connection(tls_addr(world), timeout=10) as raw, ctx.wrap_socket(raw, server_hostname=host) as s:
        assert s.version() in ("TLSv1.2", "TLSv1.3")
    with world.c(world.admin) as c:  # a second order replaces the row: the next handshake serves it
        r = act(c, "generate_acme_certificate", ref)
        assert r.status_code == 200, r.text
    renewed = served(world, host)
    assert renewed.serial_number != leaf.serial_number and renewed.issuer == intermediate.subject
    leaf = renewed
    with world.c(world.admin) as c:  # an unreachable CA is a clean 502, and nothing changes
        r = c.post("/_config/backend/acme.directory_url", content=f"https://127.0.0.1:{free_port()}/dir")
        assert r.status_code == 200, r.text
        r = act(c, "generate_acme_certificate", ref)
        assert r.status_code == 502 and "ACME" in r.text, r.text
        for key, value, words in (
            ("acme.directory_url", "http://127.0.0.1:1/dir", "https://"),  # TLS to the CA is not optional
            ("acme.directory_url", pebble["directory"], ""),
            ("acme.ca_file", "/nonexistent/ca.pem", "acme.ca_file"),
        ):
            assert c.post(f"/_config/backend/{key}", content=value).status_code == 200
            if words:
                r = act(c, "generate_acme_certificate", ref)
                assert r.status_code == 502 and words in r.text, r.text
    assert served(world, host).serial_number == leaf.serial_number


def test_renewal_replaces_due_certificates(world: World, pebble: dict[str, str]) -> None:
    """With a renewal window longer than any lifetime, the renewal task replaces the certificates: self-signed
    ones by regeneration, ACME ones by a new order."""
    before = served(world, HOST)
    with world.c(world.admin) as c:
        q = json.dumps([{"column": "issuer", "operator": "is", "value": "acme"}])
        acme_hosts = [
            r["attributes"]["hostname"] for r in c.get("/api/certificate", params={"query": q}).json()["data"]
        ]
        assert acme_hosts  # from the Pebble test
        acme_before = served(world, acme_hosts[0])
        config = (
            ("acme.directory_url", pebble["directory"]),
            ("acme.ca_file", pebble["ca_file"]),
            ("certs.renew_before_days", "4000"),  # Pebble's certificates are valid for 5 years
            ("certs.renew_check_seconds", "1"),
        )
        for key, value in config:
            assert c.post(f"/_config/backend/{key}", content=value).status_code == 200
        try:
            wait_for(lambda: served(world, HOST).serial_number != before.serial_number, "a renewed certificate")
            wait_for(
                lambda: served(world, acme_hosts[0]).serial_number != acme_before.serial_number,
                "a renewed ACME certificate",
                timeout=30,
            )
            assert served(world, acme_hosts[0]).issuer == acme_before.issuer
        finally:
            assert c.post("/_config/backend/certs.renew_before_days", content="30").status_code == 200
            assert c.post("/_config/backend/certs.renew_check_seconds", content="3600").status_code == 200
    assert names(served(world, HOST)) == [HOST]
