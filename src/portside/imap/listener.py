"""The IMAP listeners (`imap`: plaintext with STARTTLS, `imaps`: implicit TLS) on sockets the registry bound.

Each connection runs one `ImapSession`; the listener keeps the set of live sessions so `drain` can say BYE
to each and wait for them by the deadline. Connections per user are bounded by the backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable

from portside import log
from portside.imap.base import Options
from portside.imap.session import ImapSession
from portside.imap.store import Backend
from portside.tools import metrics
from portside.tools.lifecycle import Listener, TlsMode

logger = log.get("imap")
READ_LIMIT = 256 * 1024  # StreamReader buffer; lines longer than Options.max_line are refused anyway


class ImapListener(Listener):
    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        backend: Backend,
        options: Options,
        tls: TlsMode = "none",
        tls_context: Callable[[], ssl.SSLContext] | None = None,
    ):
        super().__init__(name, "imaps" if tls == "implicit" else "imap", host, port, tls)
        self.backend, self.options = backend, options
        self._tls_context = tls_context
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._sessions: set[ImapSession] = set()

    async def serve(self) -> None:
        ctx = self._tls_context() if self.tls == "implicit" and self._tls_context is not None else None
        for sock in self.sockets:
            server = await asyncio.start_server(
                self._connected, sock=sock, ssl=ctx, limit=READ_LIMIT, ssl_handshake_timeout=30 if ctx else None
            )
            self._servers.append(server)

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        session = ImapSession(reader, writer, self.backend, self.options, address)
        self._sessions.add(session)
        metrics.connected("imap")
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await session.run()
        except Exception:
            logger.exception("IMAP session from %s failed", address)
        finally:
            metrics.disconnected("imap")
            self._sessions.discard(session)
            if task is not None:
                self._tasks.discard(task)

    async def drain(self, deadline: float) -> None:
        for server in self._servers:
            server.close()
        for session in list(self._sessions):
            session.end("Server shutting down")
        loop = asyncio.get_running_loop()
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=max(0.1, deadline - loop.time()))
            for task in pending:
                task.cancel()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1)
        self._servers = []
