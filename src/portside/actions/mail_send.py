"""Sending mail: the `mail.send` performer (also `POST /action/world/mail.send`), `process_outbox`, and the
DKIM DNS record of a certificate row.

mail.send (spec §C.1, done the better way, H #9): the caller must own the mail account of `from`
(administrators: any, decided by `auth.access.may_send_as`); the message is proper MIME (mail.compose);
it is DKIM-signed with the key of the `certificate` row whose hostname is the sender's domain when there is
one (spec §C.2; unsigned otherwise); one signed copy goes into the sender's Sent mailbox and one outbox row
per recipient (To, Cc and Bcc; Bcc never appears in the header) - all in the action's transaction, so the
courier starts delivering right after the commit. Parameters: from, to, cc, bcc, subject, body (or text),
html, attachments (file-column form), reply_to, mail_server_hostname (else config
`mail.default_server_hostname`; one of them is required, Daptin's error text).
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from portside.actions.registry import ActionContext, Response, notify, performers, response
from portside.actions.services import Services
from portside.auth import access
from portside.auth.permissions import READ
from portside.core import masks
from portside.core.db import UnitOfWork
from portside.core.schema import SchemaDoc, parse_document
from portside.errors import BadRequest, Forbidden, NotFound
from portside.mail import boxes, compose, outbox, signing
from portside.mail.boxes import Account
from portside.mail.store import MailStore
from portside.tools import crypto

SIGNED_IN = masks.combine(masks.AUTH_EXECUTE, masks.guest(masks.PEEK))
MAX_BODY = 5 * 1024 * 1024
DEFAULT_MAX_RECIPIENTS = 10_000
DEFAULT_MAX_ATTACHMENTS = 20 * 1024 * 1024


def dkim_config_key(domain: str) -> str:
    """`dkim.<10 hex of sha256(domain)>.private_key`: a secret key (write-only through the API), short
    enough for the event log's reference column (config events carry `backend/<key>`, at most 36)."""
    return f"dkim.{hashlib.sha256(domain.encode()).hexdigest()[:10]}.private_key"


def _field(name: str, ctype: str = "label") -> dict[str, Any]:
    return {"ColumnName": name, "ColumnType": ctype, "IsNullable": True}


MAIL_SEND_FIELDS = [
    _field("from"),
    _field("to", "json"),
    _field("cc", "json"),
    _field("bcc", "json"),
    _field("subject"),
    _field("body", "content"),
    _field("text", "content"),
    _field("html", "content"),
    _field("reply_to"),
    _field("attachments", "file.*"),
    _field("mail_server_hostname"),
    _field("send_immediately"),
    _field("attempt_delivery"),
]

MAIL_ACTIONS: dict[str, Any] = {
    "Actions": [
        {
            "Name": "mail.send",
            "Label": "Send mail",
            "OnType": "world",
            "InstanceOptional": True,
            "Permission": SIGNED_IN,  # any signed-in user; the sender address decides the rest
            "InFields": MAIL_SEND_FIELDS,
            "OutFields": [{"Type": "mail.send", "Method": "EXECUTE", "Attributes": {}}],
        },
        {
            "Name": "process_outbox",
            "Label": "Deliver due outbox mail now",
            "OnType": "outbox",
            "InstanceOptional": True,
            "OutFields": [{"Type": "outbox.process", "Method": "EXECUTE", "Attributes": {}}],
        },
        {
            "Name": "dkim_dns_record",
            "Label": "DKIM DNS record to publish",
            "OnType": "certificate",
            "InstanceOptional": False,
            "OutFields": [{"Type": "__dkim_dns_record", "Method": "EXECUTE", "Attributes": {}}],
        },
    ]
}


def mail_actions_doc() -> SchemaDoc:
    return parse_document(MAIL_ACTIONS, "<mail actions>")


@dataclass(frozen=True)
class Queued:
    message_id: str
    recipients: int
    signed: bool
    sent_copy: bool


def _params(ctx: ActionContext, attrs: dict[str, Any]) -> dict[str, Any]:
    """The outcome's attributes (a user-defined action maps them), else the action's own in-fields."""
    return attrs if any(v not in (None, "") for v in attrs.values()) else dict(ctx.attributes)


async def _server_id(uow: UnitOfWork, s: Services, hostname: str) -> int:
    t = s.model.table(boxes.SERVER_TABLE).sa
    row_id = await uow.conn.scalar(sa.select(t.c.id).where(t.c.hostname == hostname.strip().lower()))
    if row_id is None:
        raise BadRequest(f"failed to get mail server details for sending as: {hostname[:100]}")
    return int(row_id)


def _is_rsa(pem: str) -> bool:
    found = _RSA_CACHE.get(pem)
    if found is None:
        try:
            found = isinstance(serialization.load_pem_private_key(pem.encode("ascii"), None), rsa.RSAPrivateKey)
        except (ValueError, TypeError, UnicodeError):
            found = False
        if len(_RSA_CACHE) > 1000:
            _RSA_CACHE.clear()
        _RSA_CACHE[pem] = found
    return found


_RSA_CACHE: dict[str, bool] = {}
SELECTOR_KEY = "mail.dkim_selector"


class DkimKeys:
    """`signing.KeySource` for SMTP submission relayed through the outbox: the key of the sender domain's
    certificate row (its own RSA key made on first use when the certificate's key is EC, as
    `dkim_dns_record` does); None when the domain has no certificate."""

    def __init__(self, s: Services):
        self.s = s

    async def signing_key(self, domain: str) -> str | None:
        if self.s.certs is None or self.s.certs.material(domain) is None:
            return None
        return await ensure_dkim_key(self.s, domain)


def dkim_key(s: Services, domain: str) -> str | None:
    """The DKIM signing key of a domain: the key of its `certificate` row when that is RSA (Daptin's and ACME
    rows); Portside's own self-signed certificates have EC keys, which DKIM cannot use (rsa-sha256), so
    such a domain signs with an RSA key of its own, made by the `dkim_dns_record` action and kept encrypted
    in config (`dkim_config_key`, a secret key: never readable through the API)."""
    material = s.certs.material(domain) if s.certs is not None else None
    if material is None:
        return None
    if _is_rsa(material.key_pem):
        return material.key_pem
    stored = s.config.get(dkim_config_key(domain))
    if not stored:
        return None
    try:
        return crypto.decrypt(s.crud.secret, stored)
    except ValueError:
        return None


async def ensure_dkim_key(s: Services, domain: str) -> str:
    """The domain's DKIM key, creating its own RSA key when the certificate's cannot sign (outside any
    transaction: it writes config)."""
    key = dkim_key(s, domain)
    if key is not None:
        return key
    fresh = await asyncio.to_thread(rsa.generate_private_key, public_exponent=65537, key_size=2048)
    pem = fresh.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    stored = await s.config.setdefault(dkim_config_key(domain), crypto.encrypt(s.crud.secret, pem))
    return crypto.decrypt(s.crud.secret, stored)


def public_pem(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode("ascii"), None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


async def queue_message(
    s: Services,
    uow: UnitOfWork,
    *,
    sender: str,
    account: Account | None,
    recipients: list[str],
    raw: bytes,
    server_id: int | None,
    owner: tuple[int | None, str | None],
) -> Queued:
    """Sign (when the domain has a key), store the Sent copy (when the sender has an account), queue."""
    domain = compose.domain_of(sender)
    key = dkim_key(s, domain)
    if key is not None:
        try:
            raw = signing.sign_as(raw, domain, key, s.config.get(SELECTOR_KEY))
        except signing.SigningError as exc:
            raise BadRequest(str(exc)) from None
    store = MailStore(s.db, s.catalog)
    sent_copy = False
    if account is not None:
        box = await boxes.mailbox_by_role(uow.conn, s.model, account.id, "\\Sent")
        if box is None:
            await boxes.ensure_standard(uow, s.model, account.id)
            box = await boxes.mailbox_by_role(uow.conn, s.model, account.id, "\\Sent")
        if box is not None:
            await store.append(uow, box, raw, flags=["\\Seen"])
            sent_copy = True
    await outbox.enqueue(
        uow,
        s.model,
        sender=sender,
        recipients=recipients,
        raw=raw,
        mail_server_id=server_id,
        owner_id=owner[0],
        owner_ref=owner[1],
    )
    mid = ""
    for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            mid = line.split(b":", 1)[1].strip().decode("ascii", "replace")
    return Queued(mid, len(recipients), key is not None, sent_copy)


@performers.register("mail.send")
async def mail_send(ctx: ActionContext, attrs: dict[str, Any]) -> list[Response]:
    s, uow = ctx.services, ctx.uow
    p = _params(ctx, attrs)
    if not p.get("from"):
        raise BadRequest("missing required field: from", pointer="/attributes/from")
    sender = compose.address(p.get("from"), "from")
    hostname = p.get("mail_server_hostname") or s.config.get("mail.default_server_hostname") or ""
    if not isinstance(hostname, str) or not hostname.strip():
        raise BadRequest("missing required field: mail_server_hostname or backend config mail.default_server_hostname")
    server_id = await _server_id(uow, s, hostname)
    account = await boxes.account_by_address(uow.conn, s.model, sender)
    if account is None:
        raise BadRequest(f"sender mail account not found [{sender}]", pointer="/attributes/from")
    if not access.may_send_as(ctx.actor, account.owner_ref):
        raise Forbidden(f"not allowed to send as {sender}")
    limit = max(1, s.config.get_int("mail.send_max_recipients", DEFAULT_MAX_RECIPIENTS))
    to = compose.addresses(p.get("to"), "to", limit)
    cc = compose.addresses(p.get("cc"), "cc", limit)
    bcc = compose.addresses(p.get("bcc"), "bcc", limit)
    everyone = list(dict.fromkeys(to + cc + bcc))
    if not everyone:
        raise BadRequest("missing required field: to", pointer="/attributes/to")
    if len(everyone) > limit:
        raise BadRequest(f"at most {limit} recipients", pointer="/attributes/to")
    text = p.get("body") if p.get("body") not in (None, "") else p.get("text")
    html = p.get("html")
    raw = compose.compose(
        sender=sender,
        to=to,
        cc=cc,
        reply_to=compose.address(p["reply_to"], "reply_to") if p.get("reply_to") else "",
        subject=compose.text_field(p.get("subject"), "subject", compose.MAX_SUBJECT, single_line=True),
        text=compose.text_field(text, "body", MAX_BODY) if text not in (None, "") else None,
        html=compose.text_field(html, "html", MAX_BODY) if html not in (None, "") else None,
        files=compose.attachments(p.get("attachments"), "attachments", DEFAULT_MAX_ATTACHMENTS),
    )
    queued = await queue_message(
        s,
        uow,
        sender=sender,
        account=account,
        recipients=everyone,
        raw=raw,
        server_id=server_id,
        owner=(account.owner_id, account.owner_ref),
    )
    return [
        notify("success", "Success", f"Mail queued for {queued.recipients} recipient(s)"),
        response(
            "mail.send",
            {"message_id": queued.message_id, "recipients": queued.recipients, "dkim_signed": queued.signed},
        ),
    ]


@performers.register("outbox.process")
async def process_outbox(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    """Deliver what is due now (a harmless re-check: the courier already does this on every commit)."""
    if not access.administers(ctx.actor):
        raise Forbidden("only administrators may process the outbox")
    courier = ctx.services.courier
    if courier is None:
        raise NotFound("outbox delivery is not running on this server")

    async def run() -> list[Response]:  # after the action's transaction
        summary = await courier.run_once()
        courier.wake()  # retries this run scheduled are now the courier's to time
        text = f"Outbox processed: {summary.sent} sent, {summary.retried} to retry, {summary.failed} failed"
        return [notify("success", "Success", text), response("outbox.process", summary.__dict__)]

    ctx.post.append(run)
    return []


@performers.register("__dkim_dns_record")
async def dkim_dns_record(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    """The TXT record that publishes the DKIM key of a certificate row's domain (`<selector>._domainkey.<host>`);
    the domain gets an RSA key of its own first when its certificate's key cannot sign (see `dkim_key`)."""
    s, row = ctx.services, ctx.subject
    if row is None:
        raise BadRequest("certificate_id is required", pointer="/attributes/certificate_id")
    if not access.may(ctx.actor, READ, row.grants):
        raise Forbidden("not allowed to read this certificate")
    host = row.attrs.get("hostname")
    if not isinstance(host, str) or s.certs is None or s.certs.material(host) is None:
        raise NotFound("this certificate row has no usable key yet")
    try:
        sel = signing.selector(s.config.get("mail.dkim_selector"))
    except signing.SigningError as exc:
        raise BadRequest(str(exc)) from None
    if dkim_key(s, host) is None and not access.may_administer(ctx.actor, open_mode=s.catalog.open_mode):
        raise Forbidden("only administrators may create a DKIM key")

    async def record() -> list[Response]:  # after the action's transaction: a new key is written to config
        key = await ensure_dkim_key(s, host)
        return [response("dkim.dns_record", signing.dns_record(host, public_pem(key), sel))]

    ctx.post.append(record)
    return []
