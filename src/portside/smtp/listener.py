"""An SMTP listener for one enabled `mail_server` row (a `tools.lifecycle.Listener`).

Roles come from the row: `always_on_tls` = implicit TLS (465 style, AUTH allowed at once);
otherwise STARTTLS is offered and AUTH is only possible after it; `authentication_required` = submission
(STARTTLS first, AUTH before MAIL; may relay), else MX (mail for local domains from anyone). At most
`max_clients` connections at a time (more get `421 4.7.0` and are closed); an idle client is dropped
after config `mail.smtp_timeout` seconds (default 300); lines, commands and message size are bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from portside import log
from portside.smtp.handler import Context, Handler
from portside.smtp.protocol import PortsideSMTP
from portside.tools import metrics
from portside.tools.lifecycle import Listener

logger = log.get("smtp")
# aiosmtpd logs every command line (addresses included) at INFO; Portside's own lines say what matters
logging.getLogger("mail.log").setLevel(logging.WARNING)
# per connection: how often each verb may be sent (aiosmtpd answers 421 and closes beyond it)
CALL_LIMITS = {"*": 100, "MAIL": 10000, "RCPT": 100000, "DATA": 10000, "RSET": 10000, "NOOP": 1000, "AUTH": 5}


@dataclass(frozen=True)
class Settings:
    """What a listener is built from; a change of any field restarts it."""

    hostname: str
    host: str
    port: int
    implicit_tls: bool
    auth_required: bool
    max_size: int
    max_clients: int
    timeout: float


class Busy(asyncio.Protocol):
    """Answers a connection over `max_clients` and closes it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        write = getattr(transport, "write", None)  # uvloop's transports are not asyncio.Transport subclasses
        if write is not None:
            write(b"421 4.7.0 Too many connections, try again later\r\n")
        transport.close()


class SmtpListener(Listener):
    def __init__(self, name: str, settings: Settings, ctx: Context, tls: Callable[[], ssl.SSLContext]):
        super().__init__(
            name,
            "smtps" if settings.implicit_tls else "smtp",
            settings.host,
            settings.port,
            "implicit" if settings.implicit_tls else "starttls",
        )
        self.settings, self.ctx, self.tls_context = settings, ctx, tls
        self._servers: list[asyncio.Server] = []
        self._protocols: set[PortsideSMTP] = set()
        self._idle = asyncio.Event()  # set when the last session has ended
        self._context: ssl.SSLContext | None = None
        self._pool_held = False

    def _starttls(self) -> ssl.SSLContext:
        """One context for every connection: it picks the current certificate by SNI at each handshake, so
        building it per connection (a measurable cost per message) bought nothing."""
        if self._context is None:
            self._context = self.tls_context()
        return self._context

    def _protocol(self) -> asyncio.Protocol:
        s = self.settings
        if len(self._protocols) >= s.max_clients:
            return Busy()
        handler = Handler(self.ctx, "", s.implicit_tls)
        proto = PortsideSMTP(
            handler,
            hostname=s.hostname,
            ident="ESMTP Portside",
            implicit_tls=s.implicit_tls,
            max_size=s.max_size,
            data_size_limit=s.max_size,
            tls_context=None if s.implicit_tls else self._starttls(),
            require_starttls=s.auth_required and not s.implicit_tls,
            auth_required=s.auth_required,
            auth_require_tls=not s.implicit_tls,  # implicit TLS: aiosmtpd sees no STARTTLS, the socket is TLS
            timeout=s.timeout,
            command_call_limit=CALL_LIMITS,
            loop=asyncio.get_running_loop(),
        )
        handler.server = proto
        self._protocols.add(proto)
        made, lost = proto.connection_made, proto.connection_lost

        def connection_made(transport: asyncio.BaseTransport) -> None:
            peer = transport.get_extra_info("peername")
            if handler.session.peer_ip == "" and isinstance(peer, tuple):
                handler.session.peer_ip = str(peer[0])
            handler.session.tls = proto.is_tls
            metrics.connected("smtp")
            made(transport)

        def connection_lost(error: Exception | None) -> None:
            self._protocols.discard(proto)
            if not self._protocols:
                self._idle.set()
            handler.closed()
            metrics.disconnected("smtp")
            lost(error)

        proto.connection_made = connection_made  # type: ignore[method-assign]
        proto.connection_lost = connection_lost  # type: ignore[method-assign]
        return proto

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        if not self._pool_held:  # the mail worker processes run while any SMTP listener does
            self._pool_held = True
            await self.ctx.inbound.pool.acquire()
        ctx = self.tls_context() if self.settings.implicit_tls else None
        for sock in self.sockets:
            if ctx is not None:
                server = await loop.create_server(self._protocol, sock=sock, ssl=ctx, ssl_handshake_timeout=30)
            else:
                server = await loop.create_server(self._protocol, sock=sock)
            self._servers.append(server)

    async def drain(self, deadline: float) -> None:
        try:
            await self._drain(deadline)
        finally:
            if self._pool_held:
                self._pool_held = False
                await self.ctx.inbound.pool.release()

    async def _drain(self, deadline: float) -> None:
        for server in self._servers:
            server.close()
        loop = asyncio.get_running_loop()
        for proto in list(self._protocols):
            # a session between messages ends now; one inside a transaction gets until the deadline
            if proto.envelope is None or not proto.envelope.rcpt_tos:
                await proto.say_and_close("421 4.3.2 Server shutting down, try again later")
        if self._protocols:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), max(0.0, deadline - loop.time()))
        for proto in list(self._protocols):
            proto.close_now()
        for server in self._servers:
            await server.wait_closed()
        self._servers = []
