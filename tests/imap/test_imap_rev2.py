"""IMAP4rev2 (RFC 9051) where it differs from IMAP4rev1 for clients, over real sockets with imaplib's raw
commands: the capability and `ENABLE IMAP4rev2`; after enabling, no `\\Recent` (no RECENT responses, no
`\\Recent` in FLAGS, nothing claimed from rev1 sessions) and no `[UNSEEN n]`; ESEARCH answers every SEARCH;
SEARCHRES (`RETURN (SAVE)` and `$`); OK [CLOSED] when another mailbox is selected; STATUS DELETED and SIZE."""

from __future__ import annotations

import asyncio
import imaplib
import re
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from imap_support import (
    ALICE,
    ImapWorld,
    connect,
    deliver,
    idle,
    idle_done,
    message,
    raw_command,
    running_imap_world,
    untagged_within,
)
from support import REDIS, sync_url


@pytest.fixture(scope="module")
def world() -> Iterator[ImapWorld]:
    with running_imap_world("sqlite", "--redis-url", REDIS) as w:
        yield w


def untagged(lines: list[bytes], word: bytes) -> list[bytes]:
    return [x for x in lines if x.startswith(b"* ") and word in x]


def rev2_session(world: ImapWorld) -> imaplib.IMAP4:
    m = connect(world)
    lines = raw_command(m, b"ENABLE IMAP4rev2")
    assert b"* ENABLED IMAP4rev2\r\n" in lines and lines[-1].startswith(b"R1 OK"), lines
    return m


def test_capability_and_enable(world: ImapWorld) -> None:
    m = connect(world)
    caps = b"".join(untagged(raw_command(m, b"CAPABILITY"), b"CAPABILITY")).split()
    assert b"IMAP4rev1" in caps and b"IMAP4rev2" in caps and b"SEARCHRES" in caps and b"ESEARCH" in caps, caps
    assert b"STATUS=SIZE" in caps and b"LIST-STATUS" in caps, caps
    assert b"* ENABLED IMAP4rev2\r\n" in raw_command(m, b"ENABLE IMAP4rev2")
    assert b"* ENABLED\r\n" in raw_command(m, b"ENABLE IMAP4rev2")  # once only
    m.logout()


def test_no_recent_after_enabling_rev2_while_rev1_sessions_keep_it(world: ImapWorld) -> None:
    m = connect(world)
    m.create("Rev2Recent")
    m.logout()
    uid = asyncio.run(deliver(world.db_url, ALICE, message("fresh"), "Rev2Recent"))
    m = rev2_session(world)
    lines = raw_command(m, b"SELECT Rev2Recent")
    assert lines[-1].startswith(b"R1 OK"), lines
    assert not untagged(lines, b"RECENT") and not untagged(lines, b"[UNSEEN"), lines
    assert b"* 1 EXISTS\r\n" in lines, lines
    fetched = untagged(raw_command(m, b"FETCH 1 (FLAGS)"), b"FETCH")
    assert fetched == [b"* 1 FETCH (FLAGS ())\r\n"], fetched
    old = connect(world)  # an IMAP4rev1 session still gets the message as \Recent: rev2 claimed nothing
    lines = raw_command(old, b"SELECT Rev2Recent")
    assert b"* 1 RECENT\r\n" in lines and untagged(lines, b"[UNSEEN 1]"), lines
    assert b"\\Recent" in b"".join(untagged(raw_command(old, f"UID FETCH {uid} (FLAGS)".encode()), b"FETCH"))
    old.logout()
    idle(m)  # push in rev2: EXISTS, never RECENT
    asyncio.run(deliver(world.db_url, ALICE, message("pushed"), "Rev2Recent"))
    line, _ = untagged_within(m, lambda x: x.endswith(b" EXISTS\r\n"), 5)
    assert line == b"* 2 EXISTS\r\n", line
    rest = idle_done(m)
    assert not untagged(rest, b"RECENT"), rest
    lines = raw_command(m, b"SEARCH RECENT")  # RFC 9051 has no \Recent: nothing is recent
    assert lines[0] == b'* ESEARCH (TAG "R1")\r\n', lines
    m.logout()


def test_search_answers_with_esearch_in_rev2(world: ImapWorld) -> None:
    m = connect(world)
    m.create("Rev2Search")
    for subject in ("alpha", "beta", "alpha again", "gamma"):
        m.append("Rev2Search", None, None, message(subject))
    m.select("Rev2Search")
    lines = raw_command(m, b"SEARCH SUBJECT alpha")  # IMAP4rev1: the SEARCH response
    assert lines[0] == b"* SEARCH 1 3\r\n", lines
    m.logout()
    m = rev2_session(world)
    raw_command(m, b"SELECT Rev2Search")
    assert raw_command(m, b"SEARCH SUBJECT alpha")[0] == b'* ESEARCH (TAG "R1") ALL 1,3\r\n'
    assert raw_command(m, b"UID SEARCH ALL")[0] == b'* ESEARCH (TAG "R1") UID ALL 1:4\r\n'
    assert raw_command(m, b"SEARCH SUBJECT nothing-like-it")[0] == b'* ESEARCH (TAG "R1")\r\n'
    lines = raw_command(m, b"SEARCH RETURN (MIN MAX COUNT ALL) SUBJECT a")
    assert lines[0] == b'* ESEARCH (TAG "R1") MIN 1 MAX 4 ALL 1:4 COUNT 4\r\n', lines
    lines = raw_command(m, b"SEARCH RETURN () NOT SUBJECT alpha")
    assert lines[0] == b'* ESEARCH (TAG "R1") ALL 2,4\r\n', lines
    m.logout()


def test_searchres_saves_a_result_for_dollar(world: ImapWorld) -> None:
    m = connect(world)  # SEARCHRES works in IMAP4rev1 sessions too (it is advertised to both)
    m.create("Saved")
    for subject in ("keep one", "drop", "keep two", "keep three"):
        m.append("Saved", None, None, message(subject))
    m.select("Saved")
    lines = raw_command(m, b"UID SEARCH RETURN (SAVE) SUBJECT keep")
    assert lines[-1].startswith(b"R1 OK") and not untagged(lines, b"SEARCH"), lines  # SAVE alone: no answer
    fetched = untagged(raw_command(m, b"UID FETCH $ (UID)"), b"FETCH")
    assert [int(re.search(rb"UID (\d+)", x).group(1)) for x in fetched] == [1, 3, 4], fetched  # type: ignore[union-attr]
    assert raw_command(m, b"UID STORE $ +FLAGS.SILENT (\\Flagged)")[-1].startswith(b"R1 OK")
    assert raw_command(m, b"SEARCH FLAGGED")[0] == b"* SEARCH 1 3 4\r\n"
    assert raw_command(m, b"SEARCH $ SUBJECT three")[0] == b"* SEARCH 4\r\n"  # `$` as a search key
    assert raw_command(m, b"UID SEARCH UID $")[0] == b"* SEARCH 1 3 4\r\n"
    lines = raw_command(m, b"SEARCH RETURN (SAVE MIN) SUBJECT keep")  # with MIN only: only the minimum is saved
    assert lines[0] == b'* ESEARCH (TAG "R1") MIN 1\r\n', lines
    assert len(untagged(raw_command(m, b"FETCH $ (FLAGS)"), b"FETCH")) == 1
    raw_command(m, b"UID STORE 1 +FLAGS.SILENT (\\Deleted)")
    raw_command(m, b"EXPUNGE")
    fetched = untagged(raw_command(m, b"UID FETCH $ (UID)"), b"FETCH")  # what was saved is gone now
    assert fetched == [], fetched
    raw_command(m, b"UNSELECT")  # the saved result belongs to the selected mailbox
    raw_command(m, b"SELECT Saved")
    lines = raw_command(m, b"FETCH $ (UID)")
    assert lines[-1].startswith(b"R1 OK") and not untagged(lines, b"FETCH"), lines
    lines = raw_command(m, b"SEARCH RETURN (SAVE BOGUS) ALL")
    assert lines[-1].startswith(b"R1 BAD"), lines
    m.logout()


def test_closed_on_reselect_and_status_items(world: ImapWorld) -> None:
    m = rev2_session(world)
    raw_command(m, b"SELECT INBOX")
    lines = raw_command(m, b"SELECT Archive")
    assert untagged(lines, b"[CLOSED]"), lines
    m.create("Sized")
    m.append("Sized", "(\\Deleted)", None, message("sized"))
    lines = raw_command(m, b"STATUS Sized (MESSAGES DELETED SIZE)")
    got = dict(re.findall(rb"([A-Z]+) (\d+)", b"".join(untagged(lines, b"STATUS"))))
    assert got[b"MESSAGES"] == b"1" and got[b"DELETED"] == b"1" and int(got[b"SIZE"]) > 50, lines
    m.logout()


# -- mailbox names: modified UTF-7 for IMAP4rev1 sessions, UTF-8 for IMAP4rev2 ones, Unicode when stored --------


def stored_box_names(world: ImapWorld) -> set[str]:
    engine = sa.create_engine(sync_url(world.db_url))
    try:
        with engine.connect() as c:
            return set(c.execute(sa.text("SELECT name FROM mail_box")).scalars())
    finally:
        engine.dispose()


def test_mailbox_names_are_modified_utf7_for_rev1_and_utf8_for_rev2(world: ImapWorld) -> None:
    old = connect(world)
    assert raw_command(old, b"CREATE Entw&APw-rfe/&U,BTFw-")[-1].startswith(b"R1 OK")
    assert {"Entwürfe", "Entwürfe/台北"} <= stored_box_names(world)  # what /api shows
    lines = untagged(raw_command(old, b'LIST "" "Entw*"'), b"LIST")
    assert b'* LIST (\\HasChildren) "/" Entw&APw-rfe\r\n' in lines, lines
    assert b'* LIST (\\HasNoChildren) "/" Entw&APw-rfe/&U,BTFw-\r\n' in lines, lines
    assert raw_command(old, b"SELECT Entw&APw-rfe/&U,BTFw-")[-1].startswith(b"R1 OK")
    assert raw_command(old, b"CREATE caf&AOk-&-co")[-1].startswith(b"R1 OK")  # `&-` is a literal &
    assert "café&co" in stored_box_names(world)
    for bad in (b"x&Jjo", b"x&AGE-", b"x&!!-"):  # unterminated, encoded ASCII, not base64
        lines = raw_command(old, b"CREATE " + bad)
        assert lines[-1].startswith(b"R1 NO [CANNOT]"), (bad, lines)
        lines = raw_command(old, b"SELECT " + bad)  # looked up as it is: no such mailbox
        assert lines[-1].startswith(b"R1 NO [NONEXISTENT]"), (bad, lines)
        lines = raw_command(old, b'LIST "" ' + bad + b"*")
        assert lines == [b"R1 OK LIST completed\r\n"], (bad, lines)
    assert stored_box_names(world).isdisjoint({"x&Jjo", "xa", "x&!!-"})

    new = rev2_session(world)
    lines = b"".join(untagged(raw_command(new, b'LIST "" "Entw*"'), b"LIST"))
    assert "Entwürfe/台北".encode() in lines and b"&APw-" not in lines, lines
    assert raw_command(new, 'SELECT "Entwürfe/台北"'.encode())[-1].startswith(b"R1 OK")
    assert raw_command(new, 'CREATE "Überweisung"'.encode())[-1].startswith(b"R1 OK")
    assert "Überweisung" in stored_box_names(world)
    assert b"&ANw-berweisung" in b"".join(untagged(raw_command(old, b'LIST "" "&ANw-*"'), b"LIST"))
    status = b"".join(untagged(raw_command(old, b"STATUS &ANw-berweisung (MESSAGES)"), b"STATUS"))
    assert status == b"* STATUS &ANw-berweisung (MESSAGES 0)\r\n", status
    old.logout()
    new.logout()
