"""Outbound mail test peers: a local DNS server (dnslib, real UDP port) and aiosmtpd sinks (real TCP ports).

`TestDNS` answers from a dict that tests change while it runs (MX, A, TXT); unknown names get NXDOMAIN.
`Sink` records every message it accepts and answers RCPT by rule: a local part starting with `perm` gets
`550 5.1.1`, with `temp` `451 4.3.0`; everything else is accepted.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from dnslib import AAAA, MX, QTYPE, RR, TXT, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class _Resolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, records: dict[tuple[str, str], list[Any]]):
        self.records = records

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        known = any(n == name for n, _ in self.records)
        for value in self.records.get((name, qtype), []):
            if qtype == "MX":
                pref, host = value
                rdata: Any = MX(host, pref)
            elif qtype == "A":
                rdata = A(value)
            elif qtype == "AAAA":
                rdata = AAAA(value)
            else:
                chunks = [value[i : i + 200] for i in range(0, len(value), 200)]
                rdata = TXT(chunks)
            reply.add_answer(RR(request.q.qname, getattr(QTYPE, qtype), rdata=rdata, ttl=5))
        if not known:
            reply.header.rcode = 3  # NXDOMAIN
        return reply


class TestDNS:
    __test__ = False

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[Any]] = {}
        quiet = DNSLogger(logf=lambda _line: None)
        self.server = DNSServer(_Resolver(self.records), port=0, address="127.0.0.1", logger=quiet)
        self.server.start_thread()
        self.port = self.server.server.server_address[1]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def mx(self, domain: str, *hosts: tuple[int, str], address: str = "127.0.0.1") -> None:
        self.records[(domain, "MX")] = list(hosts)
        for _, host in hosts:
            if host != ".":
                self.records[(host.rstrip("."), "A")] = [address]

    def txt(self, name: str, value: str) -> None:
        self.records[(name, "TXT")] = [value]

    def dkim_lookup(self, name: bytes, timeout: int = 5) -> bytes | None:
        """dkimpy's dnsfunc, answered from the same records."""
        found = self.records.get((name.decode().rstrip(".").lower(), "TXT"))
        return found[0].encode() if found else None

    def stop(self) -> None:
        self.server.stop()


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    at: float
    tls: bool
    login: str | None


@dataclass
class _Handler:
    messages: list[Received] = field(default_factory=list)
    close_after: int | None = None  # answer 421 (and close) to every message after this many

    async def handle_RCPT(self, server: Any, session: Session, envelope: Envelope, address: str, options: Any) -> str:
        local = address.split("@", 1)[0].lower()
        if local.startswith("perm"):
            return "550 5.1.1 no such user here"
        if local.startswith("temp"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self.close_after is not None and len(self.messages) >= self.close_after:
            return "421 4.3.2 shutting down"
        login = session.auth_data
        self.messages.append(
            Received(
                str(envelope.mail_from),
                list(envelope.rcpt_tos),
                bytes(envelope.original_content or b""),
                time.monotonic(),
                session.ssl is not None,
                login if isinstance(login, str) else None,
            )
        )
        return "250 2.0.0 OK"


def _authenticator(user: str, password: str) -> Callable[..., AuthResult]:
    def check(server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword) and data.login.decode() == user and data.password.decode() == password:
            return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False)

    return check


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Sink:
    """An aiosmtpd server on a free port of 127.0.0.1 (optionally STARTTLS, optionally AUTH required)."""

    def __init__(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        auth: tuple[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        close_after: int | None = None,
    ):
        self.handler = _Handler(close_after=close_after)
        kwargs: dict[str, Any] = {}
        if tls is not None:
            kwargs.update(tls_context=tls)
        if auth is not None:
            kwargs.update(
                authenticator=_authenticator(*auth),
                auth_required=True,
                auth_require_tls=False,
                auth_exclude_mechanism=[],
            )
        self.port = port or free_port()
        self.controller = Controller(self.handler, hostname=host, port=self.port, **kwargs)
        self.controller.start()

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    def recipients(self) -> list[str]:
        return [r for m in self.messages for r in m.rcpt_tos]

    def wait(self, count: int, timeout: float = 10) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.recipients()) >= count:
                return self.messages
            time.sleep(0.02)
        raise AssertionError(f"sink got {len(self.recipients())} recipients, wanted {count}")

    def stop(self) -> None:
        self.controller.stop()
