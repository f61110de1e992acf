"""Mailbox names an earlier version stored in modified UTF-7 (as the IMAP client sent them) are rewritten to
Unicode at the next start, once (mail/utf7_names.py), on SQLite, PostgreSQL and MariaDB: rev1 clients then
see the names they created, rev2 clients and /api the Unicode ones, and every message is where it was. A
collision with a box of the decoded name keeps the old box (and its sub-box) under `... (old)`; literal
names (`A&B`) and the ambiguous `&-` are left alone; a subscription kept after DELETE is rewritten too; a
name created after the rewrite is never touched."""

from __future__ import annotations

import dataclasses
import imaplib
import re

import pytest
import sqlalchemy as sa

from imap_support import ALICE, ALICE_PW, BOB, BOB_PW, ImapWorld, connect, message, raw_command, start_imap_world
from support import fresh_database, start_server, sync_url

KEY = "mail.utf7_names"
# placeholder name -> the name an earlier version stored (alice's boxes, then bob's)
OLD_ALICE = {
    "p1": "Entw&APw-rfe",  # "Entwürfe", which alice also has in the current form: a collision
    "p1/Alt": "Entw&APw-rfe/Alt",
    "p2": "&ZeVnLIqe-",  # 日本語
    "p3": "A&B",  # a literal name of today (not modified UTF-7)
    "p4": "Tom &- Jerry",  # `&-` only: ambiguous, left alone
}
OLD_BOB = {"q1": "Entw&APw-rfe"}
LIST_LINE = re.compile(rb'^\* LIST \([^)]*\) "/" (.*)\r\n$')


def run_sql(url: str, *statements: tuple[str, dict[str, object]]) -> None:
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.begin() as c:
            for sql, params in statements:
                c.execute(sa.text(sql), params)
    finally:
        engine.dispose()


def stored(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(sa.text(sql))]
    finally:
        engine.dispose()


def ok(m: imaplib.IMAP4, line: bytes) -> list[bytes]:
    lines = raw_command(m, line)
    assert lines[-1].startswith(b"R1 OK"), (line, lines)
    return lines


def listed(m: imaplib.IMAP4) -> set[bytes]:
    """The mailbox names of `LIST "" "*"` as sent (quotes removed)."""
    out = set()
    for line in ok(m, b'LIST "" "*"'):
        found = LIST_LINE.match(line)
        if found:
            name = found.group(1)
            out.add(name[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\") if name.startswith(b'"') else name)
    return out


def rev2(world: ImapWorld, user: str = ALICE, password: str = ALICE_PW) -> imaplib.IMAP4:
    m = connect(world, user, password)
    assert b"* ENABLED IMAP4rev2\r\n" in ok(m, b"ENABLE IMAP4rev2")
    return m


def messages(m: imaplib.IMAP4, name: bytes) -> int:
    [line] = [x for x in ok(m, b"STATUS " + name + b" (MESSAGES)") if x.startswith(b"* STATUS")]
    found = re.search(rb"\(MESSAGES (\d+)\)", line)
    assert found is not None, line
    return int(found.group(1))


def put(m: imaplib.IMAP4, box: str, subject: str) -> None:
    typ, data = m.append(box, "", imaplib.Time2Internaldate(0), message(subject))
    assert typ == "OK", data


def restart(world: ImapWorld) -> ImapWorld:
    world.server.stop()
    server = start_server(world.db_url, world.server.data_dir)
    server.wait_listening("imap")
    return dataclasses.replace(world, server=server)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mysql"])
def test_old_modified_utf7_names_are_rewritten_once(kind: str) -> None:
    url, drop = fresh_database(kind)
    world = start_imap_world(url)
    try:
        assert stored(url, f"SELECT value FROM _config WHERE name = '{KEY}'") == [("done",)]  # a new database
        m = connect(world)
        ok(m, b"CREATE Entw&APw-rfe")  # today's form: stored as "Entwürfe"
        put(m, "Entw&APw-rfe", "current drafts")
        for placeholder in OLD_ALICE:
            ok(m, b"CREATE " + placeholder.encode())
        put(m, "p1", "old draft 1")
        put(m, "p1", "old draft 2")
        put(m, "p1/Alt", "older draft")
        put(m, "p2", "japanese")
        put(m, "p3", "literal")
        for line in (b"CREATE p5", b"SUBSCRIBE p5", b"DELETE p5"):  # a subscription outlives its mailbox
            ok(m, line)
        m.logout()
        b = connect(world, BOB, BOB_PW)
        ok(b, b"CREATE q1")
        put(b, "q1", "bob's draft")
        b.logout()
        # the database as an earlier version left it: names as the clients sent them, nothing recorded
        world.server.stop()
        run_sql(
            url,
            *(
                (("UPDATE mail_box SET name = :new WHERE name = :old", {"new": n, "old": o}))
                for o, n in OLD_ALICE.items()
            ),
            ("UPDATE mail_box SET name = :new WHERE name = 'q1'", {"new": OLD_BOB["q1"]}),
            ("UPDATE mail_subscribed SET name = :new WHERE name = 'p5'", {"new": "&AMQ-rger"}),  # Ärger
            ("DELETE FROM _config WHERE name = :k", {"k": KEY}),
        )
        world = restart(world)

        old = connect(world)
        assert {
            b"Entw&APw-rfe",
            b"Entw&APw-rfe (old)",
            b"Entw&APw-rfe (old)/Alt",
            b"&ZeVnLIqe-",
            b"A&-B",
            b"Tom &-- Jerry",
        } <= listed(old)
        assert b"Entw&-APw-rfe" not in listed(old)
        assert b'* LSUB () "/" &AMQ-rger\r\n' in ok(old, b'LSUB "" "*"')
        assert messages(old, b"Entw&APw-rfe") == 1
        assert messages(old, b'"Entw&APw-rfe (old)"') == 2
        assert messages(old, b'"Entw&APw-rfe (old)/Alt"') == 1
        assert messages(old, b"&ZeVnLIqe-") == 1
        assert old.select("&ZeVnLIqe-")[0] == "OK"
        fetched = b"".join(x if isinstance(x, bytes) else b"".join(x) for x in old.fetch("1", "(BODY[HEADER])")[1])
        assert b"Subject: japanese" in fetched
        old.logout()

        new = rev2(world)
        names = listed(new)
        expected = {"Entwürfe", "Entwürfe (old)", "Entwürfe (old)/Alt", "日本語", "A&B", "Tom &- Jerry"}
        assert {n.encode() for n in expected} <= names, names
        assert messages(new, '"Entwürfe (old)"'.encode()) == 2
        assert messages(new, b"A&B") == 1
        assert any("Ärger".encode() in x and x.startswith(b"* LSUB ()") for x in ok(new, b'LSUB "" "*"'))
        assert stored(url, "SELECT name FROM mail_subscribed") == [("Ärger",)]
        bob = rev2(world, BOB, BOB_PW)
        assert "Entwürfe".encode() in listed(bob)
        assert messages(bob, '"Entwürfe"'.encode()) == 1
        bob.logout()
        with world.server.client(world.owner) as c:
            r = c.get("/api/mail_box", params={"page[size]": 100})
            assert r.status_code == 200, r.text
            api_names = {row["attributes"]["name"] for row in r.json()["data"]}
        assert expected <= api_names and "Entw&APw-rfe" not in api_names, api_names
        assert stored(url, f"SELECT value FROM _config WHERE name = '{KEY}'") == [("done",)]
        assert any("Entw&APw-rfe" in line and "Entwürfe (old)" in line for line in world.server.log)

        # a name created afterwards that looks like modified UTF-7 is never rewritten
        ok(new, b"CREATE Neu&APw-")
        new.logout()
        world = restart(world)
        assert b"Neu&APw-" in listed(rev2(world))
    finally:
        world.server.stop()
        drop()
