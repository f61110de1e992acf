"""The bridge between FTP session threads and the asyncio services of the runtime.

pyftpdlib runs each session in a thread of its own (store calls block there, never the event loop); what
needs the database or the session registry is run on the runtime's loop with `run_coroutine_threadsafe`
and waited for by the session thread alone, so a slow call holds up nobody else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from pyftpdlib.filesystems import FilesystemError

from portside.actions.services import Services
from portside.auth.login import Login, login
from portside.auth.permissions import Actor
from portside.auth.sessions import Session
from portside.errors import PortsideError, Unavailable
from portside.storage.sites import Site, usable
from portside.storage.store import Store

T = TypeVar("T")
CALL_TIMEOUT = 60.0


class FtpBackend:
    def __init__(self, services: Services, loop: asyncio.AbstractEventLoop):
        self.services, self.loop = services, loop

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise Unavailable("the server is busy") from None

    def login(self, user: str, password: str, address: str) -> Login:
        """Through auth.login (its throttle runs the checks of one account and address one at a time, so
        clients that open many sessions at once are not taken for concurrent guesses)."""
        svc = self.services
        return self.call(
            login(svc.db, svc.model, svc.logins, identifier=user, secret=password, address=address, protocol="ftp")
        )

    def sites(self) -> list[Site]:
        """The FTP-enabled, enabled sites that have a store (one entry per hostname)."""
        directory = self.services.sites
        assert directory is not None
        try:
            found = directory.cached()  # no trip to the event loop while nothing changed
            return [s for s in (found if found is not None else self.call(directory.sites())) if usable(s, ftp=True)]
        except PortsideError as exc:
            raise FilesystemError(f"sites unavailable ({exc.code})") from None

    def site(self, host: str) -> Site | None:
        name = host.lower()
        for s in self.sites():
            if s.hostname == name:
                return s
        return None

    def store(self, site: Site) -> Store:
        """The site's folder in its store, as a store of its own (paths cannot leave it)."""
        stores = self.services.stores
        assert stores is not None and site.store_ref is not None
        try:
            store = stores.cached(site.store_ref) or self.call(stores.by_ref(site.store_ref))
            view = store.view(site.folder)
        except PortsideError as exc:
            raise FilesystemError(f"the site's store is unavailable ({exc.code})") from None
        view.ensure_root()
        return view

    def open_session(
        self, actor: Actor, credential: str, recheck: Callable[[Actor], None], end: Callable[[str], None]
    ) -> Session | None:
        registry = self.services.sessions
        if registry is None:
            return None

        async def on_recheck(fresh: Actor) -> None:
            recheck(fresh)

        async def open_it() -> Session:
            return registry.open(actor, "ftp", credential, recheck=on_recheck, end=end)

        return self.call(open_it())

    def close_session(self, session: Session) -> None:
        registry = self.services.sessions
        if registry is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(registry.close, session)
