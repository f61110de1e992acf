"""Talking to other mail servers: MX lookup through the configured resolver, SMTP with verified STARTTLS.

- Routes: the smarthost of config `mail.smarthost` (`host:port`, optional AUTH with `mail.smarthost_username`
  / `mail.smarthost_password`), else the recipient domain's MX hosts by preference (no MX: the domain itself,
  RFC 5321 §5.1; a null MX `.` means the domain takes no mail: permanent failure), each host's addresses
  looked up through the same resolver (config `mail.dns_resolver`, `address:port`, empty = the system's), port
  config `mail.delivery_port` (25).
- A session: EHLO with the outbox row's mail server name, STARTTLS whenever offered with certificate and
  host name verification (SNI = the MX host; a failure fails the attempt; extra trusted CAs from config
  `mail.delivery_ca_file`), then one MAIL/RCPT/DATA per message over the same connection.
- Outcomes: a 5xx reply is permanent (the caller fails the row and bounces), everything else (4xx, no
  connection, timeouts, TLS failures, DNS trouble, a refused greeting, EHLO or AUTH: a configuration matter,
  not the message's) is temporary (retried with backoff).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

import aiosmtplib
import dns.asyncresolver
import dns.exception
import dns.resolver

from portside import log

logger = log.get("mail.delivery")
DEFAULT_PORT = 25
CONNECT_TIMEOUT = 30.0
MAX_MX = 10
CLOSING = 421
MAX_RCPT = 50  # recipients per SMTP transaction (RFC 5321 servers take at least 100)
_HOST_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


@dataclass(frozen=True)
class Message:
    """One outbox row to deliver: envelope plus raw bytes."""

    key: int
    sender: str
    recipient: str
    raw: bytes


@dataclass(frozen=True)
class Result:
    key: int
    ok: bool
    permanent: bool = False
    error: str = ""
    code: int = 0


@dataclass(frozen=True)
class Settings:
    resolver: str = ""
    port: int = DEFAULT_PORT
    smarthost: str = ""
    username: str = ""
    password: str = ""
    ca_file: str = ""
    timeout: float = CONNECT_TIMEOUT


class RouteError(Exception):
    def __init__(self, text: str, *, permanent: bool):
        super().__init__(text)
        self.permanent = permanent


def parse_hostport(text: str, default_port: int) -> tuple[str, int]:
    """`host:port`, `[v6]:port`, or a bare host; ValueError otherwise."""
    value = text.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else str(default_port)
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, str(default_port)
    if not port.isdigit() or not 0 < int(port) < 65536 or not _is_host(host):
        raise ValueError(f"{text[:100]!r} is not host:port")
    return host, int(port)


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOST_RE.match(host))


def make_resolver(setting: str, timeout: float = 5.0) -> dns.asyncresolver.Resolver:
    if setting.strip():
        host, port = parse_hostport(setting, 53)
        r = dns.asyncresolver.Resolver(configure=False)
        r.nameservers = [host]
        r.port = port
    else:
        r = dns.asyncresolver.Resolver()
    r.lifetime = timeout
    r.timeout = timeout
    return r


def tls_context(ca_file: str = "") -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    return ctx


async def _addresses(resolver: dns.asyncresolver.Resolver, host: str) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    out: list[str] = []
    for qtype in ("A", "AAAA"):
        try:
            answer = await resolver.resolve(host, qtype, raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
            continue
        out.extend(r.to_text() for r in answer)
    return out


async def mx_hosts(resolver: dns.asyncresolver.Resolver, domain: str) -> list[str]:
    """The hosts that take mail for `domain`, best first (RouteError when there are none)."""
    try:
        answer = await resolver.resolve(domain, "MX", raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        raise RouteError(f"domain {domain} does not exist", permanent=True) from None
    except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.exception.DNSException) as exc:
        raise RouteError(f"MX lookup for {domain} failed: {type(exc).__name__}", permanent=False) from None
    records = sorted(((r.preference, r.exchange.to_text().rstrip(".")) for r in answer), key=lambda p: p[0])
    if not records:
        return [domain]  # implicit MX: the domain itself
    if len(records) == 1 and records[0][1] in ("", "."):
        raise RouteError(f"domain {domain} accepts no mail (null MX)", permanent=True)
    return [host for _, host in records if host][:MAX_MX]


async def targets(settings: Settings, domain: str) -> list[tuple[str, str, int]]:
    """(name for TLS, address, port) to try in order."""
    if settings.smarthost:
        host, port = parse_hostport(settings.smarthost, 587)
        return [(host, host, port)]
    resolver = make_resolver(settings.resolver)
    out: list[tuple[str, str, int]] = []
    for host in await mx_hosts(resolver, domain):
        try:
            for addr in await _addresses(resolver, host):
                out.append((host, addr, settings.port))
        except dns.exception.DNSException:
            continue
    if not out:
        raise RouteError(f"no address for the mail hosts of {domain}", permanent=False)
    return out


def _clip(text: str) -> str:
    return text[:500]


def _text(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}"[:500]
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


async def _session(
    settings: Settings, ehlo: str, name: str, addr: str, port: int, batch: Sequence[Message], done: dict[int, Result]
) -> None:
    """One SMTP connection delivering `batch`, each outcome recorded in `done` as soon as it is known (a
    message the server accepted is never offered again); raises when the connection as a whole fails."""
    smtp = aiosmtplib.SMTP(
        hostname=addr, port=port, local_hostname=ehlo or None, start_tls=False, timeout=settings.timeout
    )
    await smtp.connect()
    try:
        await smtp.ehlo()
        if smtp.supports_extension("starttls"):
            await smtp.starttls(server_hostname=name, tls_context=tls_context(settings.ca_file))
            await smtp.ehlo()
        if settings.smarthost and settings.username:
            await smtp.login(settings.username, settings.password)
        for group in transactions(batch):
            await _transaction(smtp, group, done)
    finally:
        try:
            await smtp.quit()
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            smtp.close()


def transactions(batch: Sequence[Message]) -> list[list[Message]]:
    """Messages with the same sender and bytes (one mail.send to many recipients of a domain) share one SMTP
    transaction, up to `MAX_RCPT` distinct recipients each, as MTAs do; order is kept otherwise."""
    groups: list[list[Message]] = []
    open_groups: dict[tuple[str, bytes], list[Message]] = {}
    for m in batch:
        key = (m.sender, m.raw)
        group = open_groups.get(key)
        if group is None or len(group) >= MAX_RCPT or any(x.recipient == m.recipient for x in group):
            group = open_groups[key] = []
            groups.append(group)
        group.append(m)
    return groups


async def _transaction(smtp: aiosmtplib.SMTP, group: list[Message], done: dict[int, Result]) -> None:
    """MAIL, one RCPT per message of the group, DATA once; each message's outcome is its RCPT's (or the
    transaction's). 421 (the server is closing) propagates: the group goes to the next host."""
    first = group[0]
    try:
        errors, _ = await smtp.sendmail(first.sender, [m.recipient for m in group], first.raw)
    except aiosmtplib.SMTPRecipientsRefused as exc:  # every recipient refused
        by_rcpt = {r.recipient: r for r in exc.recipients}
        if any(r.code == CLOSING for r in exc.recipients):
            raise
        for m in group:
            refused = by_rcpt.get(m.recipient)
            code = refused.code if refused is not None else 450
            done[m.key] = Result(m.key, False, code >= 500, _text(refused or exc), code)
        await _reset(smtp)
        return
    except aiosmtplib.SMTPResponseException as exc:  # MAIL FROM or DATA refused: the same for all
        if exc.code == CLOSING:  # the server is going away: this and the rest go to the next host
            raise
        for m in group:
            done[m.key] = Result(m.key, False, exc.code >= 500, _text(exc), exc.code)
        await _reset(smtp)
        return
    for m in group:
        refused_reply = errors.get(m.recipient)
        if refused_reply is None:
            done[m.key] = Result(m.key, True)
        else:
            code = refused_reply.code
            done[m.key] = Result(m.key, False, code >= 500, f"{code} {refused_reply.message}"[:500], code)


async def _reset(smtp: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
        await smtp.rset()


async def route(settings: Settings, domain: str) -> list[tuple[str, str, int]] | Result:
    """The hosts to try for a domain, or the Result (key 0) every message for it gets."""
    try:
        return await targets(settings, domain)
    except RouteError as exc:
        return Result(0, False, exc.permanent, _clip(str(exc)))
    except ValueError as exc:
        return Result(0, False, False, f"mail.smarthost: {exc}"[:500])


async def deliver(
    settings: Settings,
    ehlo: str,
    domain: str,
    batch: Sequence[Message],
    hosts: list[tuple[str, str, int]] | Result | None = None,
    done: dict[int, Result] | None = None,
) -> list[Result]:
    """Deliver messages for one recipient domain (over `hosts` from `route`, looked up when not given);
    one Result per message, in order. Outcomes land in `done` as they happen (a caller that gives up
    waiting keeps what was delivered); a host that fails part-way leaves the rest to the next host."""
    done = {} if done is None else done
    if hosts is None:
        hosts = await route(settings, domain)
    if isinstance(hosts, Result):
        return [done.setdefault(m.key, Result(m.key, False, hosts.permanent, hosts.error)) for m in batch]
    last = "no mail host tried"
    for name, addr, port in hosts:
        pending = [m for m in batch if m.key not in done]
        if not pending:
            break
        try:
            await _session(settings, ehlo, name, addr, port, pending, done)
        except (TimeoutError, aiosmtplib.SMTPException, OSError, ssl.SSLError, ValueError) as exc:
            last = f"{name}[{addr}]:{port}: {_text(exc)}"
            logger.info("delivery to %s failed: %s", domain, last)
            continue
        break
    return [done.get(m.key) or Result(m.key, False, False, last[:500]) for m in batch]
