"""IMAP over real sockets with imaplib, against a Portside process serving the mail rows (spec §I 29-45 in
their [R] form): STARTTLS and implicit TLS listeners switched on by config keys, login, mailboxes with
SPECIAL-USE, FETCH/STORE/COPY/MOVE/EXPUNGE against the columns, SEARCH, and push during IDLE for changes
made by another process (a second "node" delivering through MailStore), another IMAP session and /api."""

from __future__ import annotations

import asyncio
import imaplib
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa

from imap_support import (
    ALICE,
    ALICE_PW,
    BOB,
    BOB_PW,
    CAROL,
    CAROL_PW,
    ImapWorld,
    connect,
    connect_tls,
    deliver,
    idle,
    idle_done,
    message,
    plain,
    raw_command,
    running_imap_world,
    tls_context,
    untagged_within,
)
from portside.imap.base import BURST, RATE
from support import REDIS, sync_url

PUSH_WITHIN = 1.0  # seconds: the bound for push to an IDLE session


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mysql"])
def world(request: pytest.FixtureRequest) -> Iterator[ImapWorld]:
    with running_imap_world(request.param, "--redis-url", REDIS) as w:
        yield w


def row(world: ImapWorld, username: str, box: str, uid: int) -> dict[str, Any] | None:
    engine = sa.create_engine(sync_url(world.db_url))
    try:
        with engine.connect() as c:
            r = c.execute(
                sa.text(
                    "SELECT m.reference_id, m.seen, m.recent, m.deleted, m.flagged, m.keywords, m.internal_date "
                    "FROM mail m JOIN mail_box b ON b.id = m.mail_box_id "
                    "JOIN mail_account a ON a.id = b.mail_account_id "
                    "WHERE a.username = :u AND b.name = :b AND m.uid = :uid"
                ),
                {"u": username, "b": box, "uid": uid},
            ).first()
    finally:
        engine.dispose()
    return dict(r._mapping) if r is not None else None


def put(world: ImapWorld, raw: bytes, box: str = "INBOX", user: str = ALICE) -> int:
    return asyncio.run(deliver(world.db_url, user, raw, box))


def flat(data: list[Any]) -> bytes:
    return b"".join(p if isinstance(p, bytes) else b"".join(p) for p in data if p is not None)


def status(m: imaplib.IMAP4, box: str) -> dict[str, int]:
    typ, data = m.status(box, "(MESSAGES UIDNEXT UNSEEN RECENT)")
    assert typ == "OK", data
    found = re.findall(rb"([A-Z]+) (\d+)", data[0] or b"")
    return {k.decode(): int(v) for k, v in found}


# -- 29-32: listeners, TLS, login -------------------------------------------------------------------------


def test_plaintext_port_offers_starttls_and_refuses_login(world: ImapWorld) -> None:
    m = plain(world)
    try:
        assert {"STARTTLS", "LOGINDISABLED"} <= set(m.capabilities)
        assert "AUTH=PLAIN" not in m.capabilities
        with pytest.raises(imaplib.IMAP4.error, match="Authentication disabled"):
            m.login(ALICE, ALICE_PW)
        assert m.noop()[0] == "OK"  # the session goes on
    finally:
        m.shutdown()


def test_starttls_then_login_and_capabilities(world: ImapWorld) -> None:
    m = plain(world)
    m.starttls(tls_context())
    caps = m.capability()[1][0].split()
    assert b"AUTH=PLAIN" in caps and b"LOGINDISABLED" not in caps and b"STARTTLS" not in caps
    typ, data = m.login(ALICE, ALICE_PW)
    assert typ == "OK" and b"LOGIN completed" in data[0]
    caps = m.capability()[1][0].split()
    for cap in (b"IDLE", b"UIDPLUS", b"MOVE", b"CONDSTORE", b"QRESYNC", b"SPECIAL-USE", b"NAMESPACE", b"ENABLE"):
        assert cap in caps
    m.logout()


def test_implicit_tls_listener_and_authenticate_plain(world: ImapWorld) -> None:
    m = imaplib.IMAP4_SSL("127.0.0.1", world.port("imaps"), ssl_context=tls_context(), timeout=20)
    try:
        assert "STARTTLS" not in m.capabilities and "AUTH=PLAIN" in m.capabilities
        typ, _ = m.authenticate("PLAIN", lambda _: f"\0{BOB}\0{BOB_PW}".encode())
        assert typ == "OK"
        assert m.select("INBOX")[0] == "OK"
    finally:
        m.logout()


def test_failed_logins_are_throttled(world: ImapWorld) -> None:
    refused = 0
    for _ in range(12):
        m = connect_tls_raw(world)
        try:
            m.login(CAROL, "wrong")
        except imaplib.IMAP4.error:
            refused += 1
        finally:
            m.shutdown()
    assert refused == 12
    m = connect_tls_raw(world)
    try:
        with pytest.raises(imaplib.IMAP4.error, match=r"UNAVAILABLE|AUTHENTICATIONFAILED"):
            m.login(CAROL, CAROL_PW)  # the right password, too soon after a burst of wrong ones
    finally:
        m.shutdown()


def connect_tls_raw(world: ImapWorld) -> imaplib.IMAP4_SSL:
    return imaplib.IMAP4_SSL("127.0.0.1", world.port("imaps"), ssl_context=tls_context(), timeout=20)


# -- 33-41: mailboxes and messages over the rows --------------------------------------------------------


def test_list_standard_mailboxes_with_special_use(world: ImapWorld) -> None:
    m = connect(world)
    typ, data = m.list()
    assert typ == "OK"
    got = {}
    for line in data:
        assert isinstance(line, bytes)
        attrs, _, name = re.match(rb'\(([^)]*)\) "(.)" (.+)', line).groups()  # type: ignore[union-attr]
        assert _ == b"/"
        got[name.decode()] = set(attrs.decode().split())
    assert set(got) >= {"INBOX", "Sent", "Drafts", "Junk", "Trash", "Archive"}
    assert "\\Sent" in got["Sent"] and "\\Trash" in got["Trash"] and "\\Junk" in got["Junk"]
    assert "\\Drafts" in got["Drafts"] and "\\Archive" in got["Archive"]
    typ, data = m.namespace()
    assert typ == "OK" and data[0] == b'(("" "/")) NIL NIL'
    m.logout()


def test_select_fetch_store_expunge_against_the_columns(world: ImapWorld) -> None:
    uid = put(world, message("first"))
    m = connect(world)
    typ, data = m.select("INBOX")
    assert typ == "OK"
    exists = int(data[0] or b"0")
    assert exists >= 1
    assert m.untagged_responses.get("RECENT") and m.untagged_responses.get("UIDVALIDITY")
    typ, data = m.uid("FETCH", str(uid), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK" and b"Subject: first" in data[0][1]  # type: ignore[index]
    assert row(world, ALICE, "INBOX", uid)["seen"] in (False, 0)  # type: ignore[index]
    typ, data = m.uid("FETCH", str(uid), "(BODY[])")
    assert typ == "OK" and b"\\Seen" in flat(data) and data[0][1].endswith(b"body text\r\n")  # type: ignore[index]
    assert row(world, ALICE, "INBOX", uid)["seen"] in (True, 1)  # type: ignore[index]
    typ, data = m.uid("FETCH", str(uid), "(UID FLAGS)")
    assert f"UID {uid} ".encode() in data[0]  # type: ignore[operator]
    typ, data = m.uid("STORE", str(uid), "+FLAGS", "(\\Flagged $Work)")
    assert typ == "OK" and b"\\Flagged" in data[0] and b"$Work" in data[0]  # type: ignore[operator]
    r = row(world, ALICE, "INBOX", uid)
    assert r is not None and r["flagged"] in (True, 1) and "$Work" in r["keywords"]
    # \\Deleted marks, it does not hide: still fetchable and searchable until EXPUNGE
    m.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
    typ, data = m.uid("SEARCH", None, "DELETED")
    assert str(uid).encode() in data[0].split()  # type: ignore[union-attr]
    typ, data = m.uid("STORE", str(uid), "-FLAGS", "(\\Deleted)")  # and can be taken back
    assert b"\\Deleted" not in data[0]  # type: ignore[operator]
    m.uid("STORE", str(uid), "+FLAGS", "(\\Deleted)")
    typ, data = m.expunge()
    assert typ == "OK" and data[0] is not None
    assert row(world, ALICE, "INBOX", uid) is None
    later = put(world, message("second"))
    assert later > uid  # UIDs are never reused
    m.logout()


def test_copy_move_and_append(world: ImapWorld) -> None:
    uid = put(world, message("to copy"))
    m = connect(world)
    m.select("INBOX")
    lines = raw_command(m, f"UID COPY {uid} Archive".encode())
    assert lines[-1].startswith(b"R1 OK [COPYUID "), lines
    new_uid = int(lines[-1].split()[5].rstrip(b"]"))
    r = row(world, ALICE, "Archive", new_uid)
    assert r is not None and r["recent"] in (True, 1)
    lines = raw_command(m, f"UID COPY {uid} Nope".encode())
    assert lines[-1].startswith(b"R1 NO [TRYCREATE]"), lines
    lines = raw_command(m, f"UID MOVE {uid} Trash".encode())
    assert lines[-1].startswith(b"R1 OK"), lines
    assert any(x.startswith(b"* OK [COPYUID ") for x in lines) and any(x.endswith(b" EXPUNGE\r\n") for x in lines)
    assert row(world, ALICE, "INBOX", uid) is None
    assert status(m, "Trash")["MESSAGES"] >= 1
    raw = message("sent copy")
    typ, data = m.append("Sent", "(\\Seen)", '"07-Feb-1994 21:52:25 -0800"', raw)
    assert typ == "OK" and data[0] is not None and b"APPENDUID" in data[0]
    sent_uid = int(data[0].split()[2].rstrip(b"]"))
    r = row(world, ALICE, "Sent", sent_uid)
    assert r is not None and r["seen"] in (True, 1)
    m.select("Sent")
    typ, data = m.uid("FETCH", str(sent_uid), "(BODY.PEEK[] INTERNALDATE)")
    assert data[0][1] == raw  # type: ignore[index]  # byte-exact
    stamp = imaplib.Internaldate2tuple(flat(data))
    assert stamp is not None and time.mktime(stamp) == 760686745  # the APPEND argument, 1994-02-08 05:52:25 UTC
    m.logout()


def test_concurrent_appends_from_many_sessions_get_distinct_uids(world: ImapWorld) -> None:
    sessions, each = 6, 5
    clients = [connect(world, BOB, BOB_PW) for _ in range(sessions)]
    clients[0].create("Busy")

    def run(m: imaplib.IMAP4, n: int) -> list[int]:
        out = []
        for i in range(each):
            typ, data = m.append("Busy", None, None, message(f"busy {n}.{i}"))
            assert typ == "OK" and data[0] is not None, data
            out.append(int(data[0].split()[2].rstrip(b"]")))  # [APPENDUID validity uid]
        return out

    with ThreadPoolExecutor(sessions) as pool:
        uids = [u for got in pool.map(run, clients, range(sessions)) for u in got]
    assert sorted(uids) == list(range(1, sessions * each + 1)), sorted(uids)  # unique and dense
    m = clients[0]
    m.select("Busy")
    typ, data = m.uid("SEARCH", None, "ALL")  # type: ignore[arg-type]
    assert typ == "OK" and sorted(int(u) for u in data[0].split()) == sorted(uids)  # type: ignore[union-attr]
    for c in clients:
        c.logout()


def test_create_delete_rename(world: ImapWorld) -> None:
    m = connect(world)
    assert m.create("Work/Reports")[0] == "OK"
    typ, data = m.create("Work/Reports")
    assert typ == "NO" and b"ALREADYEXISTS" in data[0]  # type: ignore[operator]
    typ, data = m.delete("INBOX")
    assert typ == "NO"
    typ, data = m.list('""', "Work/%")
    assert any(b"Work/Reports" in d for d in data if isinstance(d, bytes))
    assert m.rename("Work", "Job")[0] == "OK"
    typ, data = m.list('""', "Job*")
    names = b" ".join(d for d in data if isinstance(d, bytes))
    assert b"Job/Reports" in names and b"Work" not in names
    before = status(m, "INBOX")["MESSAGES"]
    assert before >= 1
    assert m.rename("INBOX", "Old")[0] == "OK"
    assert status(m, "Old")["MESSAGES"] == before and status(m, "INBOX")["MESSAGES"] == 0
    assert m.subscribe("Old")[0] == "OK"
    typ, data = m.lsub('""', "Old")
    assert any(b"Old" in d for d in data if isinstance(d, bytes))
    assert m.delete("Old")[0] == "OK"
    m.logout()


def test_isolation_between_accounts(world: ImapWorld) -> None:
    m = connect(world, BOB, BOB_PW)
    assert m.create("BobOnly")[0] == "OK"
    m.logout()
    a = connect(world)
    typ, data = a.select("BobOnly")
    assert typ == "NO" and b"NONEXISTENT" in data[0]  # type: ignore[operator]
    typ, data = a.list()
    assert not any(b"BobOnly" in d for d in data if isinstance(d, bytes))
    a.logout()


def test_search_keys_sequence_numbers_and_uids(world: ImapWorld) -> None:
    m = connect(world, BOB, BOB_PW)
    m.create("Search")
    for i in range(20):
        sender = "Xavier <x@ext.org>" if i % 5 == 0 else "Other <o@ext.org>"
        body = "needle in a haystack" if i == 7 else "plain"
        m.append("Search", "(\\Seen)" if i % 2 else None, None, message(f"msg {i}", sender, body))
    m.select("Search")
    typ, data = m.search(None, "ALL")
    assert data[0].split() == [str(i).encode() for i in range(1, 21)]  # type: ignore[union-attr]
    typ, data = m.search(None, "FROM", '"XAVIER"')
    assert data[0].split() == [b"1", b"6", b"11", b"16"]  # type: ignore[union-attr]
    typ, data = m.search(None, "NOT", "FROM", '"x@ext.org"', "SEEN")
    assert data[0].split() == [b"2", b"4", b"8", b"10", b"12", b"14", b"18", b"20"]  # type: ignore[union-attr]
    typ, data = m.search(None, "OR", "BODY", "needle", "SUBJECT", '"msg 19"')
    assert data[0].split() == [b"8", b"20"]  # type: ignore[union-attr]
    typ, data = m.search("UTF-8", "TEXT", "haystack", "2:10")
    assert data[0].split() == [b"8"]  # type: ignore[union-attr]
    typ, data = m.search(None, "HEADER", "Subject", '"msg 1"', "LARGER", "10", "SINCE", "1-Jan-2000")
    assert len(data[0].split()) == 11  # type: ignore[union-attr]  # msg 1, msg 10..19
    typ, data = m.uid("SEARCH", None, "UNSEEN")
    uids = data[0].split()  # type: ignore[union-attr]
    typ, fetched = m.fetch("1", "(UID)")
    first_uid = int(re.search(rb"UID (\d+)", fetched[0]).group(1))  # type: ignore[arg-type, union-attr]
    assert uids[0] == str(first_uid).encode() and len(uids) == 10
    typ, data = m.search(None, "KEYWORD", "$Nothing")
    assert typ == "OK" and data[0] == b""
    m.logout()


# -- 43: push ----------------------------------------------------------------------------------------------


def test_idle_pushes_delivery_flags_and_expunge_within_a_second(world: ImapWorld) -> None:
    watcher = connect(world, BOB, BOB_PW)
    watcher.select("INBOX")
    count = int(watcher.untagged_responses["EXISTS"][-1])
    other = connect(world, BOB, BOB_PW)
    other.select("INBOX")
    idle(watcher)
    try:
        uid = asyncio.run(deliver(world.db_url, BOB, message("pushed")))  # another process, as SMTP would
        line, took = untagged_within(watcher, lambda x: x.endswith(b" EXISTS\r\n"), 5)
        assert line == f"* {count + 1} EXISTS\r\n".encode() and took < PUSH_WITHIN, (line, took)
        other.noop()
        other.uid("STORE", str(uid), "+FLAGS", "(\\Answered)")  # another IMAP session
        line, took = untagged_within(watcher, lambda x: b"FETCH" in x and b"\\Answered" in x, 5)
        assert took < PUSH_WITHIN, took
        with world.server.client(world.admin) as c:  # the API
            ref = row(world, BOB, "INBOX", uid)["reference_id"]  # type: ignore[index]
            r = c.patch(f"/api/mail/{ref}", json={"data": {"type": "mail", "id": ref, "attributes": {"seen": True}}})
            assert r.status_code == 200, r.text  # an administrator's write through the generic record path
            line, took = untagged_within(watcher, lambda x: b"FETCH" in x and b"\\Seen" in x, 5)
            assert took < PUSH_WITHIN, took
        other.uid("STORE", str(uid), "+FLAGS", "(\\Deleted)")
        other.expunge()
        line, took = untagged_within(watcher, lambda x: x.endswith(b" EXPUNGE\r\n"), 5)
        assert line == f"* {count + 1} EXPUNGE\r\n".encode() and took < PUSH_WITHIN, (line, took)
    finally:
        idle_done(watcher)
        watcher.logout()
        other.logout()


def test_api_delete_is_seen_by_a_selected_session(world: ImapWorld) -> None:
    # the very next command sees it (read-your-writes across ports: RowsBackend.on_commit), every time
    uids = [put(world, message(f"api delete {i}"), user=BOB) for i in range(5)]
    m = connect(world, BOB, BOB_PW)
    m.select("INBOX")
    with world.server.client(world.admin) as c:
        for uid in uids:
            ref = row(world, BOB, "INBOX", uid)["reference_id"]  # type: ignore[index]
            r = c.delete(f"/api/mail/{ref}")
            assert r.status_code in (200, 204), r.text  # an administrator's delete through the generic record path
            lines = raw_command(m, b"NOOP")
            assert sum(x.endswith(b" EXPUNGE\r\n") for x in lines) == 1, (uid, lines)
    m.logout()


def _modseq(lines: list[bytes], key: bytes = b"HIGHESTMODSEQ") -> int:
    return int(next(re.search(key + rb" (\d+)", x).group(1) for x in lines if key in x))  # type: ignore[union-attr]


def test_api_writes_bump_modseq_for_condstore_and_qresync(world: ImapWorld) -> None:
    m = connect(world, BOB, BOB_PW)
    m.create("ApiSync")
    for i in range(3):
        m.append("ApiSync", None, None, message(f"api sync {i}"))
    lines = raw_command(m, b"SELECT ApiSync (CONDSTORE)")
    validity, high = _modseq(lines, b"UIDVALIDITY"), _modseq(lines)
    m.logout()
    refs = {uid: row(world, BOB, "ApiSync", uid)["reference_id"] for uid in (1, 2)}  # type: ignore[index]
    with world.server.client(world.admin) as c:
        body = {"data": {"type": "mail", "id": refs[1], "attributes": {"seen": True}}}
        assert c.patch(f"/api/mail/{refs[1]}", json=body).status_code == 200
    m = connect(world, BOB, BOB_PW)  # a client that was offline: only its HIGHESTMODSEQ to go by
    lines = raw_command(m, b"SELECT ApiSync (CONDSTORE)")
    after_patch = _modseq(lines)
    assert after_patch > high, lines
    lines = raw_command(m, f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {high})".encode())
    fetched = [x for x in lines if x.startswith(b"* ") and b" FETCH " in x]
    assert len(fetched) == 1 and b"UID 1" in fetched[0] and b"\\Seen" in fetched[0], lines
    assert re.search(rb"MODSEQ \((\d+)\)", fetched[0]).group(1) == str(after_patch).encode(), fetched  # type: ignore[union-attr]
    m.logout()
    with world.server.client(world.admin) as c:
        r = c.delete(f"/api/mail/{refs[2]}")
        assert r.status_code in (200, 204), r.text
    m = connect(world, BOB, BOB_PW)
    assert b"ENABLED" in b"".join(raw_command(m, b"ENABLE QRESYNC"))
    lines = raw_command(m, f"SELECT ApiSync (QRESYNC ({validity} {after_patch}))".encode())
    assert any(x.startswith(b"* VANISHED (EARLIER) 2\r\n") for x in lines), lines
    assert _modseq(lines) > after_patch and not any(x.startswith(b"* ") and b" FETCH " in x for x in lines), lines
    lines = raw_command(m, f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {high} VANISHED)".encode())
    assert any(x.startswith(b"* VANISHED (EARLIER) 2\r\n") for x in lines), lines
    m.logout()


def _box_ref(world: ImapWorld, username: str, box: str) -> str:
    engine = sa.create_engine(sync_url(world.db_url))
    try:
        with engine.connect() as c:
            return str(
                c.execute(
                    sa.text(
                        "SELECT b.reference_id FROM mail_box b JOIN mail_account a ON a.id = b.mail_account_id "
                        "WHERE a.username = :u AND b.name = :b"
                    ),
                    {"u": username, "b": box},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def admin_move(world: ImapWorld, ref: str, username: str, box: str) -> None:
    """PATCH a message's mailbox through /api as the administrator."""
    target = _box_ref(world, username, box)
    rel = {"mail_box_id": {"data": {"type": "mail_box", "id": target}}}
    with world.server.client(world.admin) as c:
        r = c.patch(f"/api/mail/{ref}", json={"data": {"type": "mail", "id": ref, "relationships": rel}})
        assert r.status_code == 200, r.text


def test_api_move_to_another_mailbox_gets_a_new_uid_and_expunges_from_the_old(world: ImapWorld) -> None:
    """PATCH of a message's mailbox through /api is a MOVE: a fresh UID in the target (the old UID may be
    taken there), an EXPUNGE (and VANISHED for QRESYNC) in the source."""
    uid = put(world, message("to be moved by the api"), user=BOB)
    m = connect(world, BOB, BOB_PW)
    m.create("MovedIn")
    for i in range(uid):  # the message's UID is taken in the target: it cannot keep it there
        m.append("MovedIn", None, None, message(f"already here {i}"))
    m.select("MovedIn")
    uidnext = int(m.untagged_responses["UIDNEXT"][-1])
    assert row(world, BOB, "MovedIn", uid) is not None and uidnext > uid
    watcher = connect(world, BOB, BOB_PW)
    watcher.select("INBOX")
    ref = row(world, BOB, "INBOX", uid)["reference_id"]  # type: ignore[index]
    admin_move(world, ref, BOB, "MovedIn")
    assert row(world, BOB, "INBOX", uid) is None
    moved = row(world, BOB, "MovedIn", uidnext)
    assert moved is not None and moved["reference_id"] == ref, moved
    lines = raw_command(watcher, b"NOOP")
    assert any(x.endswith(b" EXPUNGE\r\n") for x in lines), lines
    lines = raw_command(m, b"NOOP")
    assert any(x == f"* {uid + 1} EXISTS\r\n".encode() for x in lines), lines
    typ, data = m.uid("FETCH", str(uidnext), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK" and b"to be moved by the api" in flat(data), data
    watcher.logout()
    m.logout()


def test_api_move_into_another_users_mailbox_gives_the_message_to_that_user(world: ImapWorld) -> None:
    """An administrator moving a message into another account's mailbox hands it over: the target mailbox's
    owner may read it over /api and IMAP, its former owner no longer may."""
    uid = put(world, message("handed over by the api"), user=BOB)
    ref = row(world, BOB, "INBOX", uid)["reference_id"]  # type: ignore[index]
    with world.server.client(world.other) as c:
        assert c.get(f"/api/mail/{ref}").status_code == 200
    admin_move(world, ref, ALICE, "INBOX")
    assert row(world, BOB, "INBOX", uid) is None
    with world.server.client(world.owner) as c:
        r = c.get(f"/api/mail/{ref}")
        assert r.status_code == 200, r.text
    with world.server.client(world.other) as c:
        assert c.get(f"/api/mail/{ref}").status_code in (403, 404)
    m = connect(world, ALICE, ALICE_PW)
    m.select("INBOX")
    typ, data = m.uid("SEARCH", "HEADER", "Subject", '"handed over by the api"')
    assert typ == "OK" and data[0].split(), data
    m.logout()


def test_api_and_imap_flag_writes_on_one_message_at_once_all_succeed(world: ImapWorld) -> None:
    """An /api PATCH locks the mailbox before the message, as IMAP STORE does: no deadlock between them."""
    uid = put(world, message("contended"), user=BOB)
    ref = row(world, BOB, "INBOX", uid)["reference_id"]  # type: ignore[index]
    rounds = 12

    def api() -> list[int]:
        with world.server.client(world.admin) as c:
            body = lambda on: {"data": {"type": "mail", "id": ref, "attributes": {"seen": on}}}  # noqa: E731
            return [c.patch(f"/api/mail/{ref}", json=body(n % 2 == 0)).status_code for n in range(rounds)]

    def imap() -> list[str]:
        m = connect(world, BOB, BOB_PW)
        m.select("INBOX")
        out = [m.uid("STORE", str(uid), "+FLAGS" if n % 2 else "-FLAGS", "(\\Flagged)")[0] for n in range(rounds)]
        m.logout()
        return out

    with ThreadPoolExecutor(2) as pool:
        from_api, from_imap = pool.submit(api), pool.submit(imap)
        assert from_api.result() == [200] * rounds and from_imap.result() == ["OK"] * rounds


# -- robustness -----------------------------------------------------------------------------------------


def test_malformed_commands_get_bad_and_the_session_continues(world: ImapWorld) -> None:
    m = connect_tls(world)
    for bad in (b"FETCH", b"SELECT", b'LIST "unterminated', b"STORE 1 +FLAGS (\\Bogus)", b"XYZZY", b"SEARCH FOO"):
        lines = raw_command(m, bad)
        assert lines[-1].startswith(b"R1 BAD"), (bad, lines)
    lines = raw_command(m, b"SELECT " + b"A" * 70_000)  # over the line limit
    assert lines[-1].split()[1] == b"BAD", lines[-1][:80]
    lines = raw_command(m, b"APPEND INBOX {999999999}")  # over APPENDLIMIT: refused before any data
    assert b"TOOBIG" in lines[-1], lines
    lines = raw_command(m, b"SELECT ../../etc")
    assert lines[-1].startswith(b"R1 NO"), lines
    lines = raw_command(m, b"CREATE a/../b")
    assert lines[-1].startswith(b"R1 BAD"), lines
    assert m.noop()[0] == "OK"
    m.logout()


def test_condstore_and_qresync(world: ImapWorld) -> None:
    m = connect(world, BOB, BOB_PW)
    m.create("Sync")
    for i in range(3):
        m.append("Sync", None, None, message(f"sync {i}"))
    lines = raw_command(m, b"ENABLE QRESYNC")
    assert any(x.startswith(b"* ENABLED") and b"QRESYNC" in x for x in lines), lines
    lines = raw_command(m, b"SELECT Sync (CONDSTORE)")
    validity = int(next(re.search(rb"UIDVALIDITY (\d+)", x).group(1) for x in lines if b"UIDVALIDITY" in x))  # type: ignore[union-attr]
    high = int(next(re.search(rb"HIGHESTMODSEQ (\d+)", x).group(1) for x in lines if b"HIGHESTMODSEQ" in x))  # type: ignore[union-attr]
    lines = raw_command(m, b"UID STORE 1 +FLAGS (\\Flagged)")
    assert any(b"MODSEQ (" in x for x in lines), lines
    lines = raw_command(m, b"UID STORE 2 (UNCHANGEDSINCE 1) +FLAGS (\\Seen)")
    assert b"MODIFIED 2" in lines[-1], lines
    raw_command(m, b"UID STORE 3 +FLAGS.SILENT (\\Deleted)")
    lines = raw_command(m, b"UID EXPUNGE 3")
    assert any(x.startswith(b"* VANISHED 3") for x in lines), lines  # QRESYNC: VANISHED, not EXPUNGE
    raw_command(m, b"UNSELECT")
    lines = raw_command(m, f"SELECT Sync (QRESYNC ({validity} {high} 1:3))".encode())
    assert any(x.startswith(b"* VANISHED (EARLIER) 3") for x in lines), lines
    assert any(b"FETCH" in x and b"\\Flagged" in x and b"UID 1" in x for x in lines), lines
    lines = raw_command(m, f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {high} VANISHED)".encode())
    assert any(b"UID 1" in x for x in lines) and not any(b"UID 2 " in x for x in lines), lines
    m.logout()


def test_bodystructure_sections_and_binary(world: ImapWorld) -> None:
    raw = (
        b"From: a@ext.org\r\nTo: bob@example.com\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\npreamble\r\n--XX\r\n'
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nhello part one\r\n--XX\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="x.bin"\r\n\r\nAAECAwQ=\r\n--XX--\r\n'
    )
    m = connect(world, BOB, BOB_PW)
    m.create("Parts")
    typ, data = m.append("Parts", None, None, raw)
    m.select("Parts")
    typ, data = m.fetch("1", "(BODYSTRUCTURE BODY.PEEK[1] BODY.PEEK[2.MIME] BINARY.PEEK[2] BINARY.SIZE[2])")
    assert typ == "OK"
    head = data[0][0]  # type: ignore[index]
    assert b'"mixed"' in head.lower() and b'"attachment" ("FILENAME" "x.bin")' in head, head
    got = flat(data)
    assert b"hello part one" in got and b"Content-Disposition: attachment" in got
    assert b"\x00\x01\x02\x03\x04" in got and b"BINARY.SIZE[2] 5" in got
    typ, data = m.fetch("1", "(BODY[TEXT]<0.8> ENVELOPE)")
    assert data[0][1] == b"preamble"  # type: ignore[index]
    m.logout()


def test_listeners_follow_the_config_keys(world: ImapWorld) -> None:
    with world.server.client(world.admin) as c:
        r = c.get("/_ports")
        assert r.status_code == 200, r.text
        ports = {p["name"]: p for p in r.json()}
    assert ports["imap"]["tls"] == "starttls" and ports["imaps"]["tls"] == "implicit"
    assert ports["imap"]["url"] == world.server.listeners["imap"] and ports["imap"]["state"] == "running"
    mark = len(world.server.log)
    world.config("imap.enabled", "false")
    world.server.wait_line(r"^portside: imaps stopped", mark)
    world.server.wait_line(r"^portside: imap stopped", mark)
    mark = len(world.server.log)
    world.config("imap.enabled", "true")
    world.server.wait_listening("imap", mark)
    world.server.wait_listening("imaps", mark)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not {"imap", "imaps"} <= set(world.server.listeners):
        time.sleep(0.05)
    m = connect(world)
    assert m.select("INBOX")[0] == "OK"
    m.logout()


def test_command_rate_is_bounded_by_slowing_down(world: ImapWorld) -> None:
    m = connect_tls(world, BOB, BOB_PW)
    sock = m.socket()
    count = int(BURST + 1.5 * RATE)  # the burst goes at once, the rest at RATE per second
    started = time.monotonic()
    sock.sendall(b"".join(b"n%d NOOP\r\n" % i for i in range(count)))
    sock.settimeout(60)
    answered = 0
    while answered < count:
        line = m.readline()
        assert line, "connection closed"
        if line.startswith(b"n"):
            assert b" OK " in line, line
            answered += 1
    assert time.monotonic() - started >= 1.5
    assert m.noop()[0] == "OK"  # slowed, not dropped
    m.logout()
