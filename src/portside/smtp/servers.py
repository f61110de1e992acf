"""SMTP listeners follow the enabled `mail_server` rows, live.

`MailServers.apply()` reads the rows and makes the running listeners match: a new enabled row starts one
(`smtp-<hostname>`, announced and in /_ports), a disabled or deleted row stops it, a changed row (interface,
TLS, limits) replaces it (the new socket is bound before the old one closes), an unchanged row is left
alone. Two enabled rows on one `listen_interface` both fail (listed with the reason). Each row's host name
gets a certificate (self-signed when there is none) before its listener starts. The runtime calls `apply`
at start-up and whenever a `mail_server` row or the timeout key changes, on every node; the
`sync_mail_servers` action is the same call.
"""

from __future__ import annotations

import asyncio
from typing import Any

from portside import log
from portside.actions.mail_send import DkimKeys
from portside.actions.services import Services
from portside.mail import servers as mail_servers
from portside.mail.inbound import Inbound
from portside.mail.store import MailStore
from portside.mail.workers import default_size
from portside.smtp.handler import Context
from portside.smtp.listener import Settings, SmtpListener
from portside.tools.lifecycle import Listeners

logger = log.get("smtp")
PREFIX = mail_servers.PREFIX
SERVER_TABLE = mail_servers.SERVER_TABLE
TIMEOUT_KEY = "mail.smtp_timeout"
WORKERS_KEY = "mail.inbound_workers"
KEYS = frozenset({TIMEOUT_KEY, WORKERS_KEY})
DEFAULT_TIMEOUT = 300.0
MAX_WORKERS = 16


class MailServers:
    def __init__(self, svc: Services, listeners: Listeners):
        self.svc, self.listeners = svc, listeners
        self.store = MailStore(svc.db, svc.catalog)
        self.inbound = Inbound(svc.db, svc.config, self.store, svc.mail_directory, DkimKeys(svc))
        self._running: dict[str, Settings] = {}
        self._lock = asyncio.Lock()

    def _timeout(self) -> float:
        try:
            value = float(self.svc.config.get(TIMEOUT_KEY) or DEFAULT_TIMEOUT)
        except ValueError:
            return DEFAULT_TIMEOUT
        return min(max(value, 0.2), 3600.0)

    def _workers(self) -> int:
        """Worker processes for the checks of received mail (config `mail.inbound_workers`; 0 = threads)."""
        text = (self.svc.config.get(WORKERS_KEY) or "").strip()
        if not text:
            return default_size()
        try:
            return min(max(int(text), 0), MAX_WORKERS)
        except ValueError:
            return default_size()

    async def apply(self) -> list[str]:
        """Make the listeners match the rows; returns the problems found (also logged and in /_ports)."""
        async with self._lock:
            await self.inbound.resize_workers(self._workers())
            return await self._apply()

    async def _apply(self) -> list[str]:
        problems: list[str] = []
        async with self.svc.db.read() as conn:
            planned = await mail_servers.plan(conn, self.svc.model)
        wanted: dict[str, tuple[Settings, int] | str] = {}
        for name, w in planned.items():
            if isinstance(w, str):
                wanted[name] = w
                continue
            settings = Settings(
                w.hostname, w.host, w.port, w.implicit_tls, w.auth_required, w.max_size, w.max_clients, self._timeout()
            )
            wanted[name] = (settings, w.row_id)
        for name in list(self._running):
            if name not in wanted:
                self._running.pop(name, None)
                await self.listeners.stop(name)
        for entry in self.listeners.entries():  # failed entries of rows that are gone
            if entry.name.startswith(PREFIX) and entry.name not in wanted:
                await self.listeners.stop(entry.name)
        for name, want in wanted.items():
            if isinstance(want, str):
                problems.append(want)
                self._running.pop(name, None)
                await self.listeners.fail(self._placeholder(name), want)
                continue
            settings, row_id = want
            if self._running.get(name) == settings and self.listeners.get(name) is not None:
                continue
            await self._start(name, settings, row_id, problems)
        return problems

    def _placeholder(self, name: str) -> SmtpListener:
        s = Settings(name[len(PREFIX) :], "0.0.0.0", 0, False, False, 1024, 1, 1.0)
        return SmtpListener(name, s, self._context(s, None), lambda: self._tls(s.hostname))

    def _context(self, settings: Settings, row_id: int | None) -> Context:
        svc = self.svc
        return Context(svc.db, svc.catalog, self.inbound, svc.logins, svc.sessions, settings.hostname, row_id)

    def _tls(self, hostname: str) -> Any:
        assert self.svc.certs is not None
        return self.svc.certs.server_context(default=hostname)

    async def _start(self, name: str, settings: Settings, row_id: int, problems: list[str]) -> None:
        certs = self.svc.certs
        listener = SmtpListener(name, settings, self._context(settings, row_id), lambda: self._tls(settings.hostname))
        try:
            if certs is not None and certs.material(settings.hostname) is None:
                try:
                    await certs.ensure(settings.hostname)
                except Exception:  # another node may have made it at the same moment: take theirs
                    await certs.reload()
                    if certs.material(settings.hostname) is None:
                        raise
                await certs.reload()
        except Exception as exc:
            why = f"no certificate for {settings.hostname}: {exc}"
            problems.append(why)
            self._running.pop(name, None)
            await self.listeners.fail(listener, why)
            return
        old = self._running.get(name)
        if old is not None and settings.port and (old.host, old.port) == (settings.host, settings.port):
            await self.listeners.stop(name)  # same fixed port, other settings: the old socket must go first
        entry = await self.listeners.start(listener)
        if entry.state == "running":
            self._running[name] = settings
        else:
            self._running.pop(name, None)
            problems.append(entry.error or "cannot listen")

    async def stop(self) -> None:
        for name in list(self._running):
            await self.listeners.stop(name)
        self._running.clear()
        await self.inbound.writer.close()
