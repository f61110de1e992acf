"""Mailbox names: INBOX canonical, `/` the delimiter, names checked before they reach the store, LIST
patterns (`*` any text, `%` any text without `/`), and the modified UTF-7 of IMAP4rev1 (RFC 3501 §5.1.3).

Names are stored as Unicode text (what /api shows); a session speaks modified UTF-7 on the wire unless it
enabled IMAP4rev2, whose names are UTF-8 (RFC 9051 §5.1)."""

from __future__ import annotations

import re
from functools import lru_cache

from portside.imap.wire import ParseError
from portside.tools import mutf7

DELIMITER = "/"
INBOX = "INBOX"
MAX_NAME = 255  # characters
MAX_DEPTH = 16


def canonical(name: str) -> str:
    """INBOX in any case (also as the first level of a path) becomes `INBOX`."""
    head, sep, tail = name.partition(DELIMITER)
    if head.upper() == INBOX:
        return INBOX + sep + tail
    return name


def check(name: str) -> str:
    """A name a client may create or rename to; ParseError (BAD) for an unusable one."""
    name = canonical(name)
    if not name or len(name) > MAX_NAME:
        raise ParseError("invalid mailbox name length")
    if any(ord(c) < 0x20 or c == "\x7f" for c in name):
        raise ParseError("control character in mailbox name")
    if name.startswith(DELIMITER) or name.endswith(DELIMITER) or DELIMITER * 2 in name:
        raise ParseError("empty hierarchy level in mailbox name")
    if "*" in name or "%" in name:
        raise ParseError("wildcard in mailbox name")
    if any(level in (".", "..") for level in name.split(DELIMITER)):
        raise ParseError("invalid hierarchy level in mailbox name")
    if name.count(DELIMITER) >= MAX_DEPTH:
        raise ParseError("mailbox hierarchy too deep")
    return name


def parents(name: str) -> list[str]:
    """`a/b/c` -> [`a`, `a/b`]."""
    levels = name.split(DELIMITER)
    return [DELIMITER.join(levels[:i]) for i in range(1, len(levels))]


@lru_cache(maxsize=256)
def pattern(ref: str, mailbox: str) -> re.Pattern[str]:
    """The regular expression for LIST reference + mailbox pattern."""
    full = canonical(ref + mailbox) if not mailbox.startswith(DELIMITER) or not ref else canonical(mailbox)
    out = []
    for ch in full:
        out.append(".*" if ch == "*" else "[^/]*" if ch == "%" else re.escape(ch))
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def to_mutf7(name: str) -> str:
    """Unicode -> modified UTF-7 (`tools.mutf7`)."""
    return mutf7.encode(name)


def from_mutf7(name: str) -> str:
    """Modified UTF-7 -> Unicode; ParseError (BAD) for a malformed sequence. Text outside `&...-` passes as
    it is (a client that sends raw UTF-8 names is understood)."""
    try:
        return mutf7.decode(name)
    except mutf7.Malformed as exc:
        raise ParseError(str(exc)) from None
