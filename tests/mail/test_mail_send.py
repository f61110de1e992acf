"""Sending mail: `mail.send` over HTTP (MIME, DKIM checked by dkimpy against a local DNS, Sent copy, one outbox
row per recipient, who may send as whom), and the courier delivering to an aiosmtpd sink found by MX lookup:
within a second of the commit, 4xx retried with backoff, 5xx failed at once with a DSN in the sender's INBOX,
expired leases picked up, `process_outbox` harmless. SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import email
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from typing import Any

import dkim
import httpx
import pytest
import sqlalchemy as sa

from outsupport import Sink, TestDNS
from portside.mail import message as stored
from support import Server, create, fresh_database, me, new_user, start_server, sync_url

DOMAIN = "example.com"
ALICE = f"alice@{DOMAIN}"


@dataclass
class SendWorld:
    server: Server
    db_url: str
    admin: str
    owner: str
    stranger: str
    dns: TestDNS
    sink: Sink
    server_ref: str
    account_ref: str
    engine: sa.Engine

    def c(self, token: str | None = None) -> httpx.Client:
        return self.server.client(token)

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params).all())

    def outbox(self, to: str) -> list[Any]:
        return self.rows(
            "SELECT sent, failed, retry_count, last_error, next_retry_at FROM outbox WHERE to_address = :t", t=to
        )

    def box_mail(self, name: str) -> list[Any]:
        return self.rows(
            "SELECT m.subject, m.flags, m.seen, m.mail FROM mail m JOIN mail_box b ON b.id = m.mail_box_id "
            "JOIN mail_account a ON a.id = b.mail_account_id WHERE a.username = :u AND b.name = :n ORDER BY m.uid",
            u=ALICE,
            n=name,
        )


def set_config(c: httpx.Client, key: str, value: str) -> None:
    r = c.post(f"/_config/backend/{key}", content=value)
    assert r.status_code == 200, r.text


def send(c: httpx.Client, **attrs: Any) -> httpx.Response:
    return c.post("/action/world/mail.send", json={"attributes": attrs})


def wait_for(check: Any, what: str, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mysql"])
def world(request: pytest.FixtureRequest) -> Iterator[SendWorld]:
    url, drop = fresh_database(request.param)
    dns = TestDNS()
    sink = Sink()
    dns.mx("dest.test", (10, "mx.dest.test"))
    dns.mx(DOMAIN, (10, f"mx.{DOMAIN}"))  # password reset mail to users @example.com goes to the sink too
    dns.records[("nomail.test", "MX")] = [(0, ".")]
    server = start_server(url)
    engine = sa.create_engine(sync_url(url))
    try:
        _, admin = new_user(server, "sadmin")
        _, owner = new_user(server, "sowner")
        _, stranger = new_user(server, "sstranger")
        with server.client(admin) as c:
            assert c.post("/action/world/become_an_administrator").status_code == 200
            set_config(c, "mail.dns_resolver", dns.address)
            set_config(c, "mail.delivery_port", str(sink.port))
            r = create(c, "mail_server", hostname=DOMAIN)
            assert r.status_code == 201, r.text
            server_ref = r.json()["data"]["id"]
            with server.client(owner) as oc:
                owner_ref = me(oc)["id"]
            r = c.post(
                "/api/mail_account",
                json={
                    "data": {
                        "type": "mail_account",
                        "attributes": {"username": ALICE, "password": "pw1", "user_account_id": owner_ref},
                        "relationships": {"mail_server_id": {"data": {"type": "mail_server", "id": server_ref}}},
                    }
                },
            )
            assert r.status_code == 201, r.text
            account_ref = r.json()["data"]["id"]
            r = create(c, "certificate", hostname=DOMAIN)
            assert r.status_code == 201, r.text
            cert_ref = r.json()["data"]["id"]
            r = c.post(
                "/action/certificate/generate_self_certificate", json={"attributes": {"certificate_id": cert_ref}}
            )
            assert r.status_code == 200, r.text
            r = c.post("/action/certificate/dkim_dns_record", json={"attributes": {"certificate_id": cert_ref}})
            assert r.status_code == 200, r.text
            record = r.json()[0]["Attributes"]
            assert record["name"] == f"d1._domainkey.{DOMAIN}" and record["type"] == "TXT"
            assert record["value"].startswith("v=DKIM1; k=rsa; p=")
            dns.txt(record["name"], record["value"])
        yield SendWorld(server, url, admin, owner, stranger, dns, sink, server_ref, account_ref, engine)
    finally:
        server.stop()
        engine.dispose()
        sink.stop()
        dns.stop()
        drop()


def test_missing_server_hostname_is_daptins_error(world: SendWorld) -> None:  # spec §I.22
    with world.c(world.owner) as c:
        r = send(c, **{"from": ALICE, "to": ["bob@dest.test"], "subject": "x", "body": "y"})
    assert r.status_code == 400, r.text
    assert "missing required field: mail_server_hostname or backend config mail.default_server_hostname" in r.text
    with world.c(world.admin) as c:
        set_config(c, "mail.default_server_hostname", DOMAIN)  # from here on the default applies


def test_sender_without_account_queues_nothing(world: SendWorld) -> None:  # spec §I.24
    before = world.rows("SELECT count(*) FROM outbox")[0][0]
    with world.c(world.admin) as c:
        r = send(c, **{"from": f"nobody@{DOMAIN}", "to": "bob@dest.test", "body": "y"})
    assert r.status_code == 400 and f"sender mail account not found [nobody@{DOMAIN}]" in r.text
    assert world.rows("SELECT count(*) FROM outbox")[0][0] == before


def test_only_the_accounts_owner_or_an_admin_sends_as_it(world: SendWorld) -> None:
    before = world.rows("SELECT count(*) FROM outbox")[0][0]
    with world.c(world.stranger) as c:
        r = send(c, **{"from": ALICE, "to": "bob@dest.test", "body": "spoof"})
        assert r.status_code == 403, r.text
    with world.c() as c:
        assert send(c, **{"from": ALICE, "to": "bob@dest.test", "body": "guest"}).status_code in (401, 403)
    assert world.rows("SELECT count(*) FROM outbox")[0][0] == before


@pytest.mark.parametrize(
    "attrs",
    [
        {"to": "bob@dest.test", "subject": "a\r\nBcc: evil@x.org"},  # header injection
        {"to": "bob@dest.test\r\nRCPT TO:<x@y.z>"},
        {"to": ["not an address"]},
        {"to": []},
        {"to": {"a": 1}},
        {"to": "bob@dest.test", "attachments": [{"name": "a.txt", "file": "%%%not base64"}]},
        {"to": "bob@dest.test", "attachments": "nope"},
        {"to": "bob@dest.test", "mail_server_hostname": "unknown.example"},
        {"to": "bob@dest.test", "subject": "x" * 1000},  # longer than a header line may be
        {"to": "bob@dest.test", "reply_to": "a@b.test, c@d.test"},
        {"to": "bob@dest.test", "attachments": [{"name": "../../etc/passwd\x01", "file": "aGk="}]},
        {"to": [f"r{i}@dest.test" for i in range(4)]},  # over mail.send_max_recipients (set to 3 here)
    ],
)
def test_bad_input_is_refused_and_changes_nothing(world: SendWorld, attrs: dict[str, Any]) -> None:
    before = world.rows("SELECT count(*) FROM outbox")[0][0]
    sent_before = len(world.box_mail("Sent"))
    with world.c(world.admin) as c:
        set_config(c, "mail.send_max_recipients", "3")
    try:
        with world.c(world.owner) as c:
            r = send(c, **{"from": ALICE, "body": "x", **attrs})
    finally:
        with world.c(world.admin) as c:
            set_config(c, "mail.send_max_recipients", "10000")
    assert r.status_code == 400, r.text
    assert world.rows("SELECT count(*) FROM outbox")[0][0] == before
    assert len(world.box_mail("Sent")) == sent_before


def test_send_signs_stores_one_sent_copy_and_delivers_within_a_second(world: SendWorld) -> None:  # spec §I.23, 26
    sent_before = len(world.box_mail("Sent"))
    got_before = len(world.sink.messages)
    with world.c(world.owner) as c:
        r = send(
            c,
            **{
                "from": ALICE,
                "to": ["bob@dest.test", "Carol <carol@dest.test>"],
                "subject": "Grüße aus Portside",
                "body": "Hallo Bob,\nwie geht's? ✓\n",
                "html": "<p>Hallo <b>Bob</b></p>",
                "attachments": [{"name": "notes.txt", "file": "data:text/plain;base64,bm90ZXMh", "type": "text/plain"}],
            },
        )
        assert r.status_code == 200, r.text
        result = next(x for x in r.json() if x["ResponseType"] == "mail.send")["Attributes"]
        assert result["recipients"] == 2 and result["dkim_signed"] is True
    world.sink.wait(got_before + 2, timeout=10)  # woken by the commit: no 5-minute tick (bench/mail_out.py times it)
    rows = [world.outbox(a) for a in ("bob@dest.test", "carol@dest.test")]
    wait_for(lambda: all(world.outbox(a)[-1][0] for a in ("bob@dest.test", "carol@dest.test")), "rows marked sent")
    assert all(len(r) >= 1 for r in rows)
    sent = world.box_mail("Sent")
    assert len(sent) == sent_before + 1
    assert "\\Seen" in sent[-1][1] and sent[-1][2]
    delivered = world.sink.messages[-1]
    raw = delivered.data
    assert raw.startswith(b"DKIM-Signature:")
    sig = raw.split(b"\r\n\r\n", 1)[0].decode()
    for tag in ("a=rsa-sha256", "c=relaxed/relaxed", f"d={DOMAIN}", "s=d1"):
        assert tag in sig.replace("\r\n", "").replace(" ", "").replace("\t", "") or tag in sig
    assert dkim.verify(raw, dnsfunc=world.dns.dkim_lookup), "dkimpy does not verify what Portside signed"
    tampered = raw.replace(b"Hallo", b"Hullo", 1)
    assert not dkim.verify(tampered, dnsfunc=world.dns.dkim_lookup)
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg["Subject"] == "Grüße aus Portside" and msg["MIME-Version"] == "1.0"
    assert msg.get_content_type() == "multipart/mixed"
    types = [p.get_content_type() for p in msg.walk()]
    assert "multipart/alternative" in types and "text/html" in types
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None and "wie geht's? ✓" in body.get_content()
    attached = list(msg.iter_attachments())
    assert [a.get_filename() for a in attached] == ["notes.txt"] and attached[0].get_content() == "notes!"
    assert email.utils.parsedate_to_datetime(msg["Date"]) is not None
    # a later process_outbox run resends nothing and adds no Sent copy
    with world.c(world.admin) as c:
        r = c.post("/action/outbox/process_outbox", json={"attributes": {}})
        assert r.status_code == 200, r.text
    time.sleep(0.3)
    assert len(world.sink.recipients()) == len([r for m in world.sink.messages for r in m.rcpt_tos])
    assert len(world.box_mail("Sent")) == sent_before + 1
    assert sorted(world.sink.recipients()[-2:]) == ["bob@dest.test", "carol@dest.test"]


def test_bcc_is_delivered_but_not_shown(world: SendWorld) -> None:
    got = len(world.sink.recipients())
    with world.c(world.owner) as c:
        r = send(c, **{"from": ALICE, "to": "dan@dest.test", "bcc": ["hidden@dest.test"], "body": "b"})
        assert r.status_code == 200, r.text
    world.sink.wait(got + 2)
    hidden = [m for m in world.sink.messages if "hidden@dest.test" in m.rcpt_tos][-1]
    assert b"hidden@dest.test" not in hidden.data


def test_owner_sees_own_outbox_rows_stranger_does_not(world: SendWorld) -> None:
    with world.c(world.owner) as c:
        r = c.get("/api/outbox")
        assert r.status_code == 200, r.text
        mine = r.json()["data"]
        assert mine and all(row["attributes"]["from_address"] == ALICE for row in mine)
        assert all("mail" not in row["attributes"] for row in mine)
    with world.c(world.stranger) as c:
        r = c.get("/api/outbox")
        assert r.status_code in (200, 403)
        assert r.status_code == 403 or r.json()["data"] == []


def test_permanent_failure_bounces_at_once(world: SendWorld) -> None:
    inbox_before = len(world.box_mail("INBOX"))
    with world.c(world.owner) as c:
        r = send(c, **{"from": ALICE, "to": "perm-nobody@dest.test", "subject": "will bounce", "body": "x"})
        assert r.status_code == 200, r.text
    row = wait_for(lambda: [x for x in world.outbox("perm-nobody@dest.test") if x[1]], "the row to fail")[0]
    assert not row[0] and row[2] == 1 and "550 5.1.1" in row[3] and row[4] is None
    inbox = wait_for(lambda: world.box_mail("INBOX")[inbox_before:], "the DSN in the INBOX")
    dsn = email.message_from_bytes(stored.decode(inbox[-1][3]), policy=policy.default)
    assert dsn.get_content_type() == "multipart/report" and dsn.get_param("report-type") == "delivery-status"
    status = [p for p in dsn.walk() if p.get_content_type() == "message/delivery-status"]
    assert status
    text = stored.decode(inbox[-1][3]).decode()
    assert "Final-Recipient: rfc822; perm-nobody@dest.test" in text and "Status: 5.1.1" in text
    assert "Action: failed" in text and "Subject: will bounce" in text


def test_null_mx_and_unknown_domain_fail_permanently(world: SendWorld) -> None:
    with world.c(world.owner) as c:
        assert (
            send(c, **{"from": ALICE, "to": ["x@nomail.test", "y@no-such-domain.test"], "body": "x"}).status_code == 200
        )
    for to in ("x@nomail.test", "y@no-such-domain.test"):
        row = wait_for(lambda to=to: [x for x in world.outbox(to) if x[1]], f"{to} to fail")[0]
        assert row[2] == 1 and ("null MX" in row[3] or "does not exist" in row[3])


def test_temporary_failure_retries_with_backoff_then_bounces(world: SendWorld) -> None:  # spec §I.25 [R #10]
    with world.c(world.owner) as c:
        r = send(c, **{"from": ALICE, "to": "temp-busy@dest.test", "subject": "retry me", "body": "x"})
        assert r.status_code == 200, r.text
    row = wait_for(lambda: [x for x in world.outbox("temp-busy@dest.test") if x[2] == 1], "the first attempt")[0]
    assert not row[0] and not row[1] and "451 4.3.0" in row[3]
    next_at = row[4] if isinstance(row[4], dt.datetime) else dt.datetime.fromisoformat(str(row[4]))
    delay = (next_at - time_now()).total_seconds()
    assert 100 < delay < 125, delay  # about two minutes (2**1 * 60 s)
    inbox_before = len(world.box_mail("INBOX"))
    with world.c(world.admin) as c:  # fast retries from now on; give up after 3 attempts
        set_config(c, "mail.retry_base_seconds", "0.1")
        set_config(c, "mail.delivery_attempts", "3")
    # the row waits two minutes: pull its next try forward as an operator would
    with world.engine.begin() as conn:
        conn.execute(sa.text("UPDATE outbox SET next_retry_at = NULL WHERE to_address = 'temp-busy@dest.test'"))
    with world.c(world.admin) as c:
        assert c.post("/action/outbox/process_outbox", json={"attributes": {}}).status_code == 200
    row = wait_for(lambda: [x for x in world.outbox("temp-busy@dest.test") if x[1]], "the final failure", 15)[0]
    assert row[2] == 3 and not row[0]
    inbox = wait_for(lambda: world.box_mail("INBOX")[inbox_before:], "the DSN")
    assert b"retry me" in stored.decode(inbox[-1][3])
    with world.c(world.admin) as c:
        set_config(c, "mail.delivery_attempts", "5")
        set_config(c, "mail.retry_base_seconds", "60")


def time_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def test_an_expired_lease_of_a_crashed_node_is_delivered(world: SendWorld) -> None:
    got = len(world.sink.recipients())
    with world.c(world.owner) as c:
        assert send(c, **{"from": ALICE, "to": "lease@dest.test", "body": "x"}).status_code == 200
    world.sink.wait(got + 1)

    def settled() -> bool:  # the sink has the message before the courier commits `sent`: wait for that commit
        with world.engine.connect() as conn:
            q = "SELECT sent FROM outbox WHERE to_address = 'lease@dest.test'"
            return bool(conn.execute(sa.text(q)).scalar_one())

    wait_for(settled, "the first delivery marked sent")
    # a row claimed by a node that died: leased for four more seconds, never settled (MariaDB keeps DATETIME in
    # whole seconds, cutting up to one off: the lease must still outlast the check below on a slow machine)
    with world.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE outbox SET sent = :f, next_retry_at = :t WHERE to_address = 'lease@dest.test'"),
            {"f": False, "t": time_now() + dt.timedelta(seconds=4)},
        )
    with world.c(world.admin) as c:  # any commit wakes the courier, which then sleeps until the lease ends
        set_config(c, "mail.delivery_concurrency", "10")
    time.sleep(1.0)
    assert world.sink.recipients().count("lease@dest.test") == 1  # not before the lease ends
    wait_for(lambda: world.sink.recipients().count("lease@dest.test") == 2, "delivery after the lease", 10)


def test_dkim_record_action_needs_read_on_the_certificate(world: SendWorld) -> None:
    with world.c(world.admin) as c:
        q = json.dumps([{"column": "hostname", "operator": "is", "value": DOMAIN}])
        ref = c.get("/api/certificate", params={"query": q}).json()["data"][0]["id"]
    with world.c(world.stranger) as c:
        r = c.post("/action/certificate/dkim_dns_record", json={"attributes": {"certificate_id": ref}})
        assert r.status_code in (403, 404), r.text
        assert "DKIM1" not in r.text
