"""DNS for mail checks: one resolver setting (config `mail.dns_resolver`, `address:port`, empty = the
system's) used by every library that looks something up.

The libraries have different hooks: dkimpy takes a `dnsfunc` per call; pyspf calls its module-level
`DNSLookup`, which is replaced once (at import) by a function that uses the resolver of the current context
(a context variable, so each check - run in a worker thread with the caller's context - uses its own).
"""

from __future__ import annotations

import contextvars
import threading
from typing import Any

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
import spf

TIMEOUT = 5.0
# one answer cache per resolver setting (records are kept for their TTL, as any resolver does)
_CACHES: dict[str, dns.resolver.LRUCache] = {}
_LOOKUPS: dict[str, Lookup] = {}
_LOOKUPS_LOCK = threading.Lock()
_current: contextvars.ContextVar[dns.resolver.Resolver | None] = contextvars.ContextVar("mail_dns", default=None)


class Lookup:
    """A synchronous resolver for one setting (call from a worker thread)."""

    def __init__(self, setting: str = "", timeout: float = TIMEOUT):
        self.setting = setting.strip()
        if self.setting:
            host, port = parse_resolver(self.setting)
            r = dns.resolver.Resolver(configure=False)
            r.nameservers = [host]
            r.port = port
        else:
            r = dns.resolver.Resolver()
        r.lifetime = timeout
        r.timeout = timeout
        r.cache = _CACHES.setdefault(self.setting, dns.resolver.LRUCache(10_000))  # answers live for their TTL
        self.resolver = r

    @classmethod
    def of(cls, setting: str) -> Lookup:
        """The shared Lookup of a resolver setting (dnspython's resolver is safe to use from several threads;
        building one per message cost more than the cached lookups themselves)."""
        with _LOOKUPS_LOCK:  # checks run in worker threads
            found = _LOOKUPS.get(setting)
            if found is None:
                found = _LOOKUPS[setting] = cls(setting)
                while len(_LOOKUPS) > 16:  # settings come from config: a few at most
                    _LOOKUPS.pop(next(iter(_LOOKUPS)))
            return found

    def txt(self, name: str) -> list[bytes]:
        """The TXT records of `name` (each one joined from its strings); [] when there are none."""
        try:
            answer = self.resolver.resolve(name, "TXT", raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.name.EmptyLabel, dns.name.LabelTooLong):
            return []
        return [b"".join(r.strings) for r in answer]

    def dkim_txt(self, name: bytes | str, timeout: float = TIMEOUT) -> bytes | None:
        """dkimpy's `dnsfunc`: the first TXT record or None."""
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        found = self.txt(text.rstrip("."))
        return found[0] if found else None

    def bind(self) -> contextvars.Token[dns.resolver.Resolver | None]:
        """Make pyspf use this resolver in the current context."""
        return _current.set(self.resolver)


def parse_resolver(setting: str) -> tuple[str, int]:
    """`address:port`, `[v6]:port` or a bare address (port 53); ValueError for anything else."""
    text = setting.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else "53"
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, "53"
    if not host or not (port.isascii() and port.isdigit()) or len(port) > 5 or not 0 < int(port) < 65536:
        raise ValueError(f"mail.dns_resolver: {setting!r} is not address:port")
    return host, int(port)


def _spf_lookup(name: str, qtype: str, tcpfallback: bool = True, timeout: float = 30) -> list[Any]:
    """pyspf's DNSLookup, through the current context's resolver."""
    resolver = _current.get() or dns.resolver.get_default_resolver()
    out: list[Any] = []
    try:
        answers = resolver.resolve(name, qtype, lifetime=min(timeout, TIMEOUT), raise_on_no_answer=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return out
    except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
        raise spf.TempError(f"DNS {exc}") from None
    for rdata in answers:
        if qtype in ("A", "AAAA"):
            out.append(((name, qtype), rdata.address))
        elif qtype == "MX":
            out.append(((name, qtype), (rdata.preference, rdata.exchange)))
        elif qtype == "PTR":
            out.append(((name, qtype), rdata.target.to_text(True)))
        elif qtype in ("TXT", "SPF"):
            out.append(((name, qtype), rdata.strings))
        elif qtype == "CNAME":
            out.append(((name, qtype), rdata.target.to_text(True)))
    return out


spf.DNSLookup = _spf_lookup
