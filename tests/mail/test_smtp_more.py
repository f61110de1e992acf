"""SMTP follow-ups: sessions end when the credentials they used change (a mail account's password, the
owner's password), account/domain changes reach RCPT at once (the cached directory is invalidated by change
events), many concurrent sessions' deliveries share commits (group commit) without losing or mixing any,
and a failing write in a shared batch fails only itself (data layer, every database)."""

from __future__ import annotations

import asyncio
import json
import smtplib
import threading
import time
from collections.abc import Iterator

import dkim
import pytest
import sqlalchemy as sa

from mailsupport import (
    MailWorld,
    add_account,
    add_server,
    insecure_tls,
    mail_world,
    start_dns,
    user_ref,
    wait_listener,
)
from portside.core.db import Database, UnitOfWork
from portside.mail import message
from portside.mail.commit import GroupCommit, Write
from support import fresh_database, me, start_server, sync_url

ALICE_PW = "alice-mail-pw"
BOB_PW = "bob-mail-pw"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest) -> Iterator[tuple[MailWorld, str]]:
    dns = start_dns()
    dns.zone.add("ext.org", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    url, drop = fresh_database(request.param)
    server = start_server(url)
    w = mail_world(server, ("mail.dns_resolver", dns.setting), ("mail.smtp_timeout", "5"))
    with server.client(w.admin) as c:
        w.refs["example.com"] = add_server(c, "example.com", authentication_required=False, always_on_tls=False)
        w.refs["submit.example.com"] = add_server(
            c, "submit.example.com", authentication_required=True, always_on_tls=False, domains="mail.example.com"
        )
        w.refs["alice"] = add_account(
            c, w.refs["example.com"], "alice@example.com", ALICE_PW, user_ref(server, w.alice)
        )
        w.refs["bob"] = add_account(c, w.refs["example.com"], "bob@example.com", BOB_PW, user_ref(server, w.bob))
        # a local domain without a certificate row: its mail cannot be signed
        add_account(c, w.refs["submit.example.com"], "al@mail.example.com", ALICE_PW, user_ref(server, w.alice))
    for host in ("example.com", "submit.example.com"):
        w.ports[host] = wait_listener(server, f"smtp-{host}")
    yield w, url
    server.stop()
    dns.stop()
    drop()


def submission(w: MailWorld, user: str, password: str) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", w.ports["submit.example.com"], timeout=10)
    s.ehlo("laptop")
    s.starttls(context=insecure_tls())
    s.ehlo("laptop")
    s.login(user, password)
    return s


def ends_within(s: smtplib.SMTP, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            s.noop()
        except (smtplib.SMTPServerDisconnected, OSError):
            return True
        time.sleep(0.2)
    return False


def still_open(s: smtplib.SMTP) -> bool:
    try:
        return s.noop()[0] == 250
    except (smtplib.SMTPServerDisconnected, OSError):
        return False


def set_mail_password(w: MailWorld, ref: str, password: str) -> None:
    with w.server.client(w.admin) as c:
        body = {"data": {"type": "mail_account", "id": ref, "attributes": {"password": password}}}
        r = c.patch(f"/api/mail_account/{ref}", json=body)
        assert r.status_code == 200, r.text


def test_mail_password_change_ends_the_sessions_that_used_the_old_one(world: tuple[MailWorld, str]) -> None:
    w, _ = world
    with w.server.client(w.alice) as c:
        r = c.post("/action/user_account/create_app_password", json={"attributes": {"name": "phone"}})
        assert r.status_code == 200, r.text
        app = next(x["Attributes"] for x in r.json() if x["ResponseType"] == "action.response")
    old = submission(w, "alice@example.com", ALICE_PW)
    by_app = submission(w, "alice@example.com", app["secret"])
    other = submission(w, "bob@example.com", BOB_PW)
    time.sleep(0.3)
    assert still_open(old)
    set_mail_password(w, w.refs["alice"], "alice-new-pw-2")
    assert ends_within(old, 10), "a session authenticated with the old mail password stays open"
    assert still_open(by_app), "an application password session ended on a mail password change"
    assert still_open(other), "another account's session ended"
    with pytest.raises(smtplib.SMTPAuthenticationError):
        submission(w, "alice@example.com", ALICE_PW)
    fresh = submission(w, "alice@example.com", "alice-new-pw-2")
    assert fresh.mail("alice@example.com")[0] == 250
    # setting the same value again keeps the hash? a new hash (new salt) must still end the session, as the
    # credential it used was re-issued; the session of the new password sees its password replaced too
    set_mail_password(w, w.refs["alice"], "alice-newer-pw-3")
    assert ends_within(fresh, 10)
    for s in (by_app, other):
        s.close()
    set_mail_password(w, w.refs["alice"], ALICE_PW)


def test_owner_password_change_ends_smtp_sessions(world: tuple[MailWorld, str]) -> None:
    w, _ = world
    bob = submission(w, "bob@example.com", BOB_PW)
    alice = submission(w, "alice@example.com", ALICE_PW)
    with w.server.client(w.bob) as c:
        ref = me(c)["id"]
        attrs = {"password": "bob-changed-secret-9"}
        r = c.patch(f"/api/user_account/{ref}", json={"data": {"type": "user_account", "id": ref, "attributes": attrs}})
        assert r.status_code == 200, r.text
    assert ends_within(bob, 10), "the owner's password changed but the SMTP session stays"
    assert still_open(alice)
    alice.close()


def test_account_and_domain_changes_reach_rcpt_at_once(world: tuple[MailWorld, str]) -> None:
    w, _ = world

    def rcpt(address: str) -> int:
        with smtplib.SMTP("127.0.0.1", w.ports["example.com"], timeout=10) as s:
            s.ehlo("client.ext.org")
            assert s.mail("x@ext.org")[0] == 250
            return s.rcpt(address)[0]

    assert rcpt("carol@example.com") == 550  # asked once: the answer "no account" is now cached
    assert rcpt("carol@lookalike.example") == 454
    with w.server.client(w.admin) as c:
        carol = add_account(c, w.refs["example.com"], "carol@example.com", "carol-pw-1", user_ref(w.server, w.alice))
        assert rcpt("carol@example.com") == 250  # right after the 201: the cache was dropped before it
        ref = w.refs["example.com"]
        body = {"data": {"type": "mail_server", "id": ref, "attributes": {"domains": "lookalike.example"}}}
        assert c.patch(f"/api/mail_server/{ref}", json=body).status_code == 200
        assert rcpt("carol@lookalike.example") == 550  # now a local domain without that account
        assert c.delete(f"/api/mail_account/{carol}").status_code in (200, 204)
        assert rcpt("carol@example.com") == 550
        body["data"]["attributes"]["domains"] = ""
        assert c.patch(f"/api/mail_server/{ref}", json=body).status_code == 200
    assert rcpt("carol@lookalike.example") == 454


def test_concurrent_sessions_all_stored_with_distinct_uids(world: tuple[MailWorld, str]) -> None:
    w, url = world
    sessions, each = 12, 8
    replies: list[int] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        with smtplib.SMTP("127.0.0.1", w.ports["example.com"], timeout=30) as s:
            s.ehlo("client.ext.org")
            for i in range(each):
                raw = f"From: x@ext.org\r\nTo: bob@example.com\r\nSubject: burst {n}-{i}\r\n\r\nbody {n}-{i}\r\n"
                code = s.sendmail("x@ext.org", ["bob@example.com"], raw.encode()) == {}
                with lock:
                    replies.append(250 if code else 0)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert replies == [250] * (sessions * each)
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT m.uid, m.subject FROM mail m JOIN mail_box b ON b.id = m.mail_box_id "
                    "JOIN mail_account a ON a.id = b.mail_account_id "
                    "WHERE a.username = 'bob@example.com' AND b.name = 'INBOX' AND m.subject LIKE 'burst %'"
                )
            ).all()
    finally:
        engine.dispose()
    subjects = sorted(r[1] for r in rows)
    assert subjects == sorted(f"burst {n}-{i}" for n in range(sessions) for i in range(each))
    uids = [r[0] for r in rows]
    assert len(set(uids)) == len(uids)


def test_group_commit_isolates_a_failing_write(db_url: str) -> None:
    async def main() -> tuple[list[str], list[int], int]:
        db = Database(db_url)
        meta = sa.MetaData()
        probe = sa.Table("gc_probe", meta, sa.Column("n", sa.Integer, primary_key=True, autoincrement=False))
        async with db.transaction() as uow:
            await uow.conn.run_sync(meta.create_all)
        writer = GroupCommit(db)

        def job(n: int) -> Write:
            async def write(uow: UnitOfWork) -> None:
                await uow.conn.execute(probe.insert().values(n=n))
                if n == 3:
                    await uow.conn.execute(probe.insert().values(n=1))  # duplicate key: this write fails

            return write

        async def one(n: int) -> str:
            try:
                await writer.write(job(n))
            except Exception:
                return f"{n}:failed"
            return f"{n}:ok"

        outcomes = await asyncio.gather(*(one(n) for n in range(1, 7)))
        async with db.read() as conn:
            stored = sorted(int(r[0]) for r in await conn.execute(sa.select(probe.c.n)))
        await writer.close()
        await db.dispose()
        return list(outcomes), stored, writer.largest_batch

    outcomes, stored, largest = asyncio.run(main())
    assert largest == 6  # all six were queued before the writer ran: one shared transaction was tried
    assert outcomes == ["1:ok", "2:ok", "3:failed", "4:ok", "5:ok", "6:ok"]
    assert stored == [1, 2, 4, 5, 6]  # nothing of the failed write, everything of the others


def outbox_rows(w: MailWorld, sender: str) -> list[dict[str, object]]:
    with w.server.client(w.admin) as c:
        r = c.get("/api/outbox", params={"page[size]": 200})
        assert r.status_code == 200, r.text
        return [d["attributes"] for d in r.json()["data"] if d["attributes"]["from_address"] == sender]


def test_relayed_submission_is_dkim_signed_like_mail_send(world: tuple[MailWorld, str]) -> None:
    w, url = world
    raw = b"From: alice@example.com\r\nTo: dave@far.example\r\nSubject: signed relay\r\n\r\nHallo\r\n"
    with submission(w, "alice@example.com", ALICE_PW) as s:
        assert s.sendmail("alice@example.com", ["dave@far.example"], raw) == {}
    with w.server.client(w.admin) as c:
        q = json.dumps([{"column": "hostname", "operator": "is", "value": "example.com"}])
        cert = c.get("/api/certificate", params={"query": q}).json()["data"][0]["id"]
        r = c.post("/action/certificate/dkim_dns_record", json={"attributes": {"certificate_id": cert}})
        assert r.status_code == 200, r.text
        record = r.json()[0]["Attributes"]
    assert record["name"] == "d1._domainkey.example.com"

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        return record["value"].encode() if name.decode().rstrip(".") == record["name"] else b""

    engine = sa.create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            stored = conn.execute(
                sa.text("SELECT mail FROM outbox WHERE to_address = 'dave@far.example' ORDER BY id DESC")
            ).first()
    finally:
        engine.dispose()
    assert stored is not None
    sent = message.decode(stored[0])
    signed = sent[sent.index(b"DKIM-Signature:") :]  # below our Received line
    head = signed.split(b"\r\n\r\n", 1)[0].replace(b"\r\n\t", b" ").replace(b"\r\n ", b" ")
    for tag in (b"a=rsa-sha256", b"c=relaxed/relaxed", b"d=example.com", b"s=d1"):
        assert tag in head.replace(b" ", b"") or tag in head
    assert dkim.verify(signed, dnsfunc=lookup), "dkimpy does not verify the relayed message"
    assert not dkim.verify(signed.replace(b"Hallo", b"Hullo"), dnsfunc=lookup)


def test_relay_from_a_domain_without_a_key_is_refused(world: tuple[MailWorld, str]) -> None:  # spec §I.18
    w, _ = world
    raw = b"From: al@mail.example.com\r\nTo: dave@far.example\r\nSubject: no key relay\r\n\r\nhi\r\n"
    with submission(w, "al@mail.example.com", ALICE_PW) as s:
        assert s.mail("al@mail.example.com")[0] == 250
        assert s.rcpt("dave@far.example")[0] == 250
        code, text = s.data(raw)
    assert (code, text) == (554, b"5.5.0 Error: private key not found for signing outgoing email")
    assert outbox_rows(w, "al@mail.example.com") == []
