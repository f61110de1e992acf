"""More of sending mail, on SQLite: STARTTLS verified (and the CA setting), the smarthost with AUTH,
`aws.mail.send` against moto's SES server (subprocess), password reset through the outbox, `mail_box/status`
filtered by what the caller may see."""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import pytest
import sqlalchemy as sa

from outsupport import Sink, TestDNS, free_port
from portside.certs import x509 as certx
from support import Server, create, fresh_database, me, new_user, signin, start_server, sync_url

DOMAIN = "example.com"


@dataclass
class World:
    server: Server
    admin: str
    owner: str
    owner_email: str
    stranger: str
    dns: TestDNS
    sink: Sink
    account_ref: str
    engine: sa.Engine

    def c(self, token: str | None = None) -> httpx.Client:
        return self.server.client(token)

    def config(self, key: str, value: str) -> None:
        with self.c(self.admin) as c:
            r = c.post(f"/_config/backend/{key}", content=value)
            assert r.status_code == 200, r.text

    def outbox(self, to: str) -> list[Any]:
        with self.engine.connect() as conn:
            q = "SELECT sent, failed, retry_count, last_error FROM outbox WHERE to_address = :t ORDER BY id"
            return list(conn.execute(sa.text(q), {"t": to}).all())


def wait_for(check: Any, what: str, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    url, drop = fresh_database("sqlite")
    dns, sink = TestDNS(), Sink()
    dns.mx(DOMAIN, (10, f"mx.{DOMAIN}"))
    server = start_server(url)
    engine = sa.create_engine(sync_url(url))
    try:
        _, admin = new_user(server, "xadmin")
        owner_email, owner = new_user(server, "xowner")
        _, stranger = new_user(server, "xstranger")
        with server.client(admin) as c:
            assert c.post("/action/world/become_an_administrator").status_code == 200
            for key, value in (
                ("mail.dns_resolver", dns.address),
                ("mail.delivery_port", str(sink.port)),
                ("mail.default_server_hostname", DOMAIN),
            ):
                assert c.post(f"/_config/backend/{key}", content=value).status_code == 200
            r = create(c, "mail_server", hostname=DOMAIN)
            assert r.status_code == 201, r.text
            with server.client(owner) as oc:
                owner_ref = me(oc)["id"]
            r = c.post(
                "/api/mail_account",
                json={
                    "data": {
                        "type": "mail_account",
                        "attributes": {"username": f"bob@{DOMAIN}", "password": "pw1", "user_account_id": owner_ref},
                        "relationships": {
                            "mail_server_id": {"data": {"type": "mail_server", "id": r.json()["data"]["id"]}}
                        },
                    }
                },
            )
            assert r.status_code == 201, r.text
            account_ref = r.json()["data"]["id"]
        yield World(server, admin, owner, owner_email, stranger, dns, sink, account_ref, engine)
    finally:
        server.stop()
        engine.dispose()
        sink.stop()
        dns.stop()
        drop()


def send(w: World, token: str, **attrs: Any) -> httpx.Response:
    with w.c(token) as c:
        return c.post("/action/world/mail.send", json={"attributes": {"from": f"bob@{DOMAIN}", **attrs}})


# -- routes ------------------------------------------------------------------------------------------


def test_starttls_is_verified(world: World) -> None:
    m = certx.self_signed("mx.tls.test")
    folder = tempfile.mkdtemp()
    cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    with open(cert, "w") as f:
        f.write(m.cert_pem)
    with open(key, "w") as f:
        f.write(m.key_pem)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    tls_sink = Sink(tls=ctx)
    try:
        world.dns.mx("tls.test", (10, "mx.tls.test"))
        world.config("mail.delivery_port", str(tls_sink.port))
        assert send(world, world.owner, to="t1@tls.test", body="over tls").status_code == 200
        row = wait_for(lambda: [r for r in world.outbox("t1@tls.test") if r[2] == 1], "a failed attempt")[0]
        assert not row[0] and not row[1] and "CERTIFICATE_VERIFY_FAILED" in row[3]
        assert tls_sink.messages == []  # an unverified server never gets the message
        world.config("mail.delivery_ca_file", cert)
        assert send(world, world.owner, to="t2@tls.test", body="over tls").status_code == 200
        tls_sink.wait(1)
        assert tls_sink.messages[0].tls and tls_sink.messages[0].rcpt_tos == ["t2@tls.test"]
    finally:
        world.config("mail.delivery_port", str(world.sink.port))
        world.config("mail.delivery_ca_file", "")
        tls_sink.stop()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # the test relay, on loopback
def test_smarthost_with_auth(world: World) -> None:
    relay = Sink(auth=("relayuser", "relaypass"))
    try:
        world.config("mail.smarthost", f"127.0.0.1:{relay.port}")
        world.config("mail.smarthost_username", "relayuser")
        world.config("mail.smarthost_password", "wrong")
        assert send(world, world.owner, to="far@anywhere.test", body="via relay").status_code == 200
        row = wait_for(lambda: [r for r in world.outbox("far@anywhere.test") if r[2] >= 1], "a refused AUTH")[0]
        assert not row[0] and not row[1] and "535" in row[3]  # bad AUTH is retried, not bounced
        with world.c(world.admin) as c:
            r = c.get("/_config/backend/mail.smarthost_password")
            assert "wrong" not in r.text  # a secret: write-only
        world.config("mail.smarthost_password", "relaypass")
        assert send(world, world.owner, to="far2@anywhere.test", body="via relay").status_code == 200
        relay.wait(1)
        assert relay.messages[0].login == "relayuser" and relay.messages[0].rcpt_tos == ["far2@anywhere.test"]
        assert "far2@anywhere.test" not in world.sink.recipients()  # no MX lookup with a smarthost
    finally:
        world.config("mail.smarthost", "")
        relay.stop()


# -- aws.mail.send -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def aws_send(w: World, token: str, **attrs: Any) -> httpx.Response:
    with w.c(token) as c:
        return c.post("/action/world/aws.mail.send", json={"attributes": attrs})


def test_aws_mail_send_against_moto(world: World, moto: str) -> None:
    keys = {"access_key": "AKIDTEST", "secret_key": "secretkey", "region": "us-east-1", "token": ""}
    ses = boto3.client(
        "ses", region_name="us-east-1", endpoint_url=moto, aws_access_key_id="AKIDTEST", aws_secret_access_key="x"
    )
    ses.verify_email_identity(EmailAddress="sender@verified.test")
    world.config("aws.ses_endpoint", moto)
    with world.c(world.admin) as c:
        assert create(c, "credential", name="ses-main", content=json.dumps(keys)).status_code == 201
        bad = {"access_key": "A", "region": "us-east-1"}
        assert create(c, "credential", name="ses-broken", content=json.dumps(bad)).status_code == 201
    mail = {"from": "sender@verified.test", "to": ["x@dest.test"], "subject": "Hi", "credential": "ses-main"}
    r = aws_send(world, world.admin, **mail)  # spec §I.28
    assert r.status_code == 400 and "No valid mail body found" in r.text
    r = aws_send(world, world.admin, **{**mail, "credential": "ses-broken", "text": "t"})
    assert r.status_code == 400 and "credential has no secret_key" in r.text
    r = aws_send(world, world.stranger, **{**mail, "text": "t"})  # may not read the credential row
    assert r.status_code == 404 and "AKIDTEST" not in r.text
    before = ses.get_send_quota()["SentLast24Hours"]
    r = aws_send(world, world.admin, **{**mail, "text": "plain", "html": "<b>rich</b>"})
    assert r.status_code == 200, r.text
    note = r.json()[0]["Attributes"]
    assert note["message"] == "email sent successfully" and note["result"]["MessageId"]
    assert ses.get_send_quota()["SentLast24Hours"] == before + 1
    r = aws_send(world, world.admin, **{**mail, "from": "unverified@else.test", "text": "t"})
    assert r.status_code == 502 and "MessageRejected" in r.text


# -- password reset ----------------------------------------------------------------------------------


def test_password_reset_through_the_outbox(world: World) -> None:
    world.config("mail.password_reset_from", f"no-reply@{DOMAIN}")
    got = len(world.sink.recipients())
    with world.c() as c:
        r = c.post("/action/user_account/reset-password", json={"attributes": {"email": "ghost@example.com"}})
        assert r.status_code == 200, r.text
        same = r.json()
        r = c.post("/action/user_account/reset-password", json={"attributes": {"email": world.owner_email}})
        assert r.status_code == 200 and r.json() == same  # no telling which addresses have accounts
    world.sink.wait(got + 1)
    time.sleep(0.3)
    assert world.sink.recipients()[got:] == [world.owner_email]
    mail = world.sink.messages[-1]
    assert mail.mail_from == f"no-reply@{DOMAIN}"
    code = re.search(rb"code is (\d{8})", mail.data)
    assert code is not None
    with world.c() as c:
        verify = "/action/user_account/reset-password-verify"
        wrong = "00000000" if code.group(1) != b"00000000" else "11111111"
        attrs = {"email": world.owner_email, "otp": wrong, "password": "brand-new-pw"}
        r = c.post(verify, json={"attributes": attrs})
        assert r.status_code == 400 and "invalid or expired code" in r.text
        attrs["otp"] = code.group(1).decode()
        r = c.post(verify, json={"attributes": attrs})
        assert r.status_code == 200, r.text
        world.owner = signin(c, world.owner_email, "brand-new-pw")  # the old token died with the password
        r = c.post("/action/user_account/signin", json={"attributes": {"email": world.owner_email, "password": "x"}})
        assert r.status_code != 200
        r = c.post(verify, json={"attributes": attrs})  # the code died with the old password
        assert r.status_code == 400
    world.sink.wait(got + 2)  # the "password changed" notice


# -- mail_box/status ---------------------------------------------------------------------------------


def status(w: World, token: str, **attrs: Any) -> httpx.Response:
    with w.c(token) as c:
        return c.post("/action/mail_box/status", json={"attributes": attrs})


def test_mailbox_status_shows_only_what_the_caller_may_see(world: World) -> None:
    r = status(world, world.owner, mail_account_id=world.account_ref)
    assert r.status_code == 200, r.text
    doc = r.json()[0]["Attributes"]
    names = [b["name"] for b in doc["data"]]
    assert names == sorted(["INBOX", "Sent", "Drafts", "Junk", "Trash", "Archive"])
    sent = next(b for b in doc["data"] if b["name"] == "Sent")
    assert sent["messages"] >= 1 and sent["unseen"] == 0 and sent["latest_message"]["uid"] >= 1
    assert sent["mail_account_id"] == world.account_ref and sent["uidnext"] > sent["latest_message"]["uid"]
    assert doc["pagination"]["total"] == 6
    r = status(world, world.stranger)
    assert r.status_code == 200 and r.json()[0]["Attributes"]["data"] == []
    r = status(world, world.stranger, mail_account_id=world.account_ref)
    assert r.status_code == 200 and r.json()[0]["Attributes"]["data"] == []
    r = status(world, world.admin, page_size=2, page_number=2)
    page = r.json()[0]["Attributes"]
    assert len(page["data"]) == 2 and page["pagination"]["from"] == 3 and page["pagination"]["total"] >= 6
    for bad in ({"page_size": 0}, {"page_size": 501}, {"page_number": "x"}, {"mail_box_id": "../etc"}):
        r = status(world, world.owner, **bad)
        assert r.status_code == 400, (bad, r.text)
    with world.c() as c:
        assert c.post("/action/mail_box/status", json={"attributes": {}}).status_code in (401, 403)


# -- mail.send as the performer of a user-defined action -----------------------------------------------

NOTIFY_SCHEMA = f"""
Actions:
  - Name: notify_by_mail
    Label: Notify by mail
    OnType: world
    InstanceOptional: true
    InFields:
      - ColumnName: who
        ColumnType: email
    OutFields:
      - Type: mail.send
        Method: EXECUTE
        Attributes:
          from: bob@{DOMAIN}
          to: "~who"
          subject: Notice
          body: "Hello $who"
"""


def test_mail_send_as_an_outcome_of_a_schema_action(world: World) -> None:
    from support import schema_upload

    with world.c(world.admin) as c:
        r = schema_upload(c, NOTIFY_SCHEMA)
        assert r.status_code == 200, r.text
    got = len(world.sink.recipients())
    with world.c(world.owner) as c:  # bob@ belongs to the owner
        r = c.post("/action/world/notify_by_mail", json={"attributes": {"who": f"zoe@{DOMAIN}"}})
        assert r.status_code == 200, r.text
    world.sink.wait(got + 1)
    assert world.sink.messages[-1].rcpt_tos == [f"zoe@{DOMAIN}"] and b"Hello zoe@" in world.sink.messages[-1].data
    with world.c(world.stranger) as c:  # the outcome runs as the caller: not the account's owner
        r = c.post("/action/world/notify_by_mail", json={"attributes": {"who": f"zoe@{DOMAIN}"}})
        assert r.status_code == 403, r.text
