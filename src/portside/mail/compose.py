"""Building outgoing messages: proper MIME (UTF-8, CRLF line ends, RFC 5322 dates), addresses checked.

`compose(...)` returns the raw bytes of a message with `From`, `To` (and `Cc`), `Subject`, `Date`,
`Message-ID`, `MIME-Version` and a body that is `text/plain`, `text/html`, or `multipart/alternative` when
both are given, wrapped in `multipart/mixed` when there are attachments. Header values are never inserted
raw: a line break in a subject or an address is refused (no header injection), non-ASCII text is encoded
(RFC 2047 in headers, UTF-8 quoted-printable or base64 in bodies).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import mimetypes
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from typing import Any

from portside.errors import BadRequest

MAX_ADDRESS = 254  # RFC 5321 path limit
MAX_SUBJECT = 998
MAX_ATTACHMENTS = 50
SMTP_POLICY = policy.SMTP.clone(max_line_length=78)


@dataclass(frozen=True)
class Attachment:
    name: str
    content_type: str
    data: bytes


def address(raw: Any, field: str) -> str:
    """One mailbox address (`local@domain`, an optional display name is dropped), lower-cased domain."""
    if not isinstance(raw, str) or not raw.strip():
        raise BadRequest(f"{field} must be an email address", pointer=f"/attributes/{field}")
    if any(c in raw for c in "\r\n\x00") or len(raw) > 2 * MAX_ADDRESS:
        raise BadRequest(f"{field} is not a valid email address", pointer=f"/attributes/{field}")
    pairs = email.utils.getaddresses([raw])
    if len(pairs) != 1:
        raise BadRequest(f"{field} must be one email address", pointer=f"/attributes/{field}")
    addr = pairs[0][1].strip()
    local, at, domain = addr.rpartition("@")
    bad = not at or not local or not domain or "." not in domain.strip(".") or len(addr) > MAX_ADDRESS
    if bad or any(c.isspace() or c in '<>(),;:"[]\\' for c in local + domain):
        raise BadRequest(f"{field} is not a valid email address: {raw[:80]!r}", pointer=f"/attributes/{field}")
    return f"{local}@{domain.lower().rstrip('.')}"


def addresses(raw: Any, field: str, limit: int) -> list[str]:
    """A list of addresses from a list of strings or one (comma-separated) string; duplicates dropped."""
    if raw is None or raw == "" or raw == []:
        return []
    items: list[Any]
    if isinstance(raw, str):
        if any(c in raw for c in "\r\n\x00"):
            raise BadRequest(f"{field} is not a valid address list", pointer=f"/attributes/{field}")
        items = [a for _, a in email.utils.getaddresses([raw]) if a] or [raw]
    elif isinstance(raw, list):
        items = raw
    else:
        raise BadRequest(f"{field} must be an address or a list of addresses", pointer=f"/attributes/{field}")
    if len(items) > limit:
        raise BadRequest(f"{field}: at most {limit} recipients", pointer=f"/attributes/{field}")
    out: list[str] = []
    seen: set[str] = set()
    for item in items:
        addr = address(item, field)
        if addr.lower() not in seen:
            seen.add(addr.lower())
            out.append(addr)
    return out


def domain_of(addr: str) -> str:
    return addr.rpartition("@")[2].lower()


def text_field(raw: Any, field: str, limit: int, *, single_line: bool = False) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise BadRequest(f"{field} must be text", pointer=f"/attributes/{field}")
    if single_line and any(c in raw for c in "\r\n\x00"):
        raise BadRequest(f"{field} must be one line", pointer=f"/attributes/{field}")
    if len(raw) > limit:
        raise BadRequest(f"{field} is too long (at most {limit} characters)", pointer=f"/attributes/{field}")
    return raw.replace("\x00", "")


def attachments(raw: Any, field: str, max_bytes: int) -> list[Attachment]:
    """Attachments in the file-column form: a list of `{name, file|contents, type}` with base64 (or a
    `data:` URL) content, as the API accepts for file columns."""
    if raw is None or raw == "" or raw == []:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_ATTACHMENTS:
        raise BadRequest(f"{field} must be a list of at most {MAX_ATTACHMENTS} files", pointer=f"/attributes/{field}")
    out: list[Attachment] = []
    total = 0
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest(f"{field}: each file needs a name", pointer=f"/attributes/{field}")
        name = item["name"].replace("\\", "/").rsplit("/", 1)[-1].strip()
        if not name or len(name) > 200 or any(ord(c) < 32 for c in name):
            raise BadRequest(f"{field}: invalid file name", pointer=f"/attributes/{field}")
        content = item.get("file") or item.get("contents") or ""
        ctype = item.get("type") if isinstance(item.get("type"), str) else ""
        if not isinstance(content, str):
            raise BadRequest(f"{field}: file content must be base64 text", pointer=f"/attributes/{field}")
        if content.startswith("data:") and "," in content:
            head, content = content.split(",", 1)
            ctype = ctype or head[5:].split(";", 1)[0]
        if len(content) > max_bytes * 4 // 3 + 4:
            raise BadRequest(f"{field}: attachments too large", pointer=f"/attributes/{field}")
        try:
            data = base64.b64decode("".join(content.split()), validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"{field}: file content is not valid base64", pointer=f"/attributes/{field}") from None
        total += len(data)
        if total > max_bytes:
            raise BadRequest(f"{field}: attachments too large", pointer=f"/attributes/{field}")
        ctype = (ctype or mimetypes.guess_type(name)[0] or "application/octet-stream").strip().lower()
        bad_type = ctype.count("/") != 1 or ctype.startswith(("multipart/", "message/"))
        if bad_type or any(c.isspace() or c in ';"\\' for c in ctype):
            ctype = "application/octet-stream"
        out.append(Attachment(name, ctype, data))
    return out


def _cte(text: str) -> str:
    """7bit for short ASCII lines, else quoted-printable (no 8-bit data on the wire)."""
    if text.isascii() and all(len(line) <= 900 for line in text.splitlines()):
        return "7bit"
    return "quoted-printable"


def message_id(domain: str) -> str:
    return f"<{uuid.uuid4()}@{domain}>"


def compose(
    *,
    sender: str,
    to: Sequence[str],
    subject: str = "",
    text: str | None = None,
    html: str | None = None,
    cc: Sequence[str] = (),
    reply_to: str = "",
    files: Sequence[Attachment] = (),
    date: dt.datetime | None = None,
    msgid: str = "",
) -> bytes:
    """The raw bytes (CRLF) of a new message."""
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = sender
    if to:
        msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    if reply_to:
        msg["Reply-To"] = reply_to
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(date or dt.datetime.now(dt.UTC))
    msg["Message-ID"] = msgid or message_id(domain_of(sender))
    msg["MIME-Version"] = "1.0"
    if html is not None and text is None:
        msg.set_content(html, subtype="html", charset="utf-8", cte=_cte(html))
    else:
        msg.set_content(text or "", charset="utf-8", cte=_cte(text or ""))
        if html is not None:
            msg.add_alternative(html, subtype="html", charset="utf-8", cte=_cte(html))
    for f in files:
        maintype, _, subtype = f.content_type.partition("/")
        msg.add_attachment(f.data, maintype=maintype, subtype=subtype, filename=f.name)
    return msg.as_bytes(policy=SMTP_POLICY)
