"""Received mail is checked in worker processes (`mail.workers`): DKIM still verified pass and fail through
them, a worker that dies costs only the messages it held (`451 4.3.0`, the next one is accepted), the
workers stop with the last SMTP listener and with the server, and `mail.inbound_workers` resizes the pool
live (0: checks in threads)."""

from __future__ import annotations

import json
import os
import signal
import smtplib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest

from mailsupport import (
    LocalDNS,
    MailWorld,
    add_account,
    add_server,
    dns_fixture,  # noqa: F401 (the module fixture `dns`)
    key_fixture,  # noqa: F401 (the module fixture `key`)
    mail_world,
    mails,
    user_ref,
    wait_gone,
    wait_listener,
)
from support import fresh_database, start_server

ALICE_PW = "alice-mail-pw"
WORKER_MODULE = "portside.mail.worker"


def worker_pids(parent: int) -> list[int]:
    """The mail worker processes of server process `parent` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat[1]) == parent and WORKER_MODULE.encode() in cmdline and stat[0] != "Z":
            out.append(int(entry.name))
    return sorted(out)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_dead(pids: list[int], timeout: float = 20) -> None:
    """Every one of `pids` has exited (an exiting process drops its command line before it is gone)."""
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, f"still running: {[p for p in pids if alive(p)]}"
        time.sleep(0.05)


def wait_workers(parent: int, count: int, timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = worker_pids(parent)
        if len(pids) == count:
            return pids
        time.sleep(0.05)
    raise AssertionError(f"expected {count} mail workers of {parent}, found {worker_pids(parent)}")


@pytest.fixture(scope="module")
def world(dns: LocalDNS, key: tuple[bytes, str]) -> Iterator[MailWorld]:
    url, drop = fresh_database("sqlite")
    server = start_server(url)
    w = mail_world(server, ("mail.dns_resolver", dns.setting), ("mail.smtp_timeout", "10"))
    dns.zone.add("ext.org", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    dns.zone.add("sel1._domainkey.signed.org", "TXT", key[1])
    dns.zone.add("_dmarc.signed.org", "TXT", "v=DMARC1; p=reject; adkim=r")
    with server.client(w.admin) as c:
        w.refs["example.com"] = add_server(c, "example.com", authentication_required=False, always_on_tls=False)
        add_account(c, w.refs["example.com"], "alice@example.com", ALICE_PW, user_ref(server, w.alice))
    w.ports["example.com"] = wait_listener(server, "smtp-example.com")
    yield w
    server.stop()
    drop()


def message(subject: str, sender: str = "carol@ext.org", body: str = "hello\r\n") -> bytes:
    domain = sender.split("@")[1]
    head = f"From: {sender}\r\nTo: alice@example.com\r\nSubject: {subject}\r\nMessage-ID: <{subject}@{domain}>\r\n"
    return (head + "\r\n" + body).encode()


def send(w: MailWorld, raw: bytes, sender: str = "carol@ext.org") -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", w.ports["example.com"], timeout=30) as s:
        s.ehlo("client.ext.org")
        s.mail(sender)
        s.rcpt("alice@example.com")
        return s.data(raw)


def set_config(w: MailWorld, key: str, value: str) -> None:
    with w.server.client(w.admin) as c:
        r = c.post(f"/_config/backend/{key}", content=value)
        assert r.status_code == 200, r.text


def enable(w: MailWorld, on: bool) -> None:
    ref = w.refs["example.com"]
    with w.server.client(w.admin) as c:
        doc = {"data": {"type": "mail_server", "id": ref, "attributes": {"is_enabled": on}}}
        r = c.patch(f"/api/mail_server/{ref}", json=doc)
        assert r.status_code == 200, r.text


def test_dkim_pass_and_fail_are_verified_in_the_workers(world: MailWorld, key: tuple[bytes, str]) -> None:
    pids = wait_workers(world.server.proc.pid, min(2, os.cpu_count() or 1))
    plain = message("w-dkim-good", "news@signed.org", "signed body\r\n")
    sig = dkim.sign(plain, b"sel1", b"signed.org", key[0], include_headers=[b"from", b"to", b"subject"])
    tampered = sig + plain.replace(b"w-dkim-good", b"w-dkim-bad").replace(b"signed body", b"forged body")
    assert send(world, sig + plain, "news@signed.org")[0] == 250
    assert send(world, tampered, "news@signed.org")[0] == 250
    [good] = mails(world.server, world.alice, subject="w-dkim-good")
    verdict = json.loads(good["spam_verdict"])
    assert verdict["dkim"] == [{"result": "pass", "domain": "signed.org", "selector": "sel1"}]
    assert verdict["dmarc"]["result"] == "pass" and good["junk"] is False
    [bad] = mails(world.server, world.alice, subject="w-dkim-bad")
    verdict = json.loads(bad["spam_verdict"])
    assert verdict["dkim"][0]["result"] == "fail" and verdict["dmarc"]["result"] == "fail" and bad["junk"] is True
    assert worker_pids(world.server.proc.pid) == pids  # the same workers did it: none died or was replaced


def test_a_worker_that_dies_fails_its_message_451_and_the_next_is_accepted(world: MailWorld) -> None:
    parent = world.server.proc.pid
    pids = wait_workers(parent, min(2, os.cpu_count() or 1))
    for pid in pids:  # stopped: the next job waits in a worker's socket
        os.kill(pid, signal.SIGSTOP)
    outcome: list[BaseException | tuple[int, bytes]] = []

    def deliver() -> None:
        try:
            outcome.append(send(world, message("w-lost")))
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=deliver)
    t.start()
    time.sleep(1.0)
    assert not outcome  # still waiting for its check
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    t.join(30)
    [result] = outcome
    assert isinstance(result, tuple), result
    code, text = result
    assert code == 451 and text.startswith(b"4.3.0"), result
    assert send(world, message("w-after"))[0] == 250  # a new worker took over
    assert mails(world.server, world.alice, subject="w-lost") == []
    [after] = mails(world.server, world.alice, subject="w-after")
    assert json.loads(after["spam_verdict"])["spf"]["result"] == "pass"
    now = wait_workers(parent, min(2, os.cpu_count() or 1))
    assert not set(now) & set(pids)
    wait_dead(pids)


def test_workers_follow_the_config_and_stop_with_the_last_listener(world: MailWorld) -> None:
    parent = world.server.proc.pid
    old = wait_workers(parent, min(2, os.cpu_count() or 1))
    set_config(world, "mail.inbound_workers", "0")  # checks in threads: the pool retires
    wait_workers(parent, 0)
    wait_dead(old)
    assert send(world, message("w-threads"))[0] == 250
    [row] = mails(world.server, world.alice, subject="w-threads")
    assert json.loads(row["spam_verdict"])["spf"]["result"] == "pass"
    set_config(world, "mail.inbound_workers", "1")
    [one] = wait_workers(parent, 1)
    enable(world, False)
    wait_gone(world.server, "smtp-example.com")
    wait_workers(parent, 0)
    wait_dead([one])
    enable(world, True)
    world.ports["example.com"] = wait_listener(world.server, "smtp-example.com")
    wait_workers(parent, 1)
    assert send(world, message("w-back"))[0] == 250


def test_the_workers_stop_with_the_server(dns: LocalDNS) -> None:
    url, drop = fresh_database("sqlite")
    server = start_server(url)
    try:
        w = mail_world(server, ("mail.dns_resolver", dns.setting), ("mail.inbound_workers", "2"))
        with server.client(w.admin) as c:
            add_server(c, "stop.example.com", authentication_required=False, always_on_tls=False)
        wait_listener(server, "smtp-stop.example.com")
        pids = wait_workers(server.proc.pid, 2)
    finally:
        server.stop()  # SIGTERM: a graceful stop
        drop()
    assert server.proc.returncode == 0
    wait_dead(pids, 10)
