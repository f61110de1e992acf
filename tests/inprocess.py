"""The fast tier for pure HTTP behaviour: the whole Portside runtime (the same `Portside` object `portside serve`
runs, every service real) on its own event loop in a thread of the test process, on port 0, reached over a real
socket with httpx. No interpreter start-up and no imports per server: a module's server is up in well under a
second instead of a few. Use it for HTTP behaviour that needs neither the process (its output, its exit, signals,
a killed server) nor WebSockets under load; those keep `support.start_server`.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx

from portside.runtime import Portside
from portside.settings import Settings
from support import TEST_BCRYPT_ROUNDS

T = TypeVar("T")


class InProcessServer:
    """Same surface as `support.Server` for HTTP tests: `url`, `data_dir`, `database_url`, `client()`, `stop()`."""

    def __init__(self, database_url: str, data_dir: Path | None = None):
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="portside-inproc-"))
        self.database_url = database_url
        self.url = ""
        self.log: list[str] = []  # not captured in process; kept for helpers that read it
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self.app: Portside | None = None  # the running runtime (its services), for tests below the edges
        self._thread = threading.Thread(target=self._run, name="portside-inprocess", daemon=True)

    def start(self, timeout: float = 60) -> InProcessServer:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("in-process portside did not start")
        if self._error is not None:
            raise RuntimeError(f"in-process portside did not start: {self._error!r}") from self._error
        return self

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        settings = Settings(
            port=0,
            data_dir=str(self.data_dir),
            database_url=self.database_url,
            log_level="WARNING",
            test_bcrypt_rounds=int(TEST_BCRYPT_ROUNDS),
        )
        app = self.app = Portside(settings)
        try:
            await app.start()
        except BaseException as exc:  # reported to the test thread by start()
            self._error = exc
            self._ready.set()
            return
        self.url = f"http://127.0.0.1:{app.ports['http']}"
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await app.stop()

    def stop(self) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopping.set)
        self._thread.join(30)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run a coroutine on the server's own event loop (where its services live) and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)
