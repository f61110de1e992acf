"""Which IMAP listeners the configuration asks for (config keys, read live by the runtime).

- `imap.enabled`: `"true"` runs IMAP (anything else: no IMAP listener);
- `imap.listen_interface`: `host:port` of the plaintext listener that offers STARTTLS (default `:1143`;
  `off` or empty-port = none); port 0 picks a free port;
- `imap.tls_listen_interface`: `host:port` of the implicit-TLS listener (default: none);
- `imap.hostname`: the name in the greeting and the certificate IMAP asks for (default: `--hostname`);
- `imap.append_limit`: largest message APPEND takes, bytes (default 25 MiB), advertised as APPENDLIMIT.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from portside.tools.lifecycle import OFF, TlsMode, parse_port

ENABLED = "imap.enabled"
LISTEN = "imap.listen_interface"
TLS_LISTEN = "imap.tls_listen_interface"
HOSTNAME = "imap.hostname"
APPEND_LIMIT = "imap.append_limit"
KEYS = frozenset({ENABLED, LISTEN, TLS_LISTEN, HOSTNAME, APPEND_LIMIT})
DEFAULT_LISTEN = ":1143"
DEFAULT_APPEND_LIMIT = 25 * 1024 * 1024


@dataclass(frozen=True)
class Spec:
    name: str  # listener name: imap / imaps
    host: str
    port: int
    tls: TlsMode


def interface(value: str, default_host: str) -> tuple[str, int] | None:
    """`host:port` (`[v6]:port`, `:port`) -> (host, port); None for `off`; ValueError with a sentence."""
    text = value.strip()
    if not text or text.lower() == OFF:
        return None
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"{value!r} is not host:port")
    host = host.strip("[]") or default_host
    parsed = parse_port(port, None)
    if parsed is None:
        return None
    return host, parsed


def plan(get: Callable[[str], str | None], default_host: str) -> dict[str, Spec | str | None]:
    """Listener name -> what to run: a Spec, an error sentence (listed as failed) or None (not running)."""
    enabled = (get(ENABLED) or "").strip().lower() == "true"
    out: dict[str, Spec | str | None] = {}
    for name, key, default, tls in (
        ("imap", LISTEN, DEFAULT_LISTEN, "starttls"),
        ("imaps", TLS_LISTEN, "", "implicit"),
    ):
        if not enabled:
            out[name] = None
            continue
        raw = get(key)
        try:
            found = interface(default if raw is None else raw, default_host)
        except ValueError as exc:
            out[name] = f"{key}: {exc}"
            continue
        out[name] = Spec(name, found[0], found[1], tls) if found else None  # type: ignore[arg-type]
    return out


def append_limit(get: Callable[[str], str | None]) -> int:
    raw = (get(APPEND_LIMIT) or "").strip()
    if raw.isdigit() and 1024 <= int(raw) <= 2**31:
        return int(raw)
    return DEFAULT_APPEND_LIMIT
