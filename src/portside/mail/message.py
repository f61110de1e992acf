"""Raw messages: byte-exact storage forms, and the row fields parsed from a message.

Stored forms of the raw message in a `gzip` column (`mail.mail`, `outbox.mail`), told apart by their first
characters (base64 has no `:` and a JSON array starts with `[`):

- `ps1:gz:<base64 of gzip(raw)>` - Portside, compressed (chosen when it saves at least an eighth);
- `ps1:raw:<base64 of raw>` - Portside, uncompressed;
- `<base64 of raw>` - Daptin's default form (the `gzip` type never compressed);
- `[{"name": ..., "contents": <base64>, ...}]` - Daptin's asset form with the contents inlined.

`decode(encode(raw)) == raw` for every byte string: nothing is normalised (line endings, 8-bit bytes and
trailing white space stay as received).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import gzip
import hashlib
import re
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any

from portside.tools import jsonutil

GZ = "ps1:gz:"
RAW = "ps1:raw:"
COMPRESS_FROM = 512  # bytes: smaller messages are stored as they are
BODY_LIMIT = 64 * 1024  # characters of the text body kept on the row (the raw message keeps everything)


class StoredFormError(ValueError):
    """A stored raw message in none of the known forms."""


def encode(raw: bytes) -> str:
    """The stored form of a raw message (see the module text)."""
    if len(raw) >= COMPRESS_FROM:
        packed = gzip.compress(raw, compresslevel=6, mtime=0)
        if len(packed) <= len(raw) - len(raw) // 8:
            return GZ + base64.b64encode(packed).decode("ascii")
    return RAW + base64.b64encode(raw).decode("ascii")


def decode(stored: str | bytes | None) -> bytes:
    """The raw message bytes of any stored form (StoredFormError when it is none of them)."""
    if stored is None:
        raise StoredFormError("no message stored")
    text = stored.decode("latin-1") if isinstance(stored, bytes) else stored
    try:
        if text.startswith(GZ):
            return gzip.decompress(base64.b64decode(text[len(GZ) :], validate=True))
        if text.startswith(RAW):
            return base64.b64decode(text[len(RAW) :], validate=True)
        if text.lstrip().startswith("["):
            return _daptin_asset(text)
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, OSError, EOFError, ValueError) as exc:
        if isinstance(exc, StoredFormError):
            raise
        raise StoredFormError(f"stored message is not readable: {type(exc).__name__}") from None


def _daptin_asset(text: str) -> bytes:
    try:
        items = jsonutil.loads(text)
    except jsonutil.JSONError:
        raise StoredFormError("stored message is not valid JSON") from None
    if not isinstance(items, list) or not items or not isinstance(items[0], dict):
        raise StoredFormError("stored message list is empty")
    contents = items[0].get("contents") or items[0].get("file")
    if not isinstance(contents, str):
        raise StoredFormError("stored message lives in a cloud store (contents not inlined)")
    if contents.startswith("data:") and "," in contents:
        contents = contents.split(",", 1)[1]
    return base64.b64decode("".join(contents.split()), validate=True)


@dataclass
class Parsed:
    """Row fields of a message (spec §A.5), every one bounded to its column."""

    message_id: str
    from_address: str
    to_address: str
    reply_to_address: str
    sender_address: str
    subject: str
    body: str
    content_type: str
    has_attachment: bool
    date: dt.datetime | None
    hash: str

    def columns(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "from_address": self.from_address,
            "to_address": self.to_address,
            "reply_to_address": self.reply_to_address,
            "sender_address": self.sender_address,
            "subject": self.subject,
            "body": self.body,
            "content_type": self.content_type,
            "has_attachment": self.has_attachment,
            "hash": self.hash,
            "mail_id": self.hash,
        }


def _clip(value: Any, limit: int) -> str:
    text = "" if value is None else str(value)
    text = text.replace("\x00", "")
    return text[:limit]


def _header(msg: Message, name: str, limit: int) -> str:
    """The field's value as `policy.default` renders it (decoded), clipped; '' when absent or malformed."""
    try:
        value = msg.get(name)
        return _clip(value, limit).strip()
    except Exception:  # a malformed header is kept out of the row, never fatal (the raw keeps it)
        return ""


def _address(msg: Message, name: str) -> str:
    raw = _header(msg, name, 2000)
    if not raw:
        return ""
    pairs = email.utils.getaddresses([raw])
    addrs = [a for _, a in pairs if a]
    return _clip(", ".join(addrs), 200)


# Fast paths. `policy.default` builds a parse tree for every field read (~0.15 ms for an address or a date,
# most of a small message's parse). For the common plain forms below the result is known without it: the
# unfolded value is printable ASCII without encoded words ("=?"), so nothing is decoded, and its shape is one
# the parser renders as it is (tests/unit/test_mail_headers.py compares both ways). Anything else takes the
# full parse (`_header`, `_address`).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATEXT}(?:\.{_ATEXT})*"
_ADDR_SPEC = rf"{_DOT_ATOM}@{_DOT_ATOM}"
_ONE_ADDRESS = re.compile(
    rf"[ \t]*(?:(?:[A-Za-z0-9]+[ \t]+)*(?:[A-Za-z0-9]+[ \t]*)?<({_ADDR_SPEC})>|({_ADDR_SPEC}))[ \t]*"
)
_MSG_ID = re.compile(rf"[ \t]*<{_ADDR_SPEC}>[ \t]*")
_PRINTABLE = re.compile(r"[\x20-\x7e\t]*")
_LINESEP = re.compile(r"\r|\n")
PLAIN_MAX = 998  # longer values take the full parse


class _Fields:
    """Header values of one parsed message: the first field of each name, as `Message.get` finds it."""

    def __init__(self, msg: Message):
        self.msg = msg
        self.raw: dict[str, Any] = {}
        for name, value in msg.raw_items():
            self.raw.setdefault(name.lower(), value)

    def plain(self, name: str) -> str | None:
        """The unfolded value when it needs no decoding ('' when absent); None: take the full parse."""
        value = self.raw.get(name.lower(), "")
        if not isinstance(value, str):
            return None
        text = _LINESEP.sub("", value)
        if len(text) > PLAIN_MAX or "=?" in text or not _PRINTABLE.fullmatch(text):
            return None
        return text

    def text(self, name: str, limit: int, shape: re.Pattern[str] | None = None) -> str:
        """`_header(msg, name, limit)` for an unstructured field (Subject) or one of `shape` (Message-ID)."""
        plain = self.plain(name)
        if plain is not None and (shape is None or not plain or shape.fullmatch(plain)):
            return plain[:limit].strip()
        return _header(self.msg, name, limit)

    def address(self, name: str) -> str:
        """`_address(msg, name)`."""
        plain = self.plain(name)
        if plain is not None:
            if not plain.strip(" \t"):
                return ""
            m = _ONE_ADDRESS.fullmatch(plain)
            if m:
                return (m.group(1) or m.group(2))[:200]
        return _address(self.msg, name)

    def date(self) -> dt.datetime | None:
        """The Date field as a datetime (naive UTC when it has a zone), None when absent or unreadable."""
        plain = self.plain("Date")
        date_text = ""
        if plain is not None and len(plain) <= 200:
            date_text = plain.strip()
            if not date_text:
                return None
            try:
                parsed = email.utils.parsedate_to_datetime(date_text)
            except (TypeError, ValueError, IndexError, OverflowError):
                parsed = None
            if parsed is not None:
                return parsed.astimezone(dt.UTC).replace(tzinfo=None) if parsed.tzinfo else parsed
        date_text = _header(self.msg, "Date", 200)
        if not date_text:
            return None
        try:
            parsed = email.utils.parsedate_to_datetime(date_text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        return parsed.astimezone(dt.UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def parse(raw: bytes) -> Parsed:
    """The row fields of a raw message; never raises for malformed mail (fields are then empty)."""
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    body = ""
    attachment = False
    if isinstance(msg, EmailMessage):
        try:
            part = msg.get_body(preferencelist=("plain",))
            if part is not None:
                content = part.get_content()
                body = content if isinstance(content, str) else ""
        except Exception:
            body = ""
        try:
            attachment = any(True for _ in msg.iter_attachments()) if msg.is_multipart() else False
        except Exception:
            attachment = False
    fields = _Fields(msg)
    return Parsed(
        message_id=fields.text("Message-ID", 500, _MSG_ID),
        from_address=fields.address("From"),
        to_address=fields.address("To"),
        reply_to_address=fields.address("Reply-To"),
        sender_address=fields.address("Sender"),
        subject=fields.text("Subject", 500),
        body=_clip(body, BODY_LIMIT),
        content_type=_header(msg, "Content-Type", 1000),
        has_attachment=attachment,
        date=fields.date(),
        hash=hashlib.sha256(raw).hexdigest()[:32],
    )
