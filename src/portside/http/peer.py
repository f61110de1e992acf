"""Who is on the other end of an HTTP connection: the client address and whether it came over TLS.

The direct peer is the client unless it is one of the operator's `--trusted-proxies`. Only then are
`X-Forwarded-For` and `X-Forwarded-Proto` believed: the client is the right-most address in the chain
that is not itself a trusted proxy (everything left of it was written by someone we cannot vouch for).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.requests import HTTPConnection

from portside.http.common import services
from portside.settings import Network

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(ip: Address | None, proxies: Sequence[Network]) -> bool:
    return ip is not None and any(ip in net for net in proxies)


def _peer(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else "unknown"


def forwarded_client(peer: str, forwarded_for: Sequence[str], proxies: Sequence[Network]) -> str:
    """The client address behind `peer`, given the X-Forwarded-For header values and the trusted proxies."""
    hop = _ip(peer)
    if not _trusted(hop, proxies):
        return str(hop) if hop is not None else peer
    chain = [p for value in forwarded_for for p in value.split(",") if p.strip()]
    for entry in reversed(chain):
        ip = _ip(entry)
        if ip is None:
            break  # garbage a trusted proxy passed on: stop at the last hop we can vouch for
        hop = ip
        if not _trusted(ip, proxies):
            return str(ip)
    return str(hop)


def client_address(conn: HTTPConnection) -> str:
    """The client's address (the direct peer unless that is a trusted proxy)."""
    proxies = services(conn).settings.trusted_proxies
    return forwarded_client(_peer(conn), conn.headers.getlist("x-forwarded-for"), proxies)


def is_tls(conn: HTTPConnection) -> bool:
    """Whether the client reached us over TLS: directly, or as a trusted proxy says in X-Forwarded-Proto."""
    if conn.url.scheme in ("https", "wss"):
        return True
    if not _trusted(_ip(_peer(conn)), services(conn).settings.trusted_proxies):
        return False
    proto = (conn.headers.get("x-forwarded-proto") or "").split(",")[-1].strip().lower()
    return proto in ("https", "wss")
