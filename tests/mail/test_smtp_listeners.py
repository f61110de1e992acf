"""SMTP listeners follow `mail_server` rows live (start, move, stop, conflicts, /_ports), `max_clients`,
`DAPTIN_DISABLE_SMTP`, the `sync_mail_servers` re-check, and durability: a message answered with 250 is
in the database even when the process is killed (-9) right after the reply. Spec §I tests 19-21 [R]."""

from __future__ import annotations

import smtplib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailsupport import (
    MailWorld,
    add_account,
    add_server,
    insecure_tls,
    mail_world,
    mails,
    user_ref,
    wait_gone,
    wait_listener,
)
from support import Server, fresh_database, start_server


@pytest.fixture(scope="module")
def world() -> Iterator[MailWorld]:
    url, drop = fresh_database("sqlite")
    server = start_server(url)
    w = mail_world(server)
    yield w
    server.stop()
    drop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ports(server: Server, admin: str) -> dict[str, dict[str, Any]]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin}"}) as c:
        r = c.get("/_ports")
        assert r.status_code == 200, r.text
        return {e["name"]: e for e in r.json()}


def wait_entry(server: Server, admin: str, name: str, state: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = ports(server, admin).get(name)
        if entry is not None and entry["state"] == state:
            return entry
        time.sleep(0.1)
    raise AssertionError(f"{name} not {state}: {ports(server, admin)}")


def greets(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            return s.recv(100).startswith(b"220 ")
    except OSError:
        return False


def greets_tls(port: int) -> bool:
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=3) as raw,
            insecure_tls().wrap_socket(raw, server_hostname="live.example.com") as s,
        ):
            return s.recv(100).startswith(b"220 live.example.com")
    except OSError:
        return False


def patch(c: httpx.Client, ref: str, **attrs: Any) -> None:
    r = c.patch(f"/api/mail_server/{ref}", json={"data": {"type": "mail_server", "id": ref, "attributes": attrs}})
    assert r.status_code == 200, r.text


def test_listener_starts_moves_and_stops_with_its_row(world: MailWorld) -> None:
    server = world.server
    assert not [n for n in server.listeners if n.startswith("smtp-")]
    with server.client(world.admin) as c:
        ref = add_server(c, "live.example.com", authentication_required=False, always_on_tls=False)
        port = wait_listener(server, "smtp-live.example.com")
        assert greets(port)
        entry = wait_entry(server, world.admin, "smtp-live.example.com", "running")
        assert entry["protocol"] == "smtp" and entry["tls"] == "starttls" and entry["url"].endswith(f":{port}")
        new_port = free_port()
        patch(c, ref, listen_interface=f"127.0.0.1:{new_port}")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not server.listeners.get("smtp-live.example.com", "").endswith(
            f":{new_port}"
        ):
            time.sleep(0.05)
        assert greets(new_port) and not greets(port)
        patch(c, ref, always_on_tls=True)  # now implicit TLS on the same port
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not server.listeners.get("smtp-live.example.com", "").startswith(
            "smtps://"
        ):
            time.sleep(0.05)
        assert wait_entry(server, world.admin, "smtp-live.example.com", "running")["tls"] == "implicit"
        assert greets_tls(new_port) and not greets(new_port)
        patch(c, ref, is_enabled=False)
        wait_gone(server, "smtp-live.example.com")
        assert "smtp-live.example.com" not in ports(server, world.admin)
        assert not greets(new_port)
        r = c.post("/action/mail_server/sync_mail_servers", json={"attributes": {}})
        assert r.status_code == 200, r.text
        patch(c, ref, is_enabled=True)
        assert greets_tls(wait_listener(server, "smtp-live.example.com"))
        r = c.delete(f"/api/mail_server/{ref}")
        assert r.status_code in (200, 204), r.text
        wait_gone(server, "smtp-live.example.com")


def test_two_rows_on_one_interface_both_fail_until_fixed(world: MailWorld) -> None:
    server = world.server
    port = free_port()
    with server.client(world.admin) as c:
        a = add_server(c, "one.example.com", listen_interface=f"127.0.0.1:{port}")
        b = add_server(c, "two.example.com", listen_interface=f"127.0.0.1:{port}")
        for name in ("smtp-one.example.com", "smtp-two.example.com"):
            entry = wait_entry(server, world.admin, name, "failed")
            assert "share listen_interface" in entry["error"]
        r = c.post("/action/mail_server/sync_mail_servers", json={"attributes": {}})
        assert r.status_code == 400 and "share listen_interface" in r.text, r.text
        patch(c, b, listen_interface="127.0.0.1:0")
        wait_entry(server, world.admin, "smtp-one.example.com", "running")
        wait_entry(server, world.admin, "smtp-two.example.com", "running")
        patch(c, a, listen_interface="not an interface")
        assert "not host:port" in wait_entry(server, world.admin, "smtp-one.example.com", "failed")["error"]
        for ref in (a, b):
            patch(c, ref, is_enabled=False)
    with server.client(world.alice) as c:
        r = c.post("/action/mail_server/sync_mail_servers", json={"attributes": {}})
        assert r.status_code == 403, r.text


def test_max_clients(world: MailWorld) -> None:
    server = world.server
    with server.client(world.admin) as c:
        ref = add_server(c, "busy.example.com", max_clients=2, always_on_tls=False, authentication_required=False)
    port = wait_listener(server, "smtp-busy.example.com")
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
    try:
        for s in held:
            assert s.recv(100).startswith(b"220")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
            assert extra.recv(100).startswith(b"421 4.7.0")
            assert extra.recv(100) == b""
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)
    assert greets(port)  # a slot is free again
    with server.client(world.admin) as c:
        patch(c, ref, is_enabled=False)


def test_disable_smtp_env_keeps_every_port_closed(tmp_path: Path) -> None:
    url, drop = fresh_database("sqlite")
    server = start_server(url, env={"DAPTIN_DISABLE_SMTP": "true"})
    try:
        w = mail_world(server)
        with server.client(w.admin) as c:
            add_server(c, "off.example.com", listen_interface="127.0.0.1:0")
            time.sleep(1.5)
            assert "smtp-off.example.com" not in server.listeners
            r = c.post("/action/mail_server/sync_mail_servers", json={"attributes": {}})
            assert r.status_code == 200 and "disabled" in r.text
    finally:
        server.stop()
        drop()


def test_kill_9_after_250_loses_nothing(tmp_path: Path) -> None:
    url, drop = fresh_database("sqlite")
    data = tmp_path / "data"
    server = start_server(url, data)
    try:
        w = mail_world(server)
        port = free_port()
        with server.client(w.admin) as c:
            ref = add_server(
                c,
                "durable.example.com",
                listen_interface=f"127.0.0.1:{port}",
                always_on_tls=False,
                authentication_required=False,
            )
            add_account(c, ref, "dora@durable.example.com", "pw-dora-1", user_ref(server, w.alice))
        wait_listener(server, "smtp-durable.example.com")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not greets(port):
            time.sleep(0.05)
        s = smtplib.SMTP("127.0.0.1", port, timeout=10)
        s.ehlo("c")
        s.mail("x@ext.invalid")
        s.rcpt("dora@durable.example.com")
        code, _ = s.data(b"From: x@ext.invalid\r\nSubject: durable-1\r\n\r\nkeep me\r\n")
        server.proc.kill()  # SIGKILL right after the 250
        assert code == 250
        server.proc.wait(10)
        s.close()
        again = start_server(url, data)
        try:
            assert [m["subject"] for m in mails(again, w.alice, subject="durable-1")] == ["durable-1"]
        finally:
            again.stop()
    finally:
        if server.proc.poll() is None:
            server.stop()
        drop()
