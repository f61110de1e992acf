"""The fast header paths of `mail.message.parse` give exactly what `policy.default`'s full parse gives.

Every value is written into a message, parsed once, and read both ways: the fast path (`_Fields`) and the
full parse (`_header`, `_address`, and the Date conversion `parse` used before the fast path existed).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
from email import policy
from email.parser import BytesParser

import pytest

from portside.mail import message

ADDRESSES = [
    "<sender@src.test>",
    "sender@src.test",
    "  <a.b.c@d.e.f>  ",
    "Alice Example <alice@example.com>",
    "Alice<alice@example.com>",
    "Alice  Example\t<alice@example.com>",
    "bounce+x=y@lists.example.org",
    "<weird!#$%&'*+/=?^_`{|}~-@x>",
    "a@b, c@d",
    '"Quoted, Name" <q@example.com>',
    "Name (comment) <n@example.com>",
    "n@example.com (comment)",
    "<a..b@example.com>",
    "<.a@example.com>",
    "a@",
    "@b",
    "<>",
    "",
    "   ",
    "undisclosed-recipients:;",
    "=?utf-8?q?J=C3=B6rg?= <j@example.com>",
    "J\u00f6rg <j@example.com>",
    "<a@[127.0.0.1]>",
    "John Q. Public <jqp@example.com>",
    "<a@b",
    "a@b>",
    "<<a@b>>",
    "x" * 1200 + "@example.com",
    "Alice\r\n Example <alice@example.com>",
    "<alice@example.com>\r\n\t",
    "Group: a@b, c@d;",
]
TEXTS = [
    "bench",
    "  padded  ",
    "Re: [list] a   b\tc",
    "=?utf-8?b?w6Q=?=",
    "a =? b",
    "folded\r\n line",
    "folded\r\n\tline",
    "caf\u00e9",
    "x" * 600,
    "",
    "(comment) text",
    'with "quotes" and \\ backslash',
]
MESSAGE_IDS = [
    "<46f4.0003.0000@vm>",
    "<CAF=abc+def@mail.gmail.com>",
    "  <a@b>  ",
    "<a@b> trailing",
    "<no-at-sign>",
    "a@b",
    "<a@[1.2.3.4]>",
    "<a b@c>",
    "<>",
    "",
    "<a@b>\r\n (comment)",
]
DATES = [
    "Sun,  6 Dec 2026 21:53:21 +0000 (UTC)",
    "Sun, 06 Dec 2026 21:53:21 +0100",
    "6 Dec 2026 21:53:21 -0000",
    "Sun, 6 Dec 26 21:53 EST",
    "Sun, 6 Dec 2026 21:53:21",
    "not a date",
    "",
    "Sun, 31 Feb 2026 10:00:00 +0000",
    "Sun, 6 Dec 2026 25:61:61 +0000",
    "Sun, 6 Dec 2026\r\n 21:53:21 +0000",
    "Sun, 6 Dec 99999 21:53:21 +0000",
    "Sun, 6 Dec 2026 21:53:21 +9999",
]


def _msg(name: str, value: str) -> message.Message:
    raw = f"{name}: {value}\r\nX-Other: y\r\n\r\nbody\r\n".encode("utf-8", "surrogateescape")
    return BytesParser(policy=policy.default).parsebytes(raw)


def _slow_date(msg: message.Message) -> dt.datetime | None:
    date_text = message._header(msg, "Date", 200)
    if not date_text:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(date_text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed.astimezone(dt.UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def _random_values(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    pieces = ["a", "Zb", "0", " ", "\t", "@", ".", "<", ">", ",", ";", ":", '"', "(", ")", "\\", "=", "?", "=?",
              "[", "]", "-", "+", "\u00e9", "\r\n ", "x.y", "@ex.com", "<u@h.io>", "Name "]  # fmt: skip
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 8))) for _ in range(n)]


def _random_addresses(seed: int, n: int) -> list[str]:
    """Near-plain addresses: most take the fast path, some are one character away from it."""
    rng = random.Random(seed)
    chars = "abcXYZ019.-+_=?!#$%&'*/^`{|}~" + '"(),;:<>@[] \t\\\u00e9'

    def word(pool: str) -> str:
        return "".join(rng.choice(pool) for _ in range(rng.randint(1, 6)))

    out = []
    for _ in range(n):
        pool = chars if rng.random() < 0.3 else chars[:29]
        spec = f"{word(pool)}@{word(pool)}"
        display = rng.choice(["", "", "Name ", "A b ", "A\tb", "x ", "(c) ", '"Q" ', "N.", "J\u00f6 "])
        form = rng.choice(["<{}>", "{}", "{} ", " <{}> "])
        out.append(
            display + form.format(spec) if "<" in form else (display if rng.random() < 0.2 else "") + form.format(spec)
        )
    return out


@pytest.mark.parametrize("value", ADDRESSES + _random_values(1, 100) + _random_addresses(5, 400))
@pytest.mark.parametrize("name", ["From", "To"])
def test_address_fast_path_matches_the_full_parse(name: str, value: str) -> None:
    msg = _msg(name, value)
    assert message._Fields(msg).address(name) == message._address(msg, name)


@pytest.mark.parametrize("value", TEXTS + _random_values(2, 150))
def test_subject_fast_path_matches_the_full_parse(value: str) -> None:
    msg = _msg("Subject", value)
    assert message._Fields(msg).text("Subject", 500) == message._header(msg, "Subject", 500)


@pytest.mark.parametrize("value", MESSAGE_IDS + _random_values(3, 150))
def test_message_id_fast_path_matches_the_full_parse(value: str) -> None:
    msg = _msg("Message-ID", value)
    assert message._Fields(msg).text("Message-ID", 500, message._MSG_ID) == message._header(msg, "Message-ID", 500)


@pytest.mark.parametrize("value", DATES + _random_values(4, 50))
def test_date_fast_path_matches_the_full_parse(value: str) -> None:
    msg = _msg("Date", value)
    assert message._Fields(msg).date() == _slow_date(msg)


def test_absent_fields_are_empty() -> None:
    fields = message._Fields(_msg("X-Only", "1"))
    assert fields.address("From") == "" and fields.text("Subject", 500) == "" and fields.date() is None


def test_fast_paths_are_taken_for_plain_mail() -> None:
    """The shapes smtp-source and most mailers write never reach the header registry."""
    raw = (
        b"From: Alice Example <alice@example.com>\r\nTo: <bob@example.com>\r\nSubject: hello\r\n"
        b"Date: Sun,  6 Dec 2026 21:53:21 +0000 (UTC)\r\nMessage-Id: <46f4.0003.0000@vm>\r\n\r\nhi\r\n"
    )
    calls: list[str] = []
    factory = policy.default.header_factory
    original = factory.__class__.__call__

    def counting(self: object, name: str, value: str) -> object:
        calls.append(name)
        return original(self, name, value)  # type: ignore[arg-type]

    factory.__class__.__call__ = counting  # type: ignore[method-assign]
    try:
        p = message.parse(raw)
    finally:
        factory.__class__.__call__ = original  # type: ignore[method-assign]
    assert (p.from_address, p.to_address, p.subject, p.message_id) == (
        "alice@example.com",
        "bob@example.com",
        "hello",
        "<46f4.0003.0000@vm>",
    )
    assert p.date == dt.datetime(2026, 12, 6, 21, 53, 21)
    assert not {c.lower() for c in calls} & {"from", "to", "subject", "date", "message-id"}, calls
