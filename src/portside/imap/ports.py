"""The IMAP listeners as the configuration asks for them, applied live to the runtime's listener registry.

`ImapPorts.apply` is called at start-up and whenever an `imap.*` config key changes (on any node): it
starts, moves or stops `imap` (STARTTLS) and `imaps` (implicit TLS) without touching other listeners.
Both take their certificates from the certificate service (SNI; `imap.hostname` gets one, self-signed
when nothing else exists).
"""

from __future__ import annotations

from collections.abc import Callable

from portside import log
from portside.certs.service import CertificateService
from portside.imap import config
from portside.imap.base import Options
from portside.imap.listener import ImapListener
from portside.imap.rows import RowsBackend
from portside.tools.lifecycle import Listeners

logger = log.get("imap")


class ImapPorts:
    def __init__(self, backend: RowsBackend, certs: CertificateService, default_host: str):
        self.backend, self.certs, self.default_host = backend, certs, default_host
        self._applied: dict[str, tuple[str, int, str]] = {}  # name -> (host, port asked, hostname)

    def _listener(self, name: str, host: str, port: int, tls: str, hostname: str) -> ImapListener:
        options = Options(hostname=hostname, tls_context=self.certs.server_context, implicit_tls=tls == "implicit")
        return ImapListener(
            name, host, port, self.backend, options, tls="implicit" if tls == "implicit" else "starttls",
            tls_context=self.certs.server_context,
        )  # fmt: skip

    async def apply(self, get: Callable[[str], str | None], listeners: Listeners) -> dict[str, int]:
        """Bring the listeners in line with the configuration; the ports now served by name."""
        self.backend.append_limit = config.append_limit(get)
        hostname = (get(config.HOSTNAME) or "").strip().lower() or self.certs.fallback
        for name, spec in config.plan(get, self.default_host).items():
            if spec is None:
                self._applied.pop(name, None)
                await listeners.stop(name)
                continue
            if isinstance(spec, str):
                self._applied.pop(name, None)
                tls = "implicit" if name == "imaps" else "starttls"
                await listeners.fail(self._listener(name, self.default_host, 0, tls, hostname), spec)
                continue
            wanted = (spec.host, spec.port, hostname)
            running = listeners.get(name)
            if running is not None and self._applied.get(name) == wanted:
                continue
            try:
                if self.certs.material(hostname) is None:
                    await self.certs.ensure(hostname)
                    await self.certs.reload()
            except Exception as exc:
                self._applied.pop(name, None)
                await listeners.fail(
                    self._listener(name, spec.host, spec.port, spec.tls, hostname), f"certificate: {exc}"
                )
                continue
            entry = await listeners.start(self._listener(name, spec.host, spec.port, spec.tls, hostname))
            if entry.state == "running":
                self._applied[name] = wanted
        ports: dict[str, int] = {}
        for name in ("imap", "imaps"):
            running = listeners.get(name)
            if running is not None and running.bound_port is not None:
                ports[name] = running.bound_port
        return ports
