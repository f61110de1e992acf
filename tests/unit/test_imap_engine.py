"""The IMAP engine's pure parts: command syntax (literals, LITERAL+, bounds), reply formatting, sequence
sets, mailbox names, SEARCH programs and MIME sections. Protocol behaviour is tested over real sockets in
tests/test_imap*.py."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from portside.imap import config, mime, names, search, seqset, wire
from portside.imap.cmd_fetch import parse_section, section_bytes
from portside.imap.response import astring, encode, internaldate, ordered_set, sequence_set, string

MULTIPART = (
    b'From: A <a@ext.org>\r\nTo: b@example.com, "Q, R" <q@r.example>\r\nSubject: =?utf-8?q?h=C3=A9llo?=\r\n'
    b'Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nContent-Type: multipart/mixed; boundary="X Y"\r\n\r\n'
    b"preamble\r\n--X Y\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable"
    b"\r\n\r\nna=C3=AFve  \r\ntext=\r\n more\r\n--X Y\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\n"
    b"inner body\r\n--X Y--\r\nepilogue\r\n"
)


def read(data: bytes, *, max_line: int = 1024, max_literal: int = 100) -> tuple[list[bytes], bytes]:
    async def main() -> tuple[list[bytes], bytes]:
        reader = asyncio.StreamReader(limit=4096)
        reader.feed_data(data)
        reader.feed_eof()
        asked = bytearray()

        async def go_ahead() -> None:
            asked.extend(b"+")

        return await wire.read_command(reader, go_ahead, max_line=max_line, max_literal=max_literal), bytes(asked)

    return asyncio.run(main())


def test_literals_synchronising_and_non_synchronising() -> None:
    segments, asked = read(b"a1 LOGIN {5}\r\nalice {3+}\r\npw!\r\nrest")
    assert asked == b"+"  # one continuation request: for the synchronising literal only
    tag, name, args = wire.split_head(segments)
    assert (tag, name) == ("a1", "LOGIN")
    assert wire.tokenize(args) == [b"alice", b"pw!"]


def test_oversized_literal_and_line_are_refused_after_the_command_is_consumed() -> None:
    with pytest.raises(wire.TooLong) as exc:
        read(b"a2 APPEND INBOX {1000}\r\n")
    assert exc.value.tag == "a2" and exc.value.literal
    with pytest.raises(wire.TooLong) as exc:
        read(b"a3 APPEND INBOX {200+}\r\n" + b"x" * 200 + b"\r\n")
    assert exc.value.tag == "a3"
    with pytest.raises(wire.TooLong):
        read(b"a4 SELECT " + b"A" * 5000 + b"\r\n")


def test_tokens_quoted_lists_brackets_and_nil() -> None:
    toks = wire.tokenize([b'"a \\"q\\" \\\\" (1 (2 NIL)) BODY[HEADER.FIELDS (A B)]<0.10> \\Seen\r\n'])
    assert toks == [b'a "q" \\', ["1", ["2", "NIL"]], "BODY[HEADER.FIELDS (A B)]<0.10>", "\\Seen"]
    assert wire.tokenize([b"!#[}\r\n"]) == ["!#[}"]  # an unmatched bracket is an ordinary character
    for bad in (b'"open\r\n', b"(a\r\n", b"a)\r\n", b'"bad \\x escape"\r\n'):
        with pytest.raises(wire.ParseError):
            wire.tokenize([bad])
    with pytest.raises(wire.ParseError):
        wire.split_head([b"* NOOP\r\n"])  # `*` is no tag
    with pytest.raises(wire.ParseError):
        wire.number(wire.Atom("99999999999999999999999"))


def test_formatting() -> None:
    assert string("plain") == b'"plain"'
    assert string('has "quote"') == b'{11}\r\nhas "quote"'
    assert string("caf\u00e9") == b"{5}\r\ncaf\xc3\xa9"
    assert string(b"a\x00b", binary=True) == b"~{3}\r\na\x00b"
    assert astring("INBOX") == b"INBOX" and astring("two words") == b'"two words"' and astring("") == b'""'
    assert encode([None, 1, "x", [b"y"]]) == b'(NIL 1 "x" ("y"))'
    assert sequence_set([5, 1, 2, 3, 9, 10]) == "1:3,5,9:10"
    assert ordered_set([4, 5, 9, 2]) == "4:5,9,2"
    when = dt.datetime(1994, 2, 7, 21, 52, 25, tzinfo=dt.timezone(-dt.timedelta(hours=8)))
    assert internaldate(when) == b'" 7-Feb-1994 21:52:25 -0800"'


def test_sequence_sets() -> None:
    s = seqset.parse("1:3,7,9:*")
    assert s.select([1, 2, 3, 4, 7, 8, 9, 12]) == [1, 2, 3, 7, 9, 12]
    assert seqset.parse("*:5").select([2, 4, 6, 8]) == [6, 8]
    assert seqset.parse("100:*").select([2, 4, 6]) == [6]  # n:* always includes the largest
    for bad in ("", "0", "1:0", "a", "1,,2", "4294967296"):
        with pytest.raises(wire.ParseError):
            seqset.parse(bad)
    with pytest.raises(wire.ParseError):
        seqset.parse("1:4000000000").numbers(0)  # bounded expansion


def test_mailbox_names_and_patterns() -> None:
    assert names.canonical("inbox/Sub") == "INBOX/Sub" and names.canonical("Inboxes") == "Inboxes"
    for bad in ("", "a//b", "/a", "a/", "a/../b", "x*", "ctl\x01", "a" * 300):
        with pytest.raises(wire.ParseError):
            names.check(bad)
    assert names.pattern("", "%").match("INBOX") and not names.pattern("", "%").match("a/b")
    assert names.pattern("", "*").match("a/b") and names.pattern("a/", "%").match("a/b")
    assert names.parents("a/b/c") == ["a", "a/b"]


def _items(flags: list[frozenset[str]]) -> list[search.Item]:
    now = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)
    return [
        search.Item(i + 1, 10 * (i + 1), f, i == 0, now, 100 * (i + 1), i + 1, len(flags), 10 * len(flags))
        for i, f in enumerate(flags)
    ]


def _run(line: bytes, items: list[search.Item]) -> list[int]:
    program = search.parse(wire.tokenize([line + b"\r\n"]))
    return [i.seq for i in items if program.match(i)]


def test_search_programs() -> None:
    items = _items([frozenset({"\\Seen"}), frozenset(), frozenset({"\\Deleted", "$Work"}), frozenset({"\\Seen"})])
    assert _run(b"ALL", items) == [1, 2, 3, 4]
    assert _run(b"UNSEEN", items) == [2, 3]
    assert _run(b"NOT SEEN UNDELETED", items) == [2]
    assert _run(b"OR DELETED 1", items) == [1, 3]
    assert _run(b"KEYWORD $Work", items) == [3]
    assert _run(b"LARGER 150 SMALLER 350", items) == [2, 3]
    assert _run(b"UID 20:30", items) == [2, 3]
    assert _run(b"2,4:*", items) == [2, 4]
    assert _run(b"RECENT", items) == [1] and _run(b"NEW", items) == []
    assert _run(b"(SEEN) NOT (1)", items) == [4]
    assert _run(b"MODSEQ 3", items) == [3, 4]
    assert _run(b"SINCE 6-Dec-2026 BEFORE 7-Dec-2026", items) == [1, 2, 3, 4]
    for bad in (b"FROBNICATE", b"OR SEEN", b"SINCE yesterday", b"()", b"LARGER -1"):
        with pytest.raises(wire.ParseError):
            search.parse(wire.tokenize([bad + b"\r\n"]))
    with pytest.raises(search.BadCharset):
        search.parse(wire.tokenize([b"CHARSET KOI8-R ALL\r\n"]))


def test_search_text_keys_decode_headers_and_bodies() -> None:
    item = _items([frozenset()])[0]
    item.entity = mime.Entity(MULTIPART)
    for line, hit in (
        (b'SUBJECT "H\xc3\xa9LLO"', True),  # RFC 2047 decoded, case-insensitive
        (b'FROM "a@ext.org"', True),
        (b'TO "q, r"', True),
        (b"BODY naive", False),
        (b'BODY "na\xc3\xafve"', True),  # quoted-printable decoded
        (b"TEXT inner", True),
        (b'HEADER Content-Type "mixed"', True),
        (b"SENTON 7-Feb-1994", True),
        (b"SENTSINCE 8-Feb-1994", False),
    ):
        program = search.parse(wire.tokenize([b"CHARSET UTF-8 " + line + b"\r\n"]))
        assert program.match(item) is hit, line


def test_mime_sections_envelope_and_bodystructure() -> None:
    e = mime.Entity(MULTIPART)

    def sec(spec: str) -> bytes | None:
        return section_bytes(e, parse_section(spec))

    assert sec("BODY[]") == MULTIPART
    assert sec("BODY[HEADER]").endswith(b'-0800\r\nContent-Type: multipart/mixed; boundary="X Y"\r\n\r\n')  # type: ignore[union-attr]
    assert sec("BODY[TEXT]").startswith(b"preamble\r\n--X Y")  # type: ignore[union-attr]
    assert sec("BODY[1]") == b"na=C3=AFve  \r\ntext=\r\n more"
    assert sec("BINARY[1]") == "naïve\r\ntext more".encode()
    assert sec("BODY[1.MIME]").startswith(b"Content-Type: text/plain")  # type: ignore[union-attr]
    assert sec("BODY[2.HEADER]") == b"Subject: inner\r\n\r\n" and sec("BODY[2.TEXT]") == b"inner body"
    assert sec("BODY[2.1]") == b"inner body"
    assert sec("BODY[HEADER.FIELDS (subject to)]").startswith(b"To: b@example.com")  # type: ignore[union-attr]
    assert sec("BODY[HEADER.FIELDS.NOT (Content-Type Date From To)]") == b"Subject: =?utf-8?q?h=C3=A9llo?=\r\n\r\n"
    assert sec("BODY[9]") is None
    assert parse_section("BODY.PEEK[1.MIME]<5.10>").label == "BODY[1.MIME]<5>"
    for bad in ("BODY[MIME]", "BODY[0]", "BINARY[HEADER]", "BODY[1]<5>", "BODY[TEXT x]"):
        with pytest.raises(wire.ParseError):
            parse_section(bad)
    env = encode(mime.envelope(e))
    assert env.startswith(b'("Mon, 7 Feb 1994 21:52:25 -0800" "=?utf-8?q?h=C3=A9llo?=" (("A" NIL "a" "ext.org"))')
    assert b'((NIL NIL "b" "example.com")("Q, R" NIL "q" "r.example"))' in env  # no spaces
    structure = mime.structure_bytes(e)
    assert structure.startswith(b'(("text" "plain" ("CHARSET" "utf-8") NIL NIL "quoted-printable" 26 2')
    assert b'("message" "rfc822" NIL NIL NIL "7bit" 28 (NIL "inner"' in structure
    assert structure.endswith(b' "mixed" ("BOUNDARY" "X Y") NIL NIL NIL)')
    assert mime.without_nul(b"A: b\r\n\r\n\x00\x01") != b"A: b\r\n\r\n\x00\x01"  # NUL bytes re-encoded
    assert mime.Entity(mime.without_nul(b"A: b\r\n\r\n\x00\x01")).decoded() == b"\x00\x01"


def test_listener_interfaces() -> None:
    assert config.interface(":1143", "0.0.0.0") == ("0.0.0.0", 1143)
    assert config.interface("[::1]:0", "x") == ("::1", 0)
    assert config.interface("off", "x") is None
    with pytest.raises(ValueError):
        config.interface("localhost", "x")
    with pytest.raises(ValueError):
        config.interface("h:99999", "x")
    values = {"imap.enabled": "true", "imap.listen_interface": "127.0.0.1:0"}
    plan = config.plan(values.get, "0.0.0.0")
    assert plan["imap"] == config.Spec("imap", "127.0.0.1", 0, "starttls") and plan["imaps"] is None
    assert config.plan({}.get, "0.0.0.0") == {"imap": None, "imaps": None}
