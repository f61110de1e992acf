"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3): the RFC's own example, round trips, and refusals."""

from __future__ import annotations

import pytest

from portside.imap.names import from_mutf7, to_mutf7
from portside.imap.wire import ParseError


def test_the_rfc_example() -> None:
    assert to_mutf7("~peter/mail/台北/日本語") == "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    assert from_mutf7("~peter/mail/&U,BTFw-/&ZeVnLIqe-") == "~peter/mail/台北/日本語"


@pytest.mark.parametrize(
    "name", ["INBOX", "Entwürfe", "a&b", "&", "Ünïcödé & more", "emoji 📬 box", "ÿ", "日本語", "x/y&z/ä-ö"]
)
def test_round_trip(name: str) -> None:
    coded = to_mutf7(name)
    assert coded.isascii() and all(" " <= c <= "~" for c in coded)
    assert from_mutf7(coded) == name


def test_ampersand_and_plain_names() -> None:
    assert to_mutf7("Tom & Jerry") == "Tom &- Jerry"
    assert from_mutf7("Tom &- Jerry") == "Tom & Jerry"
    assert to_mutf7("Sent") == "Sent" and from_mutf7("Sent") == "Sent"
    assert from_mutf7("Käse") == "Käse"  # a client sending raw UTF-8 is understood


@pytest.mark.parametrize("bad", ["&Jjo", "a&AGE-", "&!!-", "&A-", "&AAAA-", "&2AA-"])
def test_malformed_is_refused(bad: str) -> None:
    with pytest.raises(ParseError):
        from_mutf7(bad)
