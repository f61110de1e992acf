"""Differential test: one IMAP session script run against a private Dovecot 2.3 and against Portside; the
responses must be the same modulo server-specific texts (human-readable text after a status, values of
UIDVALIDITY and mod-sequences, order of flags and of FETCH items)."""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Iterator

import pytest

import dovecot_ref
from imap_support import ALICE, ALICE_PW, ImapWorld, running_imap_world

pytestmark = pytest.mark.skipif(not dovecot_ref.available(), reason="dovecot-imapd not installed (run .ci/deps)")

PLAIN_MSG = (
    b"From: Xavier <x@ext.org>\r\nTo: alice@example.com\r\nSubject: first\r\n"
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nMessage-ID: <one@ext.org>\r\n\r\nhello world\r\n"
)
MULTI_MSG = (
    b"From: Yvonne <y@ext.org>\r\nTo: alice@example.com, Bob <bob@example.com>\r\nCc: c@ext.org\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?=\r\nDate: Tue, 8 Feb 1994 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\npreamble\r\n--b1\r\n'
    b"Content-Type: text/plain; charset=utf-8\r\n\r\npart one\r\n--b1\r\n"
    b'Content-Type: application/octet-stream; name="x.bin"\r\nContent-Transfer-Encoding: base64\r\n'
    b'Content-Disposition: attachment; filename="x.bin"\r\n\r\nAAECAwQ=\r\n--b1--\r\n'
)
THIRD_MSG = b"From: z@ext.org\r\nSubject: third\r\nDate: Wed, 9 Feb 1994 10:00:00 +0000\r\n\r\nbody three\r\n"

SCRIPT: list[bytes] = [
    b"CREATE diff",
    b'APPEND diff (\\Seen) "07-Feb-1994 21:52:25 -0800" {%d+}\r\n' % len(PLAIN_MSG) + PLAIN_MSG,
    b'APPEND diff () "08-Feb-1994 10:00:00 +0000" {%d+}\r\n' % len(MULTI_MSG) + MULTI_MSG,
    b'APPEND diff (\\Flagged $Work) "09-Feb-1994 10:00:00 +0000" {%d+}\r\n' % len(THIRD_MSG) + THIRD_MSG,
    b"STATUS diff (MESSAGES UNSEEN UIDNEXT RECENT)",
    b"SELECT diff",
    b"FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)",
    b"FETCH 2 (ENVELOPE)",
    b"FETCH 1:3 (BODYSTRUCTURE)",
    b"FETCH 2 (BODY)",
    b"FETCH 2 (BODY.PEEK[1])",
    b"FETCH 2 (BODY.PEEK[2.MIME])",
    b"FETCH 2 (BINARY.PEEK[2])",
    b"FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])",
    b"FETCH 3 (BODY.PEEK[TEXT]<0.4>)",
    b"SEARCH UNSEEN",
    b'SEARCH FROM "xavier"',
    b"SEARCH OR FLAGGED SEEN",
    b'SEARCH CHARSET UTF-8 SUBJECT "caf\xc3\xa9"',
    b"SEARCH TEXT octet-stream",
    b"SEARCH SENTBEFORE 8-Feb-1994",
    b"SEARCH LARGER 200 NOT KEYWORD $Work",
    b"UID SEARCH 2:*",
    b"STORE 2 +FLAGS (\\Answered)",
    b"UID STORE 3 -FLAGS (\\Flagged)",
    b"FETCH 2 (BODY[TEXT]<0.8>)",
    b"FETCH 2 (FLAGS)",
    b"COPY 1:2 nonexistent",
    b"CREATE diff2",
    b"COPY 1:2 diff2",
    b"STORE 1 +FLAGS.SILENT (\\Deleted)",
    b"SEARCH DELETED",
    b"EXPUNGE",
    b"SEARCH ALL",
    b'LIST "" diff*',
    b"STATUS diff2 (MESSAGES UIDNEXT)",
    b"EXAMINE diff2",
    b"STORE 1 +FLAGS (\\Seen)",
    b"FETCH 1:* (UID FLAGS)",
    b"CLOSE",
    b"DELETE diff2",
    b"DELETE diff",
    b"SELECT diff",
]


# where Portside answers differently on purpose
ON_PURPOSE = {
    # STORE after EXAMINE: Dovecot answers OK and changes nothing; RFC 3501 read-only: NO [READ-ONLY]
    b"STORE 1 +FLAGS (\\Seen)": lambda lines: lines[-1].startswith(b"T NO [READ-ONLY]"),
}


def session(port: int) -> list[list[bytes]]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30)) as sock:
        f = sock.makefile("rb")
        f.readline()
        out: list[list[bytes]] = []
        for n, command in enumerate([f'LOGIN "{ALICE}" "{ALICE_PW}"'.encode(), *SCRIPT]):
            tag = b"d%d" % n
            sock.sendall(tag + b" " + command + b"\r\n")
            lines: list[bytes] = []
            while True:
                line = f.readline()
                assert line, "connection closed"
                m = re.search(rb"~?\{(\d+)\}\r\n$", line)
                if m:
                    line = line[: m.start()] + b"<" + f.read(int(m.group(1))) + b">" + f.readline()
                if line.startswith(tag + b" "):
                    lines.append(b"T " + line[len(tag) + 1 :])
                    break
                lines.append(line)
            out.append(lines)
        return out[1:]


def normalize(line: bytes) -> bytes:
    text = line.rstrip(b"\r\n")
    m = re.match(rb"(T|\*) (OK|NO|BAD|BYE)( \[([A-Z-]+)[^\]]*\])?", text)
    if m and (m.group(1) == b"T" or m.group(3)):
        code = m.group(4) if m.group(2) == b"OK" else None  # NO: the code is a server's choice (RFC 5530)
        return b" ".join(p for p in (m.group(1), m.group(2), code) if p)  # status and code name only
    text = re.sub(rb"(MODSEQ \(?)\d+", rb"\1n", text)
    text = re.sub(rb"FLAGS \(([^)]*)\)", lambda x: b"FLAGS (" + b" ".join(sorted(x.group(1).split())) + b")", text)
    text = re.sub(rb'"( \d)-', lambda x: b'"0' + x.group(1)[1:] + b"-", text)  # date-day-fixed: " 8" or "08"
    text = re.sub(rb'^(\* LIST \([^)]*\)) "[./]"', rb"\1 SEP", text)  # Dovecot's maildir delimiter is "."
    m = re.match(rb"(\* STATUS \S+ )\((.*)\)$", text)
    if m:  # item order is the server's
        pairs = re.findall(rb"(\S+) (\S+)", m.group(2))
        text = m.group(1) + b"(" + b" ".join(k + b" " + v for k, v in sorted(pairs)) + b")"
    return text.upper()


def comparable(lines: list[bytes]) -> list[bytes]:
    if lines and lines[0].startswith(b"* LIST"):
        lines = sorted(lines[:-1]) + lines[-1:]
    out = []
    for line in lines:
        n = normalize(line)
        if n in (b"* OK HIGHESTMODSEQ", b"* OK PERMANENTFLAGS", b"* OK CLOSED", b"* OK NOMODSEQ") or (
            n.startswith(b"* FLAGS")
        ):
            continue  # announced differently (keyword lists, CONDSTORE state) without a different meaning
        out.append(n)
    return out


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[int, ImapWorld]]:
    dovecot = dovecot_ref.start(ALICE, ALICE_PW)
    try:
        with running_imap_world("sqlite") as world:
            yield dovecot.port, world
    finally:
        dovecot.stop()


def test_same_script_same_responses_as_dovecot(servers: tuple[int, ImapWorld]) -> None:
    dovecot_port, world = servers
    theirs = session(dovecot_port)
    ours = session(world.port("imaps"))
    differences = []
    for command, a, b in zip(SCRIPT, theirs, ours, strict=True):
        if command in ON_PURPOSE:
            assert ON_PURPOSE[command](b), (command, b)
            continue
        if comparable(a) != comparable(b):
            differences.append(f"{command[:60]!r}\n  dovecot:  {comparable(a)}\n  portside: {comparable(b)}")
    assert not differences, "\n".join(differences)
