"""The outbound half of bench/mail.py (run that script: `bench/mail.py --outbound`): one `mail.send` to
2,000 recipients, delivered by the outbox courier to a local aiosmtpd sink found through MX lookup on a
local test DNS (dnslib).

Method
  1. A Portside process (`python -m portside.cli.main serve`, this checkout's sources) on a fresh database;
     an administrator sets `mail.dns_resolver` (the test DNS: `dest.test MX 10 mx.dest.test`, A 127.0.0.1),
     `mail.delivery_port` (the sink) and creates a mail server, a mail account and a certificate for the
     sender's domain (so every message is DKIM-signed, as in production).
  2. One `POST /action/world/mail.send` with `--recipients` recipients (4 KB body). The action answers after
     its transaction committed (Sent copy + one outbox row per recipient); that moment is "commit".
  3. The sink (aiosmtpd in this process) stamps each message on arrival. Reported: time from commit to the
     first delivery, time to deliver all, deliveries/s (recipients / (last arrival - commit)), and that every
     recipient arrived exactly once.
  4. Reference in the same run: aiosmtplib sending the same number of messages of the same size straight to
     the same sink over 10 connections (no database, no queue, no DNS): the client+sink limit of this machine.
  Goal (issue 13): all delivered, >= 500 deliveries/s, first delivery within 1 s of the commit.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosmtplib
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from dnslib import MX, QTYPE, RR, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import expect, request

LISTEN_RE = re.compile(r"portside: http listening on (http://\S+)")
BODY = ("Portside outbound benchmark line of text, about seventy characters long..\n" * 56)[:4096]


class Zone(BaseResolver):  # type: ignore[misc]
    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        if name == "dest.test" and qtype == "MX":
            reply.add_answer(RR(request.q.qname, QTYPE.MX, rdata=MX("mx.dest.test", 10), ttl=60))
        elif name == "mx.dest.test" and qtype == "A":
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A("127.0.0.1"), ttl=60))
        elif name not in ("dest.test", "mx.dest.test"):
            reply.header.rcode = 3
        return reply


class Stamp:
    def __init__(self) -> None:
        self.arrivals: list[tuple[float, str]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        now = time.monotonic()
        with self.lock:
            self.arrivals.extend((now, r) for r in envelope.rcpt_tos)
        return "250 2.0.0 OK"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_portside(data_dir: str, db_url: str) -> tuple[subprocess.Popen[str], str]:
    prof = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]] if os.environ.get("BENCH_PROFILE") else []
    args = [sys.executable, *prof, "-m", "portside.cli.main", "serve", "--port", "0", "--data-dir", data_dir]
    args += ["--log-level", "warning", "--database-url", db_url]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        m = LISTEN_RE.search(line)
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stdout or []], daemon=True).start()
            return proc, m.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("portside did not start")


def database(kind: str) -> tuple[str, Any]:
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='bench-mail-')}/portside.db", lambda: None
    name = f"bench_mail_{os.getpid()}"
    admin = sa.create_engine("postgresql+psycopg2://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", drop


def setup(url: str, dns_port: int, sink_port: int) -> str:
    email, pw = "bench-admin@example.com", "benchpass1"
    status, body = request(
        "POST",
        f"{url}/action/user_account/signup",
        {"attributes": {"name": "B", "email": email, "password": pw, "passwordConfirm": pw}},
    )
    expect(status, 200, "signup", body)
    status, body = request(
        "POST", f"{url}/action/user_account/signin", {"attributes": {"email": email, "password": pw}}
    )
    expect(status, 200, "signin", body)
    token = next(x for x in body if x["ResponseType"] == "client.store.set")["Attributes"]["value"]
    expect(*request("POST", f"{url}/action/world/become_an_administrator", {}, token)[:1], 200, "admin", None)
    for key, value in (
        ("mail.dns_resolver", f"127.0.0.1:{dns_port}"),
        ("mail.delivery_port", str(sink_port)),
        ("mail.default_server_hostname", "example.com"),
    ):
        req = request("POST", f"{url}/_config/backend/{key}", value, token)
        expect(req[0], 200, key, req[1])
    status, body = request(
        "POST",
        f"{url}/api/mail_server",
        {"data": {"type": "mail_server", "attributes": {"hostname": "example.com"}}},
        token,
    )
    expect(status, 201, "mail_server", body)
    server_ref = body["data"]["id"]
    status, me = request("GET", f"{url}/api/user_account/mine", None, token)
    account = {
        "type": "mail_account",
        "attributes": {"username": "bench@example.com", "password": "pw", "user_account_id": me["data"]["id"]},
        "relationships": {"mail_server_id": {"data": {"type": "mail_server", "id": server_ref}}},
    }
    status, body = request("POST", f"{url}/api/mail_account", {"data": account}, token)
    expect(status, 201, "mail_account", body)
    cert = {"data": {"type": "certificate", "attributes": {"hostname": "example.com"}}}
    status, body = request("POST", f"{url}/api/certificate", cert, token)
    expect(status, 201, "certificate", body)
    ref = body["data"]["id"]
    for action in ("generate_self_certificate", "dkim_dns_record"):
        status, body = request(
            "POST", f"{url}/action/certificate/{action}", {"attributes": {"certificate_id": ref}}, token
        )
        expect(status, 200, action, body)
    return token


async def reference(port: int, count: int, raw: bytes, per_transaction: int) -> float:
    """Seconds for aiosmtplib to hand `count` recipients straight to the sink over 10 connections,
    `per_transaction` recipients per MAIL/RCPT/DATA."""
    queue = [list(range(i, min(i + per_transaction, count))) for i in range(0, count, per_transaction)]
    start = time.monotonic()

    async def worker() -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await smtp.connect()
        while queue:
            group = queue.pop()
            await smtp.sendmail("bench@example.com", [f"ref{n}@dest.test" for n in group], raw)
        await smtp.quit()

    await asyncio.gather(*(worker() for _ in range(10)))
    return time.monotonic() - start


@dataclass
class Outbound:
    recipients: int
    delivered: int
    complete: bool
    http_seconds: float
    first: float
    last: float
    rate: float
    ref_seconds: float
    ref_rate: float
    one_seconds: float
    one_rate: float


def run(n: int, kind: str) -> Outbound:
    """Portside's courier and the aiosmtplib reference, same sink, same run."""
    dns = DNSServer(Zone(), port=0, address="127.0.0.1", logger=DNSLogger(logf=lambda _l: None))
    dns.start_thread()
    stamp = Stamp()
    sink_port = free_port()
    sink = Controller(stamp, hostname="127.0.0.1", port=sink_port)
    sink.start()
    db_url, drop = database(kind)
    proc, url = start_portside(tempfile.mkdtemp(prefix="bench-mail-data-"), db_url)
    try:
        token = setup(url, dns.server.server_address[1], sink_port)
        to = [f"r{i}@dest.test" for i in range(n)]
        attrs = {"from": "bench@example.com", "to": to, "subject": "bench", "body": BODY}
        sent_at = time.monotonic()
        status, body = request("POST", f"{url}/action/world/mail.send", {"attributes": attrs}, token)
        commit = time.monotonic()
        expect(status, 200, "mail.send", body)
        deadline = commit + 120
        while time.monotonic() < deadline and len(stamp.arrivals) < n:
            time.sleep(0.02)
        got = sorted(stamp.arrivals)
        names = [r for _, r in got]
        complete = len(names) == n and len(set(names)) == n
        first = got[0][0] - commit if got else float("nan")
        last = got[-1][0] - commit if got else float("nan")
        rate = len(got) / max(got[-1][0] - commit, 1e-9) if got else 0.0
        raw = ("Subject: bench\r\n\r\n" + BODY.replace("\n", "\r\n")).encode()
        refs = []
        for per in (50, 1):
            before = len(stamp.arrivals)
            seconds = asyncio.run(reference(sink_port, n, raw, per))
            refs.append((seconds, (len(stamp.arrivals) - before) / seconds))
        (ref_seconds, ref_rate), (one_seconds, one_rate) = refs
    finally:
        proc.terminate()
        proc.wait(10)
        sink.stop()
        dns.stop()
        drop()
    delivered = len(set(names))
    return Outbound(
        n, delivered, complete, commit - sent_at, first, last, rate, ref_seconds, ref_rate, one_seconds, one_rate
    )
