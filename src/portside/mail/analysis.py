"""The CPU-heavy part of receiving one message, as one picklable call: `analyse(Job) -> Analysis`.

It builds the trace fields (`Received`, `Authentication-Results`), runs the sender checks (SPF, DKIM, ARC,
DMARC: `mail.checks`) for unauthenticated mail, drops forged results claiming our name, and parses and
encodes the stored form (`mail.message`) when there are local copies. The inbound service runs it in a
worker process (`mail.workers`) so none of it holds the event loop's interpreter, or in a thread when no
pool runs. Only light modules are imported here: a worker process starts with this module alone.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from dataclasses import dataclass
from typing import Any

from portside.mail import checks, message

_HELO = re.compile(r"[^A-Za-z0-9.\-\[\]:_]")
_SAFE_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-]{1,64}@[A-Za-z0-9.\-]{1,190}")


@dataclass(frozen=True)
class Job:
    """One received message and what the session knew about it."""

    raw: bytes
    queue_id: str
    hostname: str  # the listener's mail_server hostname (authserv-id)
    peer_ip: str
    helo: str
    tls: bool
    mail_from: str
    rcpt: str  # the one recipient for `Received: ... for <rcpt>`, else ""
    login: str  # the signed-in account ("" = unauthenticated: the sender checks run)
    resolver: str  # config `mail.dns_resolver`
    parse: bool  # local copies: parse the row fields and encode the stored form


@dataclass(frozen=True)
class Analysis:
    received: bytes  # our `Received` field
    stored: bytes  # as stored: trace fields + the message without forged results
    verdict: tuple[float, bool, dict[str, Any]] | None  # (score, junk, detail) of checked mail
    prepared: tuple[message.Parsed, str] | None  # row fields and stored form of `stored`


def analyse(job: Job) -> Analysis:
    received = received_field(job)
    verdict: tuple[float, bool, dict[str, Any]] | None = None
    if job.login:
        trace = received + checks.authenticated_results(job.hostname, job.login)
    else:
        results = checks.check(job.raw, ip=job.peer_ip, mail_from=job.mail_from, helo=job.helo, resolver=job.resolver)
        trace = received + checks.authentication_results(job.hostname, results, job.mail_from)
        verdict = (results.score, results.junk, results.detail())
    stored = trace + checks.strip_forged_results(job.raw, job.hostname)
    prepared = (message.parse(stored), message.encode(stored)) if job.parse else None
    return Analysis(received, stored, verdict, prepared)


def received_field(job: Job) -> bytes:
    helo = _HELO.sub("", job.helo)[:100] or "unknown"
    ip = _HELO.sub("", job.peer_ip)[:60]
    proto = "ESMTP" + ("S" if job.tls else "") + ("A" if job.login else "")
    host = _HELO.sub("", job.hostname)[:100]
    date = email.utils.format_datetime(dt.datetime.now(dt.UTC))
    line = f"Received: from {helo} ({ip})\r\n\tby {host} (Portside) with {proto} id {job.queue_id}"
    if job.rcpt and _SAFE_ADDRESS.fullmatch(job.rcpt):
        line += f"\r\n\tfor <{job.rcpt}>"
    return (line + f";\r\n\t{date}\r\n").encode()
