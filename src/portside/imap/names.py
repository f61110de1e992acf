"""Mailbox names: INBOX canonical, `/` the delimiter, names checked before they reach the store, LIST
patterns (`*` any text, `%` any text without `/`), and the modified UTF-7 of IMAP4rev1 (RFC 3501 §5.1.3).

Names are stored as Unicode text (what /api shows); a session speaks modified UTF-7 on the wire unless it
enabled IMAP4rev2, whose names are UTF-8 (RFC 9051 §5.1)."""

from __future__ import annotations

import base64
import re
from functools import lru_cache

from portside.imap.wire import ParseError

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


_B64 = re.compile(r"[A-Za-z0-9+,]+")


def to_mutf7(name: str) -> str:
    """Unicode -> modified UTF-7: printable ASCII stays (`&` becomes `&-`), runs of anything else become
    `&` + base64 (`,` for `/`, no padding) of their UTF-16BE + `-`."""
    if name.isascii() and "&" not in name and name.isprintable():
        return name
    out: list[str] = []
    run: list[str] = []

    def close_run() -> None:
        if run:
            coded = base64.b64encode("".join(run).encode("utf-16-be")).decode("ascii").rstrip("=")
            out.append("&" + coded.replace("/", ",") + "-")
            run.clear()

    for ch in name:
        if " " <= ch <= "~":
            close_run()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    close_run()
    return "".join(out)


def from_mutf7(name: str) -> str:
    """Modified UTF-7 -> Unicode; ParseError (BAD) for a malformed sequence. Text outside `&...-` passes as
    it is (a client that sends raw UTF-8 names is understood)."""
    if "&" not in name:
        return name
    out: list[str] = []
    i = 0
    while i < len(name):
        amp = name.find("&", i)
        if amp < 0:
            out.append(name[i:])
            break
        out.append(name[i:amp])
        end = name.find("-", amp + 1)
        if end < 0:
            raise ParseError("invalid modified UTF-7 in mailbox name")
        chunk = name[amp + 1 : end]
        if not chunk:
            out.append("&")
        else:
            out.append(_decode_run(chunk))
        i = end + 1
    return "".join(out)


def _decode_run(chunk: str) -> str:
    if not _B64.fullmatch(chunk) or len(chunk) % 4 == 1:
        raise ParseError("invalid modified UTF-7 in mailbox name")
    try:
        raw = base64.b64decode(chunk.replace(",", "/") + "=" * (-len(chunk) % 4), validate=True)
        text = raw.decode("utf-16-be")
    except (ValueError, UnicodeDecodeError):
        raise ParseError("invalid modified UTF-7 in mailbox name") from None
    if len(raw) % 2 or any(" " <= ch <= "~" for ch in text):  # printable ASCII is never encoded
        raise ParseError("invalid modified UTF-7 in mailbox name")
    return text
