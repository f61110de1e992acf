"""Two nodes on one PostgreSQL database, joined by Redis, both running the outbox courier: every outbox row is
delivered exactly once (leases in the database), whichever node committed it."""

from __future__ import annotations

import threading
import time
from typing import Any

import sqlalchemy as sa

from outsupport import Sink, TestDNS
from support import Server, create, me, new_user, sync_url

DOMAIN = "example.com"
COUNT = 60


def _setup(a: Server, dns: TestDNS, sink: Sink) -> str:
    _, admin = new_user(a, "cadmin")
    with a.client(admin) as c:
        assert c.post("/action/world/become_an_administrator").status_code == 200
        for key, value in (
            ("mail.dns_resolver", dns.address),
            ("mail.delivery_port", str(sink.port)),
            ("mail.default_server_hostname", DOMAIN),
        ):
            assert c.post(f"/_config/backend/{key}", content=value).status_code == 200
        r = create(c, "mail_server", hostname=DOMAIN)
        assert r.status_code == 201, r.text
        server_ref = r.json()["data"]["id"]
        owner_ref = me(c)["id"]
        r = c.post(
            "/api/mail_account",
            json={
                "data": {
                    "type": "mail_account",
                    "attributes": {"username": f"carl@{DOMAIN}", "password": "pw1", "user_account_id": owner_ref},
                    "relationships": {"mail_server_id": {"data": {"type": "mail_server", "id": server_ref}}},
                }
            },
        )
        assert r.status_code == 201, r.text
    return admin


def test_two_nodes_deliver_each_row_once(cluster: tuple[str, Server, Server]) -> None:
    url, a, b = cluster
    dns, sink = TestDNS(), Sink()
    try:
        dns.mx("dest.test", (10, "mx.dest.test"))
        admin = _setup(a, dns, sink)
        errors: list[Any] = []

        def burst(node: Server, prefix: str) -> None:
            with node.client(admin) as c:
                for n in range(3):
                    to = [f"{prefix}{n}-{i}@dest.test" for i in range(COUNT // 6)]
                    r = c.post(
                        "/action/world/mail.send",
                        json={"attributes": {"from": f"carl@{DOMAIN}", "to": to, "body": "cluster"}},
                    )
                    if r.status_code != 200:
                        errors.append(r.text)

        threads = [threading.Thread(target=burst, args=(n, p)) for n, p in ((a, "a"), (b, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        sink.wait(COUNT, timeout=30)
        time.sleep(1.0)  # any second delivery would arrive now
        got = sink.recipients()
        assert len(got) == COUNT and len(set(got)) == COUNT, sorted(got)
        engine = sa.create_engine(sync_url(url))
        try:
            with engine.connect() as conn:
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    waiting = conn.execute(sa.text("SELECT count(*) FROM outbox WHERE NOT sent")).scalar_one()
                    if waiting == 0:
                        break
                    time.sleep(0.1)
                assert waiting == 0
                assert conn.execute(sa.text("SELECT count(*) FROM outbox WHERE sent")).scalar_one() == COUNT
        finally:
            engine.dispose()
    finally:
        sink.stop()
        dns.stop()
