"""The MAIL/RCPT address fast path (`PortsideSMTP._getaddr`) answers exactly as aiosmtpd's parser does."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from aiosmtpd.smtp import SMTP

from portside.smtp.protocol import PortsideSMTP

CASES = [
    "<sender@src.test>",
    "<sender@src.test> SIZE=100",
    "<a.b+c@x.y>  BODY=8BITMIME SIZE=3",
    "<a@b>\t\tX=1",
    " <a@b>",
    "<a@b> ",
    "<a@b> (comment) X=1",
    "<a@b>X=1",
    "<>",
    "<> SIZE=10",
    '<"quoted local"@x.org>',
    "<@relay.org:a@b.org>",
    "<a..b@c>",
    "<.a@b>",
    "<a@b.>",
    "a@b",
    "<a b@c>",
    "<",
    "",
    "<" + "l" * 65 + "@example.com>",
    "<" + "l" * 64 + "@example.com>",
    "<O'Brien+tag@EXAMPLE.com> BODY=7BIT",
]


def make(limit: int) -> PortsideSMTP:
    proto = PortsideSMTP.__new__(PortsideSMTP)
    proto.local_part_limit = limit
    return proto


@pytest.mark.parametrize("limit", [0, 64])
@pytest.mark.parametrize("arg", CASES)
def test_same_answer_as_aiosmtpd(arg: str, limit: int) -> None:
    proto = make(limit)
    assert outcome(proto._getaddr, arg) == outcome(lambda a: SMTP._getaddr(proto, a), arg)


def outcome(parse: Callable[[str], object], arg: str) -> object:
    try:
        return parse(arg)
    except Exception as exc:  # aiosmtpd's parser raises on some input ("<"): the same error either way
        return type(exc)


def test_the_long_local_part_is_refused_with_a_limit() -> None:
    assert make(64)._getaddr("<" + "l" * 65 + "@example.com>") == (None, None)
    assert make(0)._getaddr("<" + "l" * 65 + "@example.com>")[0] == "l" * 65 + "@example.com"
