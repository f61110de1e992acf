"""Pure parts of mail: stored forms, flags, header parsing, interface and resolver settings, the SMTP reply
table, and the removal of forged Authentication-Results fields."""

from __future__ import annotations

import base64
import os

import pytest

from portside.errors import BadRequest, Kind, NotFound, PortsideError
from portside.mail import checks, flags, message
from portside.mail.dns import parse_resolver
from portside.mail.servers import flag, parse_interface
from portside.tools.wire_errors import SMTP_REPLY, smtp_reply


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x00", b"a\r\nb\nc\rd  \r\n", os.urandom(3000), b"Subject: x\r\n\r\n" + b"line\r\n" * 2000],
)
def test_stored_forms_round_trip_byte_exact(raw: bytes) -> None:
    stored = message.encode(raw)
    assert stored.startswith((message.GZ, message.RAW))
    assert message.decode(stored) == raw
    assert message.decode(base64.b64encode(raw).decode()) == raw  # Daptin's bare base64


def test_compression_only_when_it_pays() -> None:
    assert message.encode(b"x" * 10_000).startswith(message.GZ)
    assert message.encode(os.urandom(10_000)).startswith(message.RAW)


@pytest.mark.parametrize("bad", ["ps1:raw:@@@", '[{"name": "x.eml", "path": "a/b"}]', "[]", "[1]", "not base64!"])
def test_unreadable_stored_forms_are_refused(bad: str) -> None:
    with pytest.raises(message.StoredFormError):
        message.decode(bad)


def test_parse_is_bounded_and_never_raises() -> None:
    raw = b"Subject: " + b"s" * 2000 + b"\r\nFrom: =?bogus?=\r\nContent-Type: multipart/mixed\r\n\r\n\xff\xfe"
    p = message.parse(raw)
    assert len(p.subject) == 500 and p.body == "" and len(p.hash) == 32


def test_flags_semantics() -> None:
    assert flags.normalize(["\\seen", "\\SEEN", "Work", "work", "\\Recent"]) == ["\\Seen", "Work"]
    cols = flags.to_columns(["\\Seen", "\\Deleted", "$Junk"], recent=True)
    assert cols["seen"] and cols["deleted"] and cols["junk"] and not cols["flagged"]
    assert cols["keywords"] == "$Junk" and cols["flags"] == "\\Seen,\\Deleted,\\Recent,$Junk"
    assert flags.of_row(cols) == ["\\Seen", "\\Deleted", "$Junk"]
    assert flags.apply(["\\Seen", "A"], ["a"], "remove") == ["\\Seen"]
    assert flags.apply(["\\Seen"], ["\\Flagged"], "add") == ["\\Seen", "\\Flagged"]
    assert flags.apply(["\\Seen"], ["\\Draft"], "set") == ["\\Draft"]
    for bad in ["\\Bogus", "two words", "x" * 101, "(paren", 'quo"te', "pct%", "star*", ""]:
        with pytest.raises(BadRequest):
            flags.normalize([bad])
    with pytest.raises(BadRequest):
        flags.normalize([f"k{i}" for i in range(flags.MAX_KEYWORDS + 1)])


def test_interfaces_and_resolvers() -> None:
    assert parse_interface("0.0.0.0:465") == ("0.0.0.0", 465)
    assert parse_interface(":25") == ("0.0.0.0", 25)
    assert parse_interface("[::1]:0") == ("::1", 0)
    for bad in ["", "465", "host:", "host:65536", "host:-1", "host:1e3", "host:000025x"]:
        with pytest.raises(ValueError):
            parse_interface(bad)
    assert parse_resolver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_resolver("10.0.0.1") == ("10.0.0.1", 53)
    assert parse_resolver("[::1]:53") == ("::1", 53)
    for bad in ["127.0.0.1:x", ":53", "127.0.0.1:0", "h:70000"]:
        with pytest.raises(ValueError):
            parse_resolver(bad)
    assert flag("YES") and flag(1) and not flag(0) and not flag("off") and not flag(None)


def test_smtp_reply_table_is_total_and_single_line() -> None:
    assert set(SMTP_REPLY) == set(Kind)
    for kind, reply in SMTP_REPLY.items():
        code, enhanced = reply.split()
        assert code[0] == enhanced[0] and code[0] in "245", (kind, reply)
    line = smtp_reply(NotFound("no such\r\nuser\r\n250 OK"))
    assert line == "550 5.1.1 no such user 250 OK" and "\n" not in line
    assert smtp_reply(PortsideError()).startswith("451 4.3.0")


def test_forged_results_of_our_name_are_dropped_others_kept() -> None:
    raw = (
        b"Authentication-Results: mx.example.com;\r\n dkim=pass header.d=bank.com\r\n"
        b"Authentication-Results: other.example; spf=pass\r\nSubject: s\r\n\r\nbody\r\n"
    )
    out = checks.strip_forged_results(raw, "mx.example.com")
    assert out == b"Authentication-Results: other.example; spf=pass\r\nSubject: s\r\n\r\nbody\r\n"
    clean = b"Subject: s\r\n\r\nAuthentication-Results: mx.example.com; in the body\r\n"
    assert checks.strip_forged_results(clean, "mx.example.com") == clean


def test_header_from_domain_and_org_domain() -> None:
    assert checks.header_from_domain(b"From: A <a@Mail.Example.CO.UK>\r\n\r\n") == "mail.example.co.uk"
    assert checks.header_from_domain(b"From: a@x.org\r\nFrom: b@y.org\r\n\r\n") == ""  # two From: none
    assert checks.org_domain("mail.example.co.uk") == "example.co.uk"
    header = checks.authentication_results("mx.example.com", checks.Results(spf="pass", spf_domain="x.org"), "a@x.org")
    assert header.startswith(b"Authentication-Results: mx.example.com;\r\n\tspf=pass smtp.mailfrom=a@x.org")
    assert b"\r\n\r\n" not in header and header.endswith(b"\r\n")
