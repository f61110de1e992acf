"""SMTP receiving over real sockets (smtplib, swaks): listeners from mail_server rows, the dialogue, RCPT
rules, AUTH over TLS only, SPF/DKIM/DMARC against a local test DNS, junk, relay to the outbox with a Sent
copy, limits. Spec communication.md §I tests 1-21 in their [R] form where one is given.

Servers in the fixture: `example.com` (MX: no AUTH needed, STARTTLS offered; also receives for
`mail.example.com`), `submit.example.com` (submission: STARTTLS, then AUTH, then MAIL) and
`tls.example.com` (implicit TLS, AUTH required)."""

from __future__ import annotations

import base64
import json
import re
import smtplib
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import dkim
import httpx
import pytest
import sqlalchemy as sa

from mailsupport import (
    LocalDNS,
    MailWorld,
    add_account,
    add_server,
    dns_fixture,  # noqa: F401 (the module fixture `dns`)
    insecure_tls,
    key_fixture,  # noqa: F401 (the module fixture `key`)
    mail_world,
    mails,
    user_ref,
    wait_listener,
)
from portside.mail import message
from support import Server, fresh_database, start_server, sync_url

ALICE_PW = "alice-mail-pw"
BOB_PW = "bob-mail-pw"
HEX32 = re.compile(r"^2\.0\.0 OK: queued as [0-9a-f]{32}$")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, dns: LocalDNS, key: tuple[bytes, str]) -> Iterator[MailWorld]:
    url, drop = fresh_database(request.param)
    server = start_server(url)
    w = mail_world(server, ("mail.dns_resolver", dns.setting), ("mail.smtp_timeout", "3"))
    z = dns.zone
    z.add("ext.org", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    z.add("fail.org", "TXT", "v=spf1 ip4:192.0.2.1 -all")
    z.add("_dmarc.fail.org", "TXT", "v=DMARC1; p=reject")
    z.add("soft.org", "TXT", "v=spf1 ~all")
    z.add("signed.org", "A", "192.0.2.7")  # no SPF record: SPF none
    z.add("sel1._domainkey.signed.org", "TXT", key[1])
    z.add("_dmarc.signed.org", "TXT", "v=DMARC1; p=reject; adkim=r")
    with server.client(w.admin) as c:
        for host, attrs in {
            "example.com": {"authentication_required": False, "always_on_tls": False, "domains": "mail.example.com"},
            "submit.example.com": {"authentication_required": True, "always_on_tls": False, "max_size": 20000},
            "tls.example.com": {"authentication_required": True, "always_on_tls": True},
        }.items():
            w.refs[host] = add_server(c, host, **attrs)
        add_account(c, w.refs["example.com"], "alice@example.com", ALICE_PW, user_ref(server, w.alice))
        add_account(c, w.refs["example.com"], "bob@example.com", BOB_PW, user_ref(server, w.bob))
    for host in w.refs:
        w.ports[host] = wait_listener(server, f"smtp-{host}")
    yield w
    server.stop()
    drop()


def mx(w: MailWorld, host: str = "example.com") -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", w.ports[host], timeout=10)
    s.ehlo("client.ext.org")
    return s


def text_message(sender: str, to: str, subject: str, body: str = "hello\r\n", **headers: str) -> bytes:
    lines = [f"From: {sender}", f"To: {to}", f"Subject: {subject}", f"Message-ID: <{subject}@{sender.split('@')[1]}>"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def stored_raw(w: MailWorld, subject: str) -> bytes:
    """The raw message of the row with this subject, as stored (decoded from the database)."""
    engine = sa.create_engine(sync_url(w.server.database_url))
    try:
        with engine.connect() as c:
            value = c.execute(sa.text("SELECT mail FROM mail WHERE subject = :s"), {"s": subject}).scalar_one()
    finally:
        engine.dispose()
    return message.decode(value)


def box_name(w: MailWorld, token: str, ref: str) -> str:
    with w.server.client(token) as c:
        r = c.get(f"/api/mail_box/{ref}")
        assert r.status_code == 200, r.text
        name: str = r.json()["data"]["attributes"]["name"]
        return name


# -- dialogue ------------------------------------------------------------------------------------------


def test_greeting_ehlo_starttls_and_noop(world: MailWorld) -> None:
    with smtplib.SMTP("127.0.0.1", world.ports["example.com"], timeout=10) as s:
        code, _ = s.ehlo("client.ext.org")
        assert code == 250
        feats = s.esmtp_features
        assert {"size", "pipelining", "starttls", "enhancedstatuscodes", "8bitmime"} <= set(feats)
        assert "auth" not in feats  # AUTH only over TLS
        assert s.ehlo_resp is not None and s.ehlo_resp.startswith(b"example.com Hello")
        assert s.ehlo_resp.endswith(b"HELP")
        assert int(feats["size"]) == 25 * 1024 * 1024
        assert (
            s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice@example.com\0" + ALICE_PW.encode()).decode())[0]
            == 538
        )
        assert s.noop()[0] == 250
        s.starttls(context=insecure_tls())
        s.ehlo("client.ext.org")
        assert "starttls" not in s.esmtp_features
        assert set(s.esmtp_features["auth"].split()) == {"LOGIN", "PLAIN"}
    with socket.create_connection(("127.0.0.1", world.ports["example.com"]), timeout=10) as raw:
        assert raw.recv(200).startswith(b"220 example.com ESMTP")


def test_rcpt_rules_unknown_user_relay_and_syntax(world: MailWorld) -> None:
    with mx(world) as s:
        assert s.mail("someone@ext.org") == (250, b"2.1.0 OK")
        assert s.rcpt("alice@example.com") == (250, b"2.1.5 OK")
        assert s.rcpt("ALICE@Example.COM")[0] == 250  # addresses compare case-insensitively
        code, text = s.rcpt("nobody@example.com")
        assert code == 550 and text.startswith(b"5.1.1")
        code, text = s.rcpt("nobody@mail.example.com")  # a local domain through `domains`
        assert code == 550 and text.startswith(b"5.1.1")
        assert s.rcpt("bob@gmail.com") == (454, b"4.1.1 Error: Relay access denied: gmail.com")
        assert s.rcpt("bad address")[0] in (501, 553)
        assert s.rcpt("alice@example.com\x00x")[0] in (501, 553, 500)
        s.rset()
        assert s.rcpt("alice@example.com") == (503, b"5.5.1 Error: No sender")
        s.mail("someone@ext.org")
        assert s.docmd("DATA") == (503, b"5.5.1 Error: No recipients")
        assert s.docmd("MAIL FROM:<x@ext.org>")[0] == 503  # nested MAIL
        code, _ = s.docmd("BOGUS")
        assert code == 500


def test_too_many_recipients(world: MailWorld) -> None:
    with mx(world) as s:
        s.mail("someone@ext.org")
        for _ in range(100):
            assert s.rcpt("alice@example.com")[0] == 250
        assert s.rcpt("alice@example.com") == (452, b"4.5.3 Too many recipients")


# -- delivery ------------------------------------------------------------------------------------------


def test_delivery_to_inbox_with_uids_flags_and_authentication_results(world: MailWorld) -> None:
    before = mails(world.server, world.alice)
    with mx(world) as s:
        s.mail("carol@ext.org")
        s.rcpt("alice@example.com")
        code, text = s.data(text_message("carol@ext.org", "alice@example.com", "spf-pass-1"))
        assert code == 250 and HEX32.match(text.decode()), text
        s.mail("carol@ext.org")
        s.rcpt("alice@example.com")
        assert s.data(text_message("carol@ext.org", "alice@example.com", "spf-pass-2"))[0] == 250
    rows = mails(world.server, world.alice)[len(before) :]
    assert [r["subject"] for r in rows] == ["spf-pass-1", "spf-pass-2"]
    first, second = rows
    assert second["uid"] == first["uid"] + 1
    assert box_name(world, world.alice, first["mail_box_id"]) == "INBOX"
    assert first["seen"] is False and first["recent"] is True and first["flags"] == "\\Recent"
    assert first["spam"] is False and first["junk"] is False and first["spam_score"] == 0
    assert first["from_address"] == "carol@ext.org" and first["recipient"] == "alice@example.com"
    verdict = json.loads(first["spam_verdict"])
    assert verdict["spf"]["result"] == "pass" and verdict["dkim"] == [] and verdict["dmarc"]["result"] == "none"
    raw = stored_raw(world, "spf-pass-1")
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"Received: from client.ext.org (127.0.0.1)")
    assert b"Authentication-Results: example.com;" in head and b"spf=pass smtp.mailfrom=carol@ext.org" in head
    assert b"dkim=none" in head and b"dmarc=none" in head
    assert raw.endswith(text_message("carol@ext.org", "alice@example.com", "spf-pass-1"))  # the rest byte-exact
    assert mails(world.server, world.bob, subject="spf-pass-1") == []  # bob does not see alice's mail


def test_spf_fail_with_dmarc_reject_goes_to_junk(world: MailWorld) -> None:
    with mx(world) as s:
        s.mail("mallory@fail.org")
        s.rcpt("alice@example.com")
        assert s.data(text_message("mallory@fail.org", "alice@example.com", "spf-fail"))[0] == 250
        s.mail("x@soft.org")
        s.rcpt("alice@example.com")
        assert s.data(text_message("x@soft.org", "alice@example.com", "spf-softfail"))[0] == 250
        s.mail("x@nospf.example.net")
        s.rcpt("alice@example.com")
        assert s.data(text_message("x@nospf.example.net", "alice@example.com", "spf-none"))[0] == 250
    [junk] = mails(world.server, world.alice, subject="spf-fail")
    assert box_name(world, world.alice, junk["mail_box_id"]) == "Junk"
    assert junk["junk"] is True and junk["spam"] is True and "$Junk" in junk["keywords"].split()
    verdict = json.loads(junk["spam_verdict"])
    assert verdict["spf"]["result"] == "fail" and verdict["dmarc"] == {
        "result": "fail",
        "policy": "reject",
        "from_domain": "fail.org",
    }
    assert verdict["score"] == 8.0 and {r["check"] for r in verdict["reasons"]} == {"spf", "dmarc"}
    assert b"spf=fail" in stored_raw(world, "spf-fail") and b"dmarc=fail (p=reject)" in stored_raw(world, "spf-fail")
    [soft] = mails(world.server, world.alice, subject="spf-softfail")
    assert json.loads(soft["spam_verdict"])["spf"]["result"] == "softfail" and soft["spam_score"] == 1.0
    assert box_name(world, world.alice, soft["mail_box_id"]) == "INBOX"
    [none] = mails(world.server, world.alice, subject="spf-none")
    assert json.loads(none["spam_verdict"])["spf"]["result"] == "none" and none["spam_score"] == 0


def test_dkim_pass_fail_and_dmarc_alignment(world: MailWorld, key: tuple[bytes, str]) -> None:
    plain = text_message("news@signed.org", "alice@example.com", "dkim-good", body="signed body\r\n")
    sig = dkim.sign(plain, b"sel1", b"signed.org", key[0], include_headers=[b"from", b"to", b"subject"])
    good = sig + plain
    tampered = sig + plain.replace(b"dkim-good", b"dkim-bad").replace(b"signed body", b"forged body")
    with mx(world) as s:
        for raw in (good, tampered):
            s.mail("news@signed.org")
            s.rcpt("alice@example.com")
            assert s.data(raw)[0] == 250
    [ok] = mails(world.server, world.alice, subject="dkim-good")
    verdict = json.loads(ok["spam_verdict"])
    assert verdict["dkim"] == [{"result": "pass", "domain": "signed.org", "selector": "sel1"}]
    assert verdict["dmarc"]["result"] == "pass" and ok["junk"] is False
    assert b"dkim=pass header.d=signed.org header.s=sel1" in stored_raw(world, "dkim-good")
    assert stored_raw(world, "dkim-good").endswith(good)
    [bad] = mails(world.server, world.alice, subject="dkim-bad")
    verdict = json.loads(bad["spam_verdict"])
    assert verdict["dkim"][0]["result"] == "fail" and verdict["dmarc"]["result"] == "fail"
    assert bad["junk"] is True and box_name(world, world.alice, bad["mail_box_id"]) == "Junk"


def test_forged_authentication_results_of_ours_are_dropped(world: MailWorld) -> None:
    forged = b"Authentication-Results: example.com; dkim=pass header.d=bank.com\r\n" + text_message(
        "carol@ext.org", "alice@example.com", "forged-ar"
    )
    with mx(world) as s:
        s.sendmail("carol@ext.org", ["alice@example.com"], forged)
    raw = stored_raw(world, "forged-ar")
    assert b"bank.com" not in raw and raw.count(b"Authentication-Results: example.com;") == 1


def test_one_message_for_two_accounts_and_null_sender(world: MailWorld) -> None:
    with mx(world) as s:
        assert (
            s.sendmail(
                "carol@ext.org",
                ["alice@example.com", "bob@example.com"],
                text_message("carol@ext.org", "alice@example.com, bob@example.com", "to-both"),
            )
            == {}
        )
        s.mail("<>")
        s.rcpt("alice@example.com")
        assert s.data(text_message("MAILER-DAEMON@ext.org", "alice@example.com", "bounce"))[0] == 250
    assert len(mails(world.server, world.alice, subject="to-both")) == 1
    assert len(mails(world.server, world.bob, subject="to-both")) == 1
    assert len(mails(world.server, world.alice, subject="bounce")) == 1


def test_oversized_message_is_refused_and_closes(world: MailWorld) -> None:
    s = smtplib.SMTP("127.0.0.1", world.ports["submit.example.com"], timeout=10)
    s.ehlo("c")
    s.starttls(context=insecure_tls())
    s.ehlo("c")
    s.login("alice@example.com", ALICE_PW)
    assert s.docmd("MAIL FROM:<alice@example.com> SIZE=999999")[0] == 552
    s.mail("alice@example.com")
    s.rcpt("bob@example.com")
    big = text_message("alice@example.com", "bob@example.com", "too-big", body="x" * 70 + "\r\n") * 400
    code, text = s.data(big)
    assert code == 552 and text.startswith(b"5.3.4"), (code, text)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.noop()
    assert mails(world.server, world.bob, subject="too-big") == []


# -- AUTH and submission ---------------------------------------------------------------------------------


def submission(w: MailWorld, login: bool = True, password: str = ALICE_PW) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", w.ports["submit.example.com"], timeout=10)
    s.ehlo("laptop")
    s.starttls(context=insecure_tls())
    s.ehlo("laptop")
    if login:
        s.login("alice@example.com", password)
    return s


def test_submission_requires_starttls_then_auth(world: MailWorld) -> None:
    with smtplib.SMTP("127.0.0.1", world.ports["submit.example.com"], timeout=10) as s:
        s.ehlo("laptop")
        assert s.docmd("MAIL FROM:<alice@example.com>") == (530, b"5.7.0 Must issue a STARTTLS command first")
    with submission(world, login=False) as s:
        assert s.docmd("MAIL FROM:<alice@example.com>")[0] == 530
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            s.login("alice@example.com", "wrong")
        assert err.value.smtp_code == 535
    with submission(world) as s:
        assert s.docmd("MAIL FROM:<bob@example.com>")[0] == 553  # not alice's address
        assert s.docmd("MAIL FROM:<>")[0] == 553
        assert s.mail("alice@example.com")[0] == 250


def test_auth_login_dialogue_and_throttle(world: MailWorld) -> None:
    with submission(world, login=False) as s:
        assert s.docmd("AUTH", "LOGIN") == (334, base64.b64encode(b"Username:"))
        assert s.docmd(base64.b64encode(b"bob@example.com").decode()) == (334, base64.b64encode(b"Password:"))
        assert s.docmd(base64.b64encode(BOB_PW.encode()).decode())[0] == 235
    codes = []
    for _ in range(12):
        with submission(world, login=False) as s:
            try:
                s.login("bob@example.com", "guess")
            except smtplib.SMTPAuthenticationError as exc:
                codes.append(exc.smtp_code)
    assert codes[0] == 535 and codes[-1] == 454, codes  # then only "try later", whatever the password
    with submission(world, login=False) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            s.login("bob@example.com", BOB_PW)
        assert err.value.smtp_code == 454


def test_authenticated_relay_queues_outbox_rows_and_one_sent_copy(world: MailWorld) -> None:
    raw = text_message("alice@example.com", "dave@far.example, erin@other.example", "relay-1")
    with submission(world) as s:
        assert s.sendmail("alice@example.com", ["dave@far.example", "erin@other.example", "bob@example.com"], raw) == {}
    with world.server.client(world.admin) as c:
        rows = [d["attributes"] for d in c.get("/api/outbox", params={"page[size]": 100}).json()["data"]]
    mine = [r for r in rows if r["from_address"] == "alice@example.com"]
    assert sorted((r["to_address"], r["to_host"]) for r in mine) == [
        ("dave@far.example", "far.example"),
        ("erin@other.example", "other.example"),
    ]
    assert all(r["sent"] is False and r["retry_count"] == 0 for r in mine)
    [sent] = mails(world.server, world.alice, subject="relay-1")
    assert box_name(world, world.alice, sent["mail_box_id"]) == "Sent" and sent["seen"] is True
    [local] = mails(world.server, world.bob, subject="relay-1")
    assert json.loads(local["spam_verdict"] or "null") is None  # signed-in mail is not scored
    with world.server.client(world.alice) as c:
        assert c.get("/api/outbox").json()["data"] == []  # the queue is for administrators


def test_implicit_tls_listener(world: MailWorld) -> None:
    port = world.ports["tls.example.com"]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(b"EHLO plain\r\n")
        raw.settimeout(5)
        try:
            data = raw.recv(100)
        except (ConnectionResetError, TimeoutError):
            data = b""
        assert not data.startswith(b"220")
    with smtplib.SMTP_SSL("127.0.0.1", port, timeout=10, context=insecure_tls()) as s:
        s.ehlo("laptop")
        assert "starttls" not in s.esmtp_features and "LOGIN" in s.esmtp_features["auth"]
        s.login("alice@example.com", ALICE_PW)
        assert (
            s.sendmail("alice@example.com", ["bob@example.com"], text_message("alice@example.com", "b", "tls-1")) == {}
        )
    assert len(mails(world.server, world.bob, subject="tls-1")) == 1


def test_swaks_starttls_auth_plain_and_implicit_tls(world: MailWorld) -> None:
    base = ["swaks", "--server", "127.0.0.1", "--helo", "swaks.test", "--timeout", "10"]
    r = subprocess.run(
        [
            *base,
            "--port",
            str(world.ports["submit.example.com"]),
            "-tls",
            "-a",
            "PLAIN",
            "-au",
            "alice@example.com",
            "-ap",
            ALICE_PW,
            "-f",
            "alice@example.com",
            "-t",
            "bob@example.com",
            "--header",
            "Subject: swaks-1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(
        [
            *base,
            "--port",
            str(world.ports["tls.example.com"]),
            "--tls-on-connect",
            "-a",
            "LOGIN",
            "-au",
            "alice@example.com",
            "-ap",
            "nope",
            "-f",
            "alice@example.com",
            "-t",
            "bob@example.com",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 28, r.stdout + r.stderr  # AUTH failed
    r = subprocess.run(
        [*base, "--port", str(world.ports["example.com"]), "-f", "x@ext.org", "-t", "nobody@example.com"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 24 and "550 5.1.1" in r.stdout, r.stdout  # RCPT refused
    assert len(mails(world.server, world.bob, subject="swaks-1")) == 1


# -- limits --------------------------------------------------------------------------------------------


def test_idle_client_times_out(world: MailWorld) -> None:
    with socket.create_connection(("127.0.0.1", world.ports["example.com"]), timeout=10) as raw:
        assert raw.recv(200).startswith(b"220")
        start = time.monotonic()
        assert raw.recv(200) == b""  # closed by the server after mail.smtp_timeout (3 s)
        assert 2 < time.monotonic() - start < 8


def test_long_command_line_and_unknown_commands(world: MailWorld) -> None:
    with mx(world) as s:
        assert s.docmd("NOOP " + "x" * 2000)[0] == 500
        assert s.noop()[0] == 250  # the session survives
    with mx(world) as s:
        codes = [s.docmd(f"BOGUS{i}")[0] for i in range(5)]
        assert codes[:4] == [500] * 4 and codes[4] == 502
        with pytest.raises(smtplib.SMTPServerDisconnected):
            s.noop()


def test_api_surface_is_unchanged_for_owners(world: MailWorld) -> None:
    with world.server.client(world.alice) as c:
        assert c.get("/api/mail_server").status_code == 200
        r = c.post("/api/mail_server", json={"data": {"type": "mail_server", "attributes": {"hostname": "x.org"}}})
        assert r.status_code == 403


def ports_entry(server: Server, admin: str, name: str) -> dict[str, Any] | None:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin}"}) as c:
        for e in c.get("/_ports").json():
            if e["name"] == name:
                return dict(e)
    return None


def test_arc_chain_pass_and_fail(world: MailWorld, key: tuple[bytes, str]) -> None:
    base = text_message("list@signed.org", "alice@example.com", "arc-good", body="via a list\r\n")
    with_ar = b"Authentication-Results: relay.signed.org; spf=pass smtp.mailfrom=list@signed.org\r\n" + base
    arc = b"".join(dkim.arc_sign(with_ar, b"sel1", b"signed.org", key[0], b"relay.signed.org"))
    good = arc + with_ar
    bad = arc + with_ar.replace(b"arc-good", b"arc-bad").replace(b"via a list", b"changed")
    with mx(world) as s:
        for raw in (good, bad):
            s.mail("list@signed.org")
            s.rcpt("alice@example.com")
            assert s.data(raw)[0] == 250
    [ok] = mails(world.server, world.alice, subject="arc-good")
    assert json.loads(ok["spam_verdict"])["arc"] == "pass"
    assert b"arc=pass" in stored_raw(world, "arc-good")
    [bad_row] = mails(world.server, world.alice, subject="arc-bad")
    verdict = json.loads(bad_row["spam_verdict"])
    assert verdict["arc"] == "fail" and {"check": "arc", "result": "fail", "score": 1.0} in verdict["reasons"]


def test_uid_counter_and_an_account_without_mailboxes(world: MailWorld) -> None:
    with world.server.client(world.admin) as c:
        add_account(c, world.refs["example.com"], "old@example.com", "pw-old-1", user_ref(world.server, world.bob))
    engine = sa.create_engine(sync_url(world.server.database_url))
    try:  # an account from before the standard mailboxes (imported Daptin data): no boxes at all
        with engine.begin() as conn:
            account = conn.execute(sa.text("SELECT id FROM mail_account WHERE username = 'old@example.com'")).scalar()
            conn.execute(sa.text("DELETE FROM mail_box WHERE mail_account_id = :a"), {"a": account})
        with mx(world) as s:
            for n in (1, 2):
                assert s.sendmail("x@ext.org", ["old@example.com"], text_message("x@ext.org", "o", f"old-{n}")) == {}
        with engine.connect() as conn:
            names = {
                r[0]
                for r in conn.execute(sa.text("SELECT name FROM mail_box WHERE mail_account_id = :a"), {"a": account})
            }
            inbox = conn.execute(
                sa.text("SELECT id, nextuid FROM mail_box WHERE mail_account_id = :a AND name = 'INBOX'"),
                {"a": account},
            ).one()
            uids = [
                r[0]
                for r in conn.execute(
                    sa.text("SELECT uid FROM mail WHERE mail_box_id = :b ORDER BY uid"), {"b": inbox[0]}
                )
            ]
    finally:
        engine.dispose()
    assert names == {"INBOX", "Sent", "Drafts", "Junk", "Trash", "Archive"}
    assert uids == [1, 2] and inbox[1] == 3


def test_application_password_logs_in_and_revoking_it_ends_the_session(world: MailWorld) -> None:
    with world.server.client(world.alice) as c:
        r = c.post("/action/user_account/create_app_password", json={"attributes": {"name": "mail client"}})
        assert r.status_code == 200, r.text
        out = next(x["Attributes"] for x in r.json() if x["ResponseType"] == "action.response")
    with submission(world, login=False) as s, pytest.raises(smtplib.SMTPAuthenticationError):
        s.login("bob@example.com", out["secret"])  # alice's application password is not bob's
    s = submission(world, password=out["secret"])  # alice's account, her owner's application password
    assert s.mail("alice@example.com")[0] == 250
    with world.server.client(world.alice) as c:
        r = c.delete(f"/api/app_password/{out['reference_id']}")
        assert r.status_code in (200, 204), r.text
    deadline = time.monotonic() + 10
    closed = False
    while time.monotonic() < deadline and not closed:
        try:
            s.noop()
            time.sleep(0.2)
        except (smtplib.SMTPServerDisconnected, OSError):
            closed = True
    assert closed, "the session of a revoked application password stays open"
    with submission(world, login=False) as s2, pytest.raises(smtplib.SMTPAuthenticationError):
        s2.login("alice@example.com", out["secret"])
    with submission(world, login=False) as s3, pytest.raises(smtplib.SMTPAuthenticationError):
        s3.login("alice@example.com", "secret123")  # the user's sign-in password is not a mail password
