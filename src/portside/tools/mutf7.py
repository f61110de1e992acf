"""Modified UTF-7 (RFC 3501 §5.1.3), the mailbox name encoding of IMAP4rev1: printable US-ASCII stands for
itself (`&` is written `&-`), any run of other characters is `&` + modified base64 (`,` for `/`, no padding)
of its UTF-16BE + `-`."""

from __future__ import annotations

import base64
import re

_B64 = re.compile(r"[A-Za-z0-9+,]+")


class Malformed(ValueError):
    """Text that is not valid modified UTF-7."""


def encode(name: str) -> str:
    """Unicode -> modified UTF-7."""
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


def decode(name: str) -> str:
    """Modified UTF-7 -> Unicode; Malformed for a bad `&...-` sequence. Text outside `&...-` passes as it is
    (a client that sends raw UTF-8 names is understood)."""
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
            raise Malformed("invalid modified UTF-7 in mailbox name")
        chunk = name[amp + 1 : end]
        if not chunk:
            out.append("&")
        else:
            out.append(_decode_run(chunk))
        i = end + 1
    return "".join(out)


def _decode_run(chunk: str) -> str:
    if not _B64.fullmatch(chunk) or len(chunk) % 4 == 1:
        raise Malformed("invalid modified UTF-7 in mailbox name")
    try:
        raw = base64.b64decode(chunk.replace(",", "/") + "=" * (-len(chunk) % 4), validate=True)
        text = raw.decode("utf-16-be")
    except (ValueError, UnicodeDecodeError):
        raise Malformed("invalid modified UTF-7 in mailbox name") from None
    if len(raw) % 2 or any(" " <= ch <= "~" for ch in text):  # printable ASCII is never encoded
        raise Malformed("invalid modified UTF-7 in mailbox name")
    return text
