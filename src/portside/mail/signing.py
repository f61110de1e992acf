"""DKIM signing of outgoing mail (spec §C.2) and the DNS record that goes with the key.

d= is the sender's domain, s= the selector (config `mail.dkim_selector`, default `d1`), the key the private
key of the `certificate` row whose hostname is that domain (the caller finds it), a=rsa-sha256,
c=relaxed/relaxed, h= every header field present in the message (each name once, no over-signing), t= the
signing time; no x=, no l=.
"""

from __future__ import annotations

import base64
import re
from typing import Protocol

import dkim
from cryptography.hazmat.primitives import serialization

DEFAULT_SELECTOR = "d1"
_SELECTOR_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})*$")


class SigningError(ValueError):
    """The key or the message cannot be signed."""


class KeySource(Protocol):
    """Where a sender domain's DKIM key comes from (actions.mail_send.DkimKeys: the domain's certificate)."""

    async def signing_key(self, domain: str) -> str | None: ...


def selector(configured: str | None) -> str:
    value = (configured or "").strip() or DEFAULT_SELECTOR
    if len(value) > 63 or not _SELECTOR_RE.match(value):
        raise SigningError(f"mail.dkim_selector {value[:70]!r} is not a DNS label")
    return value


def header_names(raw: bytes) -> list[bytes]:
    """The distinct header field names of a message, in order (lower-cased)."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    names: list[bytes] = []
    for line in head.split(b"\r\n"):
        if not line or line[:1] in (b" ", b"\t") or b":" not in line:
            continue
        name = line.split(b":", 1)[0].strip().lower()
        if name and name != b"dkim-signature" and name not in names:
            names.append(name)
    return names


def sign(raw: bytes, domain: str, key_pem: str, sel: str = DEFAULT_SELECTOR) -> bytes:
    """`raw` with a `DKIM-Signature` field in front."""
    try:
        signature = dkim.sign(
            raw,
            sel.encode("ascii"),
            domain.encode("idna"),
            key_pem.encode("ascii"),
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=header_names(raw),
            linesep=b"\r\n",
        )
    except (dkim.DKIMException, UnicodeError, ValueError) as exc:
        raise SigningError(f"DKIM signing failed: {type(exc).__name__}") from None
    return bytes(signature) + raw


def sign_as(raw: bytes, domain: str, key_pem: str, configured_selector: str | None) -> bytes:
    """`sign` with the selector of config `mail.dkim_selector` (the one signing path of mail.send and of
    SMTP submission relayed through the outbox)."""
    return sign(raw, domain, key_pem, selector(configured_selector))


def dns_record(domain: str, public_key_pem: str, sel: str = DEFAULT_SELECTOR) -> dict[str, str]:
    """The TXT record to publish for a key: `{name, type, value}`."""
    try:
        key = serialization.load_pem_public_key(public_key_pem.encode("ascii"))
        der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, TypeError, UnicodeError):
        raise SigningError("the certificate row has no readable public key") from None
    p = base64.b64encode(der).decode("ascii")
    return {"name": f"{sel}._domainkey.{domain}", "type": "TXT", "value": f"v=DKIM1; k=rsa; p={p}"}
