"""aiosmtpd hooks of one connection: replies for EHLO, MAIL, RCPT and DATA, decided by `mail.inbound`.

The handler holds the connection's `Session` (listener hostname, peer, TLS, signed-in account) and asks the
inbound service for every decision; it only counts recipients and speaks the replies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as AioSession

from portside import log
from portside.auth.login import login_mail
from portside.auth.sessions import SessionRegistry, mail_password_credential
from portside.auth.throttle import LoginThrottle
from portside.core.db import Database
from portside.mail.inbound import Inbound, Session
from portside.mail.storebase import HasModel
from portside.tools import metrics

logger = log.get("smtp")
MAX_RECIPIENTS = 100


@dataclass
class Context:
    """What every connection of one listener shares."""

    db: Database
    catalog: HasModel
    inbound: Inbound
    throttle: LoginThrottle
    sessions: SessionRegistry | None
    hostname: str
    server_id: int | None


class Handler:
    def __init__(self, ctx: Context, peer_ip: str, tls: bool):
        self.ctx = ctx
        self.session = Session(ctx.hostname, ctx.server_id, peer_ip=peer_ip, tls=tls)
        self.server: Any = None  # the PortsideSMTP protocol, set by the listener
        self.registered: Any = None

    async def login(self, username: str, password: str) -> bool:
        """AUTH: True when the account's password (or an application password of its owner) matches."""
        found = await login_mail(
            self.ctx.db,
            self.ctx.catalog.model,
            self.ctx.throttle,
            identifier=username,
            secret=password,
            address=self.session.peer_ip,
            protocol="smtp",
        )
        self.session.actor = found.actor
        self.session.account_id = found.account_id
        self.session.login_name = username.strip().lower()
        if self.ctx.sessions is not None and self.server is not None:
            server = self.server

            async def recheck(_actor: Any) -> None:
                return None

            credential = found.credential
            if credential == "mail_password" and found.account_ref and found.stamp:
                credential = mail_password_credential(found.account_ref, found.stamp)  # ends on a new password
            self.registered = self.ctx.sessions.open(
                found.actor, "smtp", credential, recheck=recheck, end=lambda _why: server.close_now()
            )
        return True

    def closed(self) -> None:
        if self.registered is not None and self.ctx.sessions is not None:
            self.ctx.sessions.close(self.registered)
            self.registered = None

    async def handle_EHLO(
        self, server: SMTP, session: AioSession, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        self.session.helo = hostname[:255]
        out = [r for r in responses if r != "250 HELP"]
        out[0] = f"250-{self.ctx.hostname} Hello"
        out.extend(["250-PIPELINING", "250-ENHANCEDSTATUSCODES", "250 HELP"])
        return out

    async def handle_HELO(self, server: SMTP, session: AioSession, envelope: Envelope, hostname: str) -> str:
        session.host_name = hostname
        self.session.helo = hostname[:255]
        return f"250 {self.ctx.hostname} Hello"

    async def handle_NOOP(self, server: SMTP, session: AioSession, envelope: Envelope, arg: str) -> str:
        return "250 2.0.0 OK"

    async def handle_RSET(self, server: SMTP, session: AioSession, envelope: Envelope) -> str:
        return "250 2.1.0 OK"

    async def handle_VRFY(self, server: SMTP, session: AioSession, envelope: Envelope, address: str) -> str:
        return "252 2.5.0 Cannot verify user"

    async def handle_MAIL(
        self, server: SMTP, session: AioSession, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = await self.ctx.inbound.sender(self.session, address)
        if reply.code == 250:
            envelope.mail_from = address
            envelope.mail_options.extend(options)
        return str(reply)

    async def handle_RCPT(
        self, server: SMTP, session: AioSession, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        reply = await self.ctx.inbound.recipient(self.session, address)
        if reply.code == 250:
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(options)
        return str(reply)

    async def handle_DATA(self, server: SMTP, session: AioSession, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if not isinstance(raw, bytes):  # pragma: no cover - decode_data is off
            raw = bytes(raw)
        reply = await self.ctx.inbound.receive(self.session, str(envelope.mail_from), list(envelope.rcpt_tos), raw)
        metrics.mail_received(len(raw), accepted=reply.code == 250)
        return str(reply)

    async def handle_exception(self, error: Exception) -> str:
        logger.exception("smtp session of %s failed", self.session.peer_ip)
        return "451 4.3.0 Error: internal error, try again later"

    def __dir__(self) -> list[str]:
        """The hooks only. aiosmtpd builds its hook and AUTH tables on every connection from `dir(handler)` and
        `inspect.getmembers(handler)` (which reads every attribute); only `handle_` / `auth_` names count.
        `handle_EHLO` is left out: aiosmtpd would read its signature every time (`PortsideSMTP` adds it)."""
        return list(_HOOKS)


_HOOKS = tuple(name for name in dir(Handler) if name.startswith(("handle_", "auth_")) and name != "handle_EHLO")
