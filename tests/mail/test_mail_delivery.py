"""The delivery client on its own (in-process, real sockets): MX preference, a host that fails part-way
hands only the undelivered messages to the next host, 4xx/5xx per recipient, routes that cannot work."""

from __future__ import annotations

import asyncio

from outsupport import Sink, TestDNS, free_port
from portside.mail import delivery


def message(n: int, to: str) -> delivery.Message:
    return delivery.Message(n, "a@example.com", to, f"Subject: m{n}\r\n\r\nbody {n}\r\n".encode())


def test_a_host_failing_part_way_leaves_only_the_rest_to_the_next_mx() -> None:
    dns = TestDNS()
    port = free_port()
    first = Sink(host="127.0.0.1", port=port, close_after=2)
    second = Sink(host="127.0.0.2", port=port)
    try:
        dns.records[("split.test", "MX")] = [(20, "mx2.split.test"), (10, "mx1.split.test")]
        dns.records[("mx1.split.test", "A")] = ["127.0.0.1"]
        dns.records[("mx2.split.test", "A")] = ["127.0.0.2"]
        settings = delivery.Settings(resolver=dns.address, port=port)
        batch = [message(n, f"u{n}@split.test") for n in range(1, 6)] + [message(6, "perm-x@split.test")]
        results = asyncio.run(delivery.deliver(settings, "portside.test", "split.test", batch))
        assert [r.key for r in results] == [1, 2, 3, 4, 5, 6]
        assert first.recipients() == ["u1@split.test", "u2@split.test"]  # the preferred MX first
        assert second.recipients() == ["u3@split.test", "u4@split.test", "u5@split.test"]  # no repeats
        assert all(r.ok for r in results[:5])
        assert not results[5].ok and results[5].permanent and results[5].code == 550
    finally:
        first.stop()
        second.stop()
        dns.stop()


def test_routes_that_cannot_work() -> None:
    dns = TestDNS()
    try:
        dns.records[("nomail.test", "MX")] = [(0, ".")]
        dns.records[("noaddr.test", "MX")] = [(10, "ghost.noaddr.test")]
        settings = delivery.Settings(resolver=dns.address, port=free_port())
        for domain, permanent in (("nomail.test", True), ("nx.test", True), ("noaddr.test", False)):
            [r] = asyncio.run(delivery.deliver(settings, "p.test", domain, [message(1, f"x@{domain}")]))
            assert not r.ok and r.permanent is permanent, (domain, r)
        dns.records[("closed.test", "MX")] = [(10, "mx.closed.test")]
        dns.records[("mx.closed.test", "A")] = ["127.0.0.1"]
        [r] = asyncio.run(delivery.deliver(settings, "p.test", "closed.test", [message(1, "x@closed.test")]))
        assert not r.ok and not r.permanent and "mx.closed.test" in r.error  # nobody listening: retry later
        bad = delivery.Settings(smarthost="not a host:port:x")
        [r] = asyncio.run(delivery.deliver(bad, "p.test", "any.test", [message(1, "x@any.test")]))
        assert not r.ok and not r.permanent and "mail.smarthost" in r.error
    finally:
        dns.stop()


def test_one_message_to_many_recipients_is_one_transaction_with_per_recipient_outcomes() -> None:
    dns = TestDNS()
    sink = Sink()
    try:
        dns.mx("many.test", (10, "mx.many.test"))
        settings = delivery.Settings(resolver=dns.address, port=sink.port)
        raw = b"Subject: shared\r\n\r\nsame bytes\r\n"
        names = ["ok1", "perm-a", "ok2", "temp-b", *(f"x{i}" for i in range(60))]
        batch = [delivery.Message(n, "a@example.com", f"{name}@many.test", raw) for n, name in enumerate(names)]
        results = asyncio.run(delivery.deliver(settings, "p.test", "many.test", batch))
        by_name = {names[r.key]: r for r in results}
        assert by_name["ok1"].ok and by_name["ok2"].ok and all(by_name[f"x{i}"].ok for i in range(60))
        assert by_name["perm-a"].permanent and by_name["perm-a"].code == 550
        assert not by_name["temp-b"].ok and not by_name["temp-b"].permanent and by_name["temp-b"].code == 451
        assert len(sink.messages) == 2  # 62 accepted recipients: two transactions of at most 50 RCPTs
        assert sorted(sink.recipients()) == sorted(f"{n}@many.test" for n in names if n[:4] not in ("perm", "temp"))
    finally:
        sink.stop()
        dns.stop()
