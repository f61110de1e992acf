"""The FETCH paths built for speed, over real sockets with imaplib against a Portside process (SQLite):

- pipelined one-message `UID FETCH n (BODY.PEEK[])` commands, as mbsync sends a whole mailbox, are read
  ahead in batches and answered together: every reply is there, in order, byte-exact, also when the client
  jumps back and forth;
- ENVELOPE / BODYSTRUCTURE / BODY are parsed once per distinct message and kept per process: the answer
  follows the stored bytes, also when a row's raw message is rewritten behind IMAP's back (in Daptin's
  stored form, as an import or an administrator's write leaves it) after the old one was parsed.
"""

from __future__ import annotations

import base64
import imaplib
import re
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from imap_support import BOB, BOB_PW, ImapWorld, connect, message, running_imap_world
from support import sync_url

MESSAGES = 150


@pytest.fixture(scope="module")
def world() -> Iterator[ImapWorld]:
    with running_imap_world() as w:
        yield w


def read_replies(m: imaplib.IMAP4, last: bytes) -> tuple[list[bytes], dict[int, list[bytes]]]:
    """Tagged lines in arrival order, and the BODY[] literals per UID, up to the tagged reply `last`."""
    m.socket().settimeout(30)
    tagged: list[bytes] = []
    bodies: dict[int, list[bytes]] = {}
    while True:
        line = m.readline()
        assert line, "connection closed"
        if line.startswith(b"* ") and b" FETCH " in line:
            found = re.search(rb"UID (\d+) BODY\[\] \{(\d+)\}\r\n\Z", line)
            assert found is not None, line
            bodies.setdefault(int(found.group(1)), []).append(m.read(int(found.group(2))))
            assert m.readline() == b")\r\n"
        elif not line.startswith(b"* "):
            tagged.append(line)
            if line.startswith(last + b" "):
                return tagged, bodies


def test_pipelined_single_message_fetches_are_all_answered_in_order(world: ImapWorld) -> None:
    m = connect(world, BOB, BOB_PW)
    m.create("Pipe")
    raws = [message(f"pipe {n}", body=f"line {n}\r\n" * (n % 7 + 1)) for n in range(1, MESSAGES + 1)]
    for raw in raws:
        assert m.append("Pipe", None, None, raw)[0] == "OK"
    assert m.select("Pipe")[0] == "OK"
    # in order (read ahead), then a jump back and forward, then in order again, all in one write
    order = [*range(1, 61), 30, 31, 100, 5, *range(61, MESSAGES + 1)]
    m.send(b"".join(b"P%d UID FETCH %d (BODY.PEEK[])\r\n" % (i, uid) for i, uid in enumerate(order)) + b"PEND NOOP\r\n")
    tagged, bodies = read_replies(m, b"PEND")
    assert [t.split(b" ", 2)[:2] for t in tagged] == [[b"P%d" % i, b"OK"] for i in range(len(order))] + [
        [b"PEND", b"OK"]
    ]
    for uid, raw in enumerate(raws, start=1):
        assert bodies[uid] == [raw] * order.count(uid), uid
    # BODY.PEEK: nothing became \Seen
    typ, data = m.uid("SEARCH", "SEEN")
    assert typ == "OK" and data == [b""], data
    m.logout()


def _multipart(subject: str) -> bytes:
    return (
        f"From: Carol <carol@ext.org>\r\nTo: bob@example.com\r\nSubject: {subject}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XYZ\r\n\r\n"
        "--XYZ\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XYZ\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n"
        "--XYZ--\r\n"
    ).encode()


def test_envelope_and_bodystructure_follow_the_stored_bytes(world: ImapWorld) -> None:
    first = message("first subject")
    m = connect(world, BOB, BOB_PW)
    m.create("Parsed")
    for _ in range(2):  # the same bytes twice: one parse serves both
        assert m.append("Parsed", None, None, first)[0] == "OK"
    assert m.select("Parsed")[0] == "OK"
    typ, data = m.uid("FETCH", "1:2", "(ENVELOPE BODYSTRUCTURE)")
    assert typ == "OK", data
    fetched = [d for d in data if isinstance(d, bytes) and b"ENVELOPE" in d]
    assert len(fetched) == 2 and all(b'"first subject"' in d and b'"TEXT" "PLAIN"' in d.upper() for d in fetched)
    m.logout()
    # UID 2's raw message rewritten in the database, in Daptin's default stored form (plain base64)
    engine = sa.create_engine(sync_url(world.db_url))
    try:
        with engine.begin() as c:
            done = c.execute(
                sa.text(
                    "UPDATE mail SET mail = :raw WHERE uid = 2 AND mail_box_id = (SELECT b.id FROM mail_box b "
                    "JOIN mail_account a ON a.id = b.mail_account_id WHERE a.username = :u AND b.name = 'Parsed')"
                ),
                {"raw": base64.b64encode(_multipart("second subject")).decode(), "u": BOB},
            )
            assert done.rowcount == 1
    finally:
        engine.dispose()
    m = connect(world, BOB, BOB_PW)  # a new session: nothing of the old bytes kept per session
    assert m.select("Parsed")[0] == "OK"
    typ, data = m.uid("FETCH", "1:2", "(ENVELOPE BODYSTRUCTURE BODY)")
    assert typ == "OK", data
    by_uid = {
        int(re.search(rb"UID (\d+)", d).group(1)): d  # type: ignore[union-attr]
        for d in data
        if isinstance(d, bytes) and b"ENVELOPE" in d
    }
    assert b'"first subject"' in by_uid[1] and b"MIXED" not in by_uid[1].upper(), by_uid[1]
    assert b'"second subject"' in by_uid[2] and b'"MIXED"' in by_uid[2].upper(), by_uid[2]
    assert b'"HTML"' in by_uid[2].upper(), by_uid[2]
    m.logout()
