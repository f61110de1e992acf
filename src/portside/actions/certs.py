"""Actions on `certificate` (Daptin's names): generate a self-signed or an ACME certificate, download the
certificate or its public key. Generating needs an administrator; downloading needs Read on the row.
The private key is never part of a response."""

from __future__ import annotations

import base64
from typing import Any

from portside.actions.registry import ActionContext, Response, notify, performers, response
from portside.auth import access
from portside.auth.permissions import READ
from portside.certs import acme_client
from portside.certs import x509 as certx
from portside.certs.service import CertificateService
from portside.core import fieldtypes
from portside.core.schema import SchemaDoc, parse_document
from portside.errors import BadRequest, Forbidden, NotFound, UpstreamError

CERT_ACTIONS: dict[str, Any] = {
    "Actions": [
        {
            "Name": "generate_self_certificate",
            "Label": "Generate a self-signed certificate",
            "OnType": "certificate",
            "InstanceOptional": False,
            "InFields": [{"ColumnName": "regenerate", "ColumnType": "truefalse", "IsNullable": True}],
            "OutFields": [{"Type": "self.tls.generate", "Method": "EXECUTE", "Attributes": {}}],
        },
        {
            "Name": "generate_acme_certificate",
            "Label": "Generate a certificate with ACME (Let's Encrypt)",
            "OnType": "certificate",
            "InstanceOptional": False,
            "InFields": [{"ColumnName": "email", "ColumnType": "email", "IsNullable": True}],
            "OutFields": [{"Type": "acme.tls.generate", "Method": "EXECUTE", "Attributes": {}}],
        },
        {
            "Name": "download_certificate",
            "Label": "Download certificate",
            "OnType": "certificate",
            "InstanceOptional": False,
            "OutFields": [{"Type": "__download_certificate", "Method": "EXECUTE", "Attributes": {}}],
        },
        {
            "Name": "download_public_key",
            "Label": "Download public key",
            "OnType": "certificate",
            "InstanceOptional": False,
            "OutFields": [{"Type": "__download_public_key", "Method": "EXECUTE", "Attributes": {}}],
        },
    ]
}


def certs_doc() -> SchemaDoc:
    return parse_document(CERT_ACTIONS, "<certificate actions>")


def _service(ctx: ActionContext) -> CertificateService:
    svc = ctx.services.certs
    if svc is None:
        raise NotFound("certificates are not available on this server")
    return svc


def _admin(ctx: ActionContext) -> None:
    if not access.may_administer(ctx.actor, open_mode=ctx.services.catalog.open_mode):
        raise Forbidden("only administrators may generate certificates")


def _hostname(ctx: ActionContext) -> str:
    if ctx.subject is None:
        raise BadRequest("certificate_id is required", pointer="/attributes/certificate_id")
    raw = ctx.subject.attrs.get("hostname")
    try:
        host = certx.normalize_hostname(raw)
    except certx.CertError as exc:
        raise BadRequest(f"this certificate row cannot be used: {exc}", pointer="/attributes/certificate_id") from None
    if host != raw:  # rows written before names were normalized: fix the row first
        raise BadRequest(f"hostname must be written as {host!r}", pointer="/attributes/certificate_id")
    return host


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("", "0", "false", "no", "off"):
        return False
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if value is None:
        return False
    raise BadRequest("regenerate must be true or false", pointer="/attributes/regenerate")


@performers.register("self.tls.generate")
async def generate_self(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    """Daptin: no-op when the row already holds a usable certificate; `regenerate: true` replaces it."""
    _admin(ctx)
    host = _hostname(ctx)
    regenerate = _flag(ctx.attributes.get("regenerate"))
    await _service(ctx).ensure(host, ctx.uow, regenerate=regenerate)
    return [notify("success", "Success", f"Certificate generated for {host}")]


@performers.register("acme.tls.generate")
async def generate_acme(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    _admin(ctx)
    host = _hostname(ctx)
    certs = _service(ctx)
    email = ctx.attributes.get("email") or ""
    email = email.strip().lower() if isinstance(email, str) else email
    if not isinstance(email, str) or (email and not fieldtypes.is_email(email)):
        raise BadRequest("invalid email", pointer="/attributes/email")
    if email:  # Daptin: the account's contact must be one of this server's users
        u = ctx.services.model.table("user_account").sa
        if await ctx.uow.conn.scalar(u.select().with_only_columns(u.c.id).where(u.c.email == email)) is None:
            raise BadRequest("invalid email", pointer="/attributes/email")

    async def order() -> list[Response]:  # after the action's transaction: nothing is held while the CA calls
        try:
            await certs.issue_acme(host, email)
        except acme_client.AcmeError as exc:
            raise UpstreamError(str(exc)) from None
        return [notify("success", "Success", f"Certificate issued by ACME for {host}")]

    ctx.post.append(order)
    return []


def _download(ctx: ActionContext, column: str, suffix: str, content_type: str) -> list[Response]:
    host = _hostname(ctx)
    assert ctx.subject is not None
    if not access.may(ctx.actor, READ, ctx.subject.grants):  # administrators may
        raise Forbidden("not allowed to read this certificate")
    pem = ctx.subject.attrs.get(column)
    if not isinstance(pem, str) or "-----BEGIN" not in pem:
        raise NotFound(f"no certificate stored for {host} yet")
    data = base64.b64encode(pem.encode("utf-8")).decode("ascii")
    return [
        response(
            "client.file.download",
            {"content": data, "name": f"{host}{suffix}", "contentType": content_type, "message": "Downloading"},
        )
    ]


@performers.register("__download_certificate")
async def download_certificate(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    return _download(ctx, "certificate_pem", ".pem.crt", "application/x-x509-ca-cert")


@performers.register("__download_public_key")
async def download_public_key(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    return _download(ctx, "public_key_pem", ".pem.key.pub", "application/x-pem-file")


__all__ = ["CERT_ACTIONS", "certs_doc"]
