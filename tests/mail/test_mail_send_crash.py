"""A node killed (-9) in the middle of delivering: its claim is a lease in the database, so another node on
the same PostgreSQL database delivers the row once the lease has expired (and not before)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import sqlalchemy as sa
from aiosmtpd.controller import Controller

from outsupport import TestDNS, free_port
from support import REDIS, create, fresh_database, me, new_user, start_server, sync_url

DOMAIN = "example.com"
LEASE = 8


class Stalling:
    """Takes the first message's data and never answers it; answers every later one."""

    def __init__(self) -> None:
        self.started: list[float] = []
        self.delivered: list[tuple[float, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.started.append(time.monotonic())
        if len(self.started) == 1:
            await asyncio.sleep(60)
        self.delivered.append((time.monotonic(), list(envelope.rcpt_tos)))
        return "250 2.0.0 OK"


def test_a_killed_nodes_claim_expires_and_another_node_delivers() -> None:
    url, drop = fresh_database("postgresql")
    dns, handler = TestDNS(), Stalling()
    port = free_port()
    sink = Controller(handler, hostname="127.0.0.1", port=port)
    sink.start()
    engine = sa.create_engine(sync_url(url))
    a = start_server(url, None, "--redis-url", REDIS)
    b = None
    try:
        dns.mx("dest.test", (10, "mx.dest.test"))
        _, admin = new_user(a, "kadmin")
        with a.client(admin) as c:
            assert c.post("/action/world/become_an_administrator").status_code == 200
            for key, value in (
                ("mail.dns_resolver", dns.address),
                ("mail.delivery_port", str(port)),
                ("mail.default_server_hostname", DOMAIN),
                ("mail.outbox_claim_ttl", str(LEASE)),
            ):
                assert c.post(f"/_config/backend/{key}", content=value).status_code == 200
            server_ref = create(c, "mail_server", hostname=DOMAIN).json()["data"]["id"]
            account = {
                "type": "mail_account",
                "attributes": {"username": f"kim@{DOMAIN}", "password": "pw1", "user_account_id": me(c)["id"]},
                "relationships": {"mail_server_id": {"data": {"type": "mail_server", "id": server_ref}}},
            }
            assert c.post("/api/mail_account", json={"data": account}).status_code == 201
            r = c.post(
                "/action/world/mail.send",
                json={"attributes": {"from": f"kim@{DOMAIN}", "to": "late@dest.test", "body": "crash"}},
            )
            assert r.status_code == 200, r.text
        deadline = time.monotonic() + 10
        while not handler.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert handler.started, "node A never started delivering"
        a.proc.kill()  # kill -9 while the message is in flight: A's lease stays in the database
        a.proc.wait(10)
        killed = time.monotonic()
        with engine.connect() as conn:
            row = conn.execute(sa.text("SELECT sent, next_retry_at FROM outbox")).one()
        assert not row[0] and row[1] is not None
        b = start_server(url, None, "--redis-url", REDIS)
        deadline = time.monotonic() + 20
        while not handler.delivered and time.monotonic() < deadline:
            time.sleep(0.05)
        assert handler.delivered and handler.delivered[0][1] == ["late@dest.test"]
        assert handler.delivered[0][0] - handler.started[0] >= LEASE - 0.5  # not before A's lease ended
        assert handler.delivered[0][0] - killed < LEASE + 10
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                if conn.execute(sa.text("SELECT sent FROM outbox")).scalar_one():
                    break
            time.sleep(0.05)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT sent, retry_count FROM outbox")).one() == (True, 0)
    finally:
        if b is not None:
            b.stop()
        a.stop()
        engine.dispose()
        sink.stop()
        dns.stop()
        drop()
