"""The FTP listeners (`ftp`: plain + explicit TLS, `ftps`: implicit TLS), configured live from config keys.

Keys (strings, as Daptin stores them): `ftp.enable` (`true` starts FTP), `ftp.listen_interface`
(`host:port`, default `0.0.0.0:2121`, port 0 allowed), `ftp.tls_listen_interface` (implicit TLS; empty = none),
`ftp.passive_ports` (`30000-30100`; empty = any), `ftp.public_host` (address announced in PASV replies),
`ftp.idle_timeout` (seconds, default 300), `ftp.require_tls` (`true`: no login or data connection without
TLS), `ftp.max_sessions` (default 100) and `ftp.max_sessions_per_address` (default 20; see limits.py).
A changed address restarts that listener (the new socket is bound before the old one closes); the other
keys apply to the running listeners at once (the next connection, the next PASV, the next idle check).

Why pyftpdlib: mature (MIT), both explicit (`AUTH TLS`/`PBSZ`/`PROT`) and, with a few lines here,
implicit TLS, a threaded server mode for blocking file systems, REST/APPE/MLSD/MLST/EPSV/EPRT/UTF8 and a
pluggable `AbstractedFS`; aioftp has no `AUTH TLS`. Each session runs in a thread of its own: store calls
block there, database calls go to the runtime loop through `FtpBackend`.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import ThreadedFTPServer

from portside import log
from portside.actions.services import Services
from portside.ftp.backend import FtpBackend
from portside.ftp.handler import PortsideHandler, handler_class
from portside.ftp.limits import DEFAULT_MAX_PER_ADDRESS, DEFAULT_MAX_SESSIONS, SessionGate, Ticket, parse_limit
from portside.ftp.tls import FtpTls
from portside.tools.lifecycle import Listener, Listeners, TlsMode

logger = log.get("ftp")
KEYS = (
    "ftp.enable",
    "ftp.listen_interface",
    "ftp.tls_listen_interface",
    "ftp.passive_ports",
    "ftp.public_host",
    "ftp.idle_timeout",
    "ftp.require_tls",
    "ftp.max_sessions",
    "ftp.max_sessions_per_address",
)
DEFAULT_LISTEN = "0.0.0.0:2121"
DEFAULT_IDLE = 300
MAX_PASSIVE = 10_000


@dataclass(frozen=True)
class FtpSettings:
    enable: bool
    listen: tuple[str, int]
    tls_listen: tuple[str, int] | None
    passive_ports: tuple[int, ...] | None
    public_host: str | None
    idle_timeout: int
    require_tls: bool
    max_sessions: int = DEFAULT_MAX_SESSIONS
    max_per_address: int = DEFAULT_MAX_PER_ADDRESS


def parse_interface(value: str, key: str) -> tuple[str, int]:
    text = value.strip()
    host, sep, port = text.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535):
        raise ValueError(f"{key}: {value!r} is not host:port")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def parse_passive(value: str) -> tuple[int, ...] | None:
    text = value.strip()
    if not text:
        return None
    low, _, high = text.partition("-")
    ok = all(p.strip().isascii() and p.strip().isdigit() for p in (low, high or low))
    if not ok:
        raise ValueError(f"ftp.passive_ports: {value!r} is not FIRST-LAST")
    a, b = int(low), int(high or low)
    if not (1024 <= a <= b <= 65535) or b - a >= MAX_PASSIVE:
        raise ValueError(f"ftp.passive_ports: {value!r} must be a range within 1024-65535")
    return tuple(range(a, b + 1))


def read_settings(get: Any) -> FtpSettings:
    """The FTP settings from config (`get(key)` -> str | None); ValueError names a bad key."""
    idle_text = (get("ftp.idle_timeout") or "").strip()
    if idle_text and not (idle_text.isascii() and idle_text.isdigit() and 1 <= int(idle_text) <= 86400):
        raise ValueError(f"ftp.idle_timeout: {idle_text!r} is not 1-86400 seconds")
    tls_text = (get("ftp.tls_listen_interface") or "").strip()
    return FtpSettings(
        enable=(get("ftp.enable") or "").strip().lower() == "true",
        listen=parse_interface(get("ftp.listen_interface") or DEFAULT_LISTEN, "ftp.listen_interface"),
        tls_listen=parse_interface(tls_text, "ftp.tls_listen_interface") if tls_text else None,
        passive_ports=parse_passive(get("ftp.passive_ports") or ""),
        public_host=(get("ftp.public_host") or "").strip() or None,
        idle_timeout=int(idle_text) if idle_text else DEFAULT_IDLE,
        require_tls=(get("ftp.require_tls") or "").strip().lower() == "true",
        max_sessions=parse_limit(get("ftp.max_sessions"), "ftp.max_sessions", DEFAULT_MAX_SESSIONS),
        max_per_address=parse_limit(
            get("ftp.max_sessions_per_address"), "ftp.max_sessions_per_address", DEFAULT_MAX_PER_ADDRESS
        ),
    )


class _Server(ThreadedFTPServer):  # type: ignore[misc]
    """pyftpdlib's threaded server with its own exit flag and lock (the library keeps them on the class,
    so stopping one server would end every other server's sessions too), and the sessions counted by the
    edge's `SessionGate` (pyftpdlib's own limits count one server only, and let one session too many in)."""

    max_cons = 0
    max_cons_per_ip = 0

    def __init__(self, sock: Any, handler: type[PortsideHandler]):
        self._exit = threading.Event()
        self._lock = threading.Lock()
        self.pending_ticket: Ticket | None = None  # taken by the handler made for the connection accepted now
        super().__init__(sock, handler, ioloop=IOLoop())

    def handle_accepted(self, sock: Any, addr: Any) -> Any:
        entry = self.handler.gate.enter(str(addr[0]))
        if isinstance(entry, str):
            self._refuse(sock, str(addr[0]), entry)
            return None
        self.pending_ticket = entry
        try:
            super().handle_accepted(sock, addr)  # (the threaded server's returns nothing)
        finally:
            left, self.pending_ticket = self.pending_ticket, None
            if left is not None:
                left.release()  # no handler took it: no session came of the connection
        return None

    def take_ticket(self) -> Ticket | None:
        """The place of the connection being accepted, for its handler (which releases it on close)."""
        ticket, self.pending_ticket = self.pending_ticket, None
        return ticket

    def _refuse(self, sock: Any, address: str, reply: str) -> None:
        logger.info("FTP connection from %s refused: %s", address, reply[4:])
        try:
            if not self.handler.implicit:  # an implicit-TLS client would read the line as a broken handshake
                sock.setblocking(False)  # one short line fits a new socket's buffer: never wait for the client
                sock.send(reply.encode("ascii") + b"\r\n")
        except OSError:
            pass
        finally:
            sock.close()


class FtpListener(Listener):
    def __init__(self, name: str, host: str, port: int, handler: type[PortsideHandler], tls: TlsMode):
        super().__init__(name, "ftps" if tls == "implicit" else "ftp", host, port, tls)
        self.handler = handler
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    async def serve(self) -> None:
        for extra in self.sockets[1:]:  # pyftpdlib serves one socket: the first address of the name
            extra.close()
        self.sockets = self.sockets[:1]
        server = self._server = _Server(self.sockets[0], self.handler)
        thread = self._thread = threading.Thread(target=self._run, args=(server,), name=f"portside-{self.name}")
        thread.daemon = True
        thread.start()

    def _run(self, server: _Server) -> None:
        try:
            server.serve_forever(timeout=0.5, blocking=True, handle_exit=False)
        except Exception as exc:
            logger.exception("%s stopped", self.name)
            self.exited(exc)

    async def drain(self, deadline: float) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = None
        await asyncio.to_thread(server.close_all)
        if thread is not None:
            await asyncio.to_thread(thread.join, max(0.1, deadline - asyncio.get_running_loop().time()))

    def close(self) -> None:
        if self._thread is None:
            super().close()  # never served: the socket is still ours
            return
        _ = self.bound_port
        self.sockets = []  # the server owned (and closed) it


class FtpEdge:
    """Starts, moves, re-configures and stops the FTP listeners from the config keys."""

    def __init__(self, services: Services, listeners: Listeners):
        self.services, self.listeners = services, listeners
        self.backend = FtpBackend(services, asyncio.get_running_loop())
        assert services.certs is not None
        self.tls = FtpTls(services.certs, services.certs.fallback)
        self.gate = SessionGate()
        self._running: dict[str, tuple[tuple[str, int], type[PortsideHandler]]] = {}
        self._lock = asyncio.Lock()  # one re-configuration at a time (start-up and a config change may meet)

    async def apply(self) -> None:
        async with self._lock:
            await self._apply()

    async def _apply(self) -> None:
        try:
            s = read_settings(self.services.config.get)
        except ValueError as exc:
            await self._stop_all()
            await self.listeners.fail(self._placeholder(), str(exc))
            return
        if not s.enable:
            await self._stop_all()
            return
        self.gate.configure(s.max_sessions, s.max_per_address)  # read by every new connection
        certs = self.services.certs
        assert certs is not None
        if certs.material(certs.fallback) is None:
            try:
                await certs.ensure(certs.fallback)
                await certs.reload()
            except Exception:
                logger.exception("FTPS: no certificate for %s; FTP runs without TLS", certs.fallback)
        await self._one("ftp", s.listen, s, implicit=False)
        if s.tls_listen is None:
            await self._stop("ftps")
        else:
            await self._one("ftps", s.tls_listen, s, implicit=True)

    async def _one(self, name: str, where: tuple[str, int], s: FtpSettings, *, implicit: bool) -> None:
        running = self._running.get(name)
        live = self.listeners.get(name)
        if running is not None and live is not None and where[1] in (0, live.bound_port) and running[0] == where:
            self._configure(running[1], s)  # same socket: the running sessions see the new settings
            return
        handler = handler_class(
            self.backend,
            self.tls,
            self.gate,
            implicit=implicit,
            require_tls=s.require_tls,
            passive_ports=list(s.passive_ports) if s.passive_ports else None,
            public_host=s.public_host,
            idle_timeout=s.idle_timeout,
        )
        listener = FtpListener(name, where[0], where[1], handler, "implicit" if implicit else "starttls")
        entry = await self.listeners.start(listener)
        if entry.state == "running":
            self._running[name] = (where, handler)
        else:
            self._running.pop(name, None)

    @staticmethod
    def _configure(handler: type[PortsideHandler], s: FtpSettings) -> None:
        handler.tls_control_required = handler.tls_data_required = s.require_tls
        handler.passive_ports = list(s.passive_ports) if s.passive_ports else None
        handler.masquerade_address = s.public_host
        handler.timeout = s.idle_timeout

    def _placeholder(self) -> FtpListener:
        return FtpListener("ftp", "0.0.0.0", 0, PortsideHandler, "starttls")

    async def _stop(self, name: str) -> None:
        self._running.pop(name, None)
        await self.listeners.stop(name)

    async def _stop_all(self) -> None:
        await self._stop("ftps")
        await self._stop("ftp")
