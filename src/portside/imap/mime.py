"""A message as IMAP sees it: ENVELOPE, BODYSTRUCTURE, body sections and BINARY, from the raw bytes.

Headers, content types, parameters (RFC 2231 included) and transfer decoding come from Python's `email`
package (compat32 policy, so header values stay as sent, as ENVELOPE requires). The only byte work done
here is cutting an entity at its blank line and a multipart body at the boundary `email` reports, because
IMAP sections must be the exact bytes that were stored.
"""

from __future__ import annotations

import base64
import binascii
import email.header
import email.message
import email.parser
import email.policy
import email.utils
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from portside.imap.response import Raw, encode

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_PARSER = email.parser.BytesParser(policy=email.policy.compat32)
MAX_DEPTH = 20


def split_header(raw: bytes) -> tuple[bytes, bytes]:
    """(header including the blank line, body). A message without a blank line is all header."""
    if raw.startswith(b"\r\n") or raw.startswith(b"\n"):
        n = 2 if raw.startswith(b"\r\n") else 1
        return raw[:n], raw[n:]
    m = _HEADER_END.search(raw)
    if m is None:
        return raw, b""
    return raw[: m.end()], raw[m.end() :]


@dataclass
class Entity:
    raw: bytes
    depth: int = 0
    default_type: str = "text/plain"
    _children: list[Entity] | None = field(default=None, repr=False)

    @cached_property
    def parts(self) -> tuple[bytes, bytes]:
        return split_header(self.raw)

    @property
    def header(self) -> bytes:
        return self.parts[0]

    @property
    def body(self) -> bytes:
        return self.parts[1]

    @cached_property
    def headers(self) -> email.message.Message:
        msg = _PARSER.parsebytes(self.header, headersonly=True)
        if self.default_type != "text/plain":
            msg.set_default_type(self.default_type)
        return msg

    @property
    def content_type(self) -> str:
        return self.headers.get_content_type()

    @property
    def is_multipart(self) -> bool:
        return self.content_type.startswith("multipart/") and self.headers.get_boundary() is not None

    @property
    def is_message(self) -> bool:
        return self.content_type in ("message/rfc822", "message/global")

    @property
    def children(self) -> list[Entity]:
        if self._children is None:
            self._children = self._split()
        return self._children

    def _split(self) -> list[Entity]:
        if self.depth >= MAX_DEPTH:
            return []
        if self.is_message:
            return [Entity(self.body, self.depth + 1)]
        if not self.is_multipart:
            return []
        boundary = self.headers.get_boundary()
        assert boundary is not None
        boundary = re.sub(r"\r?\n", "", boundary)  # a folded parameter value
        child_default = "message/rfc822" if self.content_type == "multipart/digest" else "text/plain"
        delim = re.compile(
            rb"(?:\A|\r?\n)--" + re.escape(boundary.encode("utf-8", "surrogateescape")) + rb"(--)?[ \t]*(?:\r?\n|\Z)"
        )
        out: list[Entity] = []
        start: int | None = None
        for m in delim.finditer(self.body):
            if start is not None:
                out.append(Entity(self.body[start : m.start()], self.depth + 1, child_default))
            if m.group(1):
                start = None
                break
            start = m.end()
        if start is not None:  # no closing delimiter: the last part runs to the end
            out.append(Entity(self.body[start:], self.depth + 1, child_default))
        return out

    def part(self, path: list[int]) -> Entity | None:
        """The entity at a section part path (`1.2.3`); None when it does not exist."""
        node: Entity = self
        for i, n in enumerate(path):
            if i and node.is_message:  # a message part: its subparts are those of the message it holds
                node = node.children[0]
            if node.is_multipart:
                kids = node.children
                if not 1 <= n <= len(kids):
                    return None
                node = kids[n - 1]
            elif n != 1:
                return None
            # part 1 of a non-multipart entity is the entity itself
        return node

    def decoded(self) -> bytes | None:
        """The body with its transfer encoding removed (BINARY); None for an unknown encoding."""
        cte = (self.headers.get("Content-Transfer-Encoding") or "7bit").strip().lower()
        if cte in ("7bit", "8bit", "binary", ""):
            return self.body
        if cte == "quoted-printable":  # trailing blanks on a line are not data (RFC 2045 §6.7 (3))
            return binascii.a2b_qp(re.sub(rb"[ \t]+(?=\r?\n|\Z)", b"", self.body))
        if cte != "base64":
            return None
        msg = email.message.Message()
        msg["Content-Transfer-Encoding"] = cte
        msg.set_payload(self.body.decode("ascii", "surrogateescape"))
        data = msg.get_payload(decode=True)
        return data if isinstance(data, bytes) else b""

    def text(self) -> str:
        """The decoded text of every text part (SEARCH BODY/TEXT)."""
        if self.is_multipart:
            return "\n".join(c.text() for c in self.children)
        if self.is_message:
            kid = self.children[0]
            return kid.header_text() + "\n" + kid.text()
        if not self.content_type.startswith("text/"):
            return ""
        data = self.decoded()
        if data is None:
            data = self.body
        charset = self.headers.get_content_charset() or "utf-8"
        try:
            return data.decode(charset, "replace")
        except LookupError:
            return data.decode("utf-8", "replace")

    def header_values(self, name: str) -> list[str]:
        return [decode_words(v) for v in self.headers.get_all(name, [])]

    def all_text(self) -> str:
        """Every header (of every part) and every text body, decoded (SEARCH TEXT)."""
        out = [self.header_text()]
        if self.is_multipart:
            out += [c.all_text() for c in self.children]
        elif self.is_message:
            out.append(self.children[0].all_text())
        else:
            out.append(self.text())
        return "\n".join(out)

    def header_text(self) -> str:
        return "\n".join(f"{k}: {decode_words(v)}" for k, v in self.headers.items())


def decode_words(value: Any) -> str:
    """A header value with RFC 2047 encoded words decoded (for searching)."""
    text = value if isinstance(value, str) else str(value)
    try:
        return str(email.header.make_header(email.header.decode_header(text)))  # type: ignore[arg-type]
    except Exception:
        return text


def header_fields(header: bytes, names: list[str], *, exclude: bool) -> bytes:
    """HEADER.FIELDS / HEADER.FIELDS.NOT: the matching header lines (continuations kept) and a blank line."""
    wanted = {n.lower() for n in names}
    out: list[bytes] = []
    keep = False
    for line in header.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t"):
            if keep:
                out.append(line)
            continue
        name = line.split(b":", 1)[0].strip().decode("ascii", "replace").lower()
        keep = (name in wanted) != exclude
        if keep:
            out.append(line)
    return b"".join(out) + b"\r\n"


# -- ENVELOPE and BODYSTRUCTURE ------------------------------------------------------------------------------


def _nstring(value: str | None) -> str | None:
    return value if value else None


_ROUTE = re.compile(r"<\s*(@[^:<>]+):\s*([^<>\s]+)\s*>")


def _address(display: str | None, addr: str, routes: dict[str, str] | None = None) -> list[Any]:
    local, _, domain = addr.rpartition("@") if "@" in addr else (addr, "", "")
    adl = (routes or {}).get(addr.lower())  # an obsolete source route (`<@relay:user@host>`)
    return [_nstring(display), adl, _nstring(local), _nstring(domain)]


def _addresses(entity: Entity, name: str) -> Raw | None:
    found = _address_list(entity, name)
    return Raw(b"(" + b"".join(encode(a) for a in found) + b")") if found else None


def _address_list(entity: Entity, name: str) -> list[Any] | None:
    values = entity.headers.get_all(name)
    if not values:
        return None
    joined = ", ".join(str(v) for v in values)
    out: list[Any] = []
    if ":" in joined and ";" in joined:  # group syntax: RFC 3501 group start/end markers
        try:
            header: Any = email.policy.default.header_factory(name, joined)
            groups = header.groups
        except Exception:
            groups = None
        if groups and any(g.display_name is not None for g in groups):
            for g in groups:
                if g.display_name is not None:
                    out.append([None, None, g.display_name, None])
                out += [_address(a.display_name, a.addr_spec) for a in g.addresses]
                if g.display_name is not None:
                    out.append([None, None, None, None])
            return out or None
    routes = {m.group(2).lower(): m.group(1) for m in _ROUTE.finditer(joined)} if "<@" in joined else None
    for display, addr in email.utils.getaddresses([str(v) for v in values]):
        if not addr and not display:
            continue
        out.append(_address(display, addr, routes))
    return out or None


def address_text(entity: Entity, name: str) -> str:
    """The addresses of a header as `name <local@domain>` lines (SEARCH FROM/TO/CC/BCC)."""
    values = entity.headers.get_all(name) or []
    found = email.utils.getaddresses([str(v) for v in values])
    return "\n".join(f"{decode_words(d)} <{a}>" for d, a in found)


def envelope(entity: Entity) -> list[Any]:
    h = entity.headers

    def one(name: str) -> str | None:
        value = h.get(name)
        return _nstring(str(value).strip()) if value is not None else None

    frm = _addresses(entity, "From")
    return [  # an address list is `(` 1*address `)`: no spaces between addresses (RFC 3501 §9)
        one("Date"),
        one("Subject"),
        frm,
        _addresses(entity, "Sender") or frm,
        _addresses(entity, "Reply-To") or frm,
        _addresses(entity, "To"),
        _addresses(entity, "Cc"),
        _addresses(entity, "Bcc"),
        one("In-Reply-To"),
        one("Message-ID"),
    ]


def _params(msg: email.message.Message, header: str) -> list[str] | None:
    params = msg.get_params(header=header)
    if not params:
        return None
    out: list[str] = []
    for key, value in params[1:]:
        text = email.utils.collapse_rfc2231_value(value) if isinstance(value, tuple) else str(value)
        out += [key.upper() if key else key, text]
    return out or None


def _disposition(msg: email.message.Message) -> list[Any] | None:
    value = msg.get("Content-Disposition")
    if value is None:
        return None
    kind = str(value).split(";", 1)[0].strip()
    return [kind, _params(msg, "content-disposition")] if kind else None


def _language(msg: email.message.Message) -> list[str] | None:
    value = msg.get("Content-Language")
    if value is None:
        return None
    langs = [v.strip() for v in str(value).split(",") if v.strip()]
    return langs or None


def _lines(data: bytes) -> int:
    return data.count(b"\n")  # line ends, as Dovecot counts (a last line without one is not counted)


def bodystructure(entity: Entity, *, extended: bool = True) -> list[Any]:
    h = entity.headers
    if entity.is_multipart:
        kids = [bodystructure(c, extended=extended) for c in entity.children] or [
            bodystructure(Entity(b"\r\n", entity.depth + 1), extended=extended)
        ]
        out: list[Any] = [*kids, entity.content_type.split("/", 1)[1]]
        if extended:
            out += [_params(h, "content-type"), _disposition(h), _language(h), _nstring(h.get("Content-Location"))]
        return [Raw(b"".join(encode(k) for k in kids) + b" " + b" ".join(encode(v) for v in out[len(kids) :]))]
    maintype, _, subtype = entity.content_type.partition("/")
    params = _params(h, "content-type")
    if params is None and maintype == "text":
        params = ["CHARSET", "us-ascii"]
    cte = str(h.get("Content-Transfer-Encoding") or "7bit").strip() or "7bit"
    body = entity.body
    out = [
        maintype,
        subtype,
        params,
        _nstring(str(h.get("Content-ID") or "").strip()),
        _nstring(str(h.get("Content-Description") or "").strip()),
        cte,
        len(body),
    ]
    if entity.is_message:
        inner = entity.children[0]
        out += [envelope(inner), bodystructure(inner, extended=extended), _lines(body)]
    elif maintype == "text":
        out.append(_lines(body))
    if extended:
        out += [
            _nstring(str(h.get("Content-MD5") or "").strip()),
            _disposition(h),
            _language(h),
            _nstring(str(h.get("Content-Location") or "").strip()),
        ]
    return out


def structure_bytes(entity: Entity, *, extended: bool = True) -> bytes:
    """BODYSTRUCTURE (or BODY without extension data) as wire bytes."""
    return encode(bodystructure(entity, extended=extended))


def without_nul(raw: bytes) -> bytes:
    """A message APPENDed as a binary literal (RFC 3516) whose parts hold NUL bytes: those parts are
    re-encoded as base64, so BODY[...] stays 8-bit text and BINARY[...] still returns the original bytes."""
    if b"\x00" not in raw:
        return raw
    msg = _PARSER.parsebytes(raw)
    for part in msg.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or b"\x00" not in payload:
            continue
        del part["Content-Transfer-Encoding"]
        part["Content-Transfer-Encoding"] = "base64"
        part.set_payload(base64.encodebytes(payload).decode("ascii").replace("\n", "\r\n"))
    return msg.as_bytes(policy=email.policy.compat32.clone(linesep="\r\n"))
