"""The HTTP and HTTPS listeners: the Starlette application served by uvicorn on sockets the registry bound.

uvicorn's own signal capture is switched off: the runtime handles SIGTERM/SIGINT once for every listener
(`tools.lifecycle.stop_signals`) and stops them in reverse start order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

import uvicorn

from portside.tools.lifecycle import Listener, TlsMode


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the runtime owns the signals
        yield


class UvicornListener(Listener):
    """`config(port)` builds the uvicorn configuration; the sockets come from `bind()`."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        config: Callable[[int], uvicorn.Config],
        tls: TlsMode = "none",
    ):
        super().__init__(name, "https" if tls == "implicit" else "http", host, port, tls)
        self._config = config
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def serve(self) -> None:
        config = self._config(self.bound_port or self.port)
        server = self._server = _Server(config)
        task = self._task = asyncio.create_task(server.serve(sockets=self.sockets), name=f"portside-{self.name}")
        while not server.started:
            if task.done():
                task.result()  # re-raise what stopped it
                raise RuntimeError(f"{self.name} server stopped during start-up")
            await asyncio.sleep(0.01)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        if self._server is not None and self._server.should_exit:
            return  # stopped on purpose
        error = None if task.cancelled() else task.exception()
        self.exited(error)

    async def drain(self, deadline: float) -> None:
        server, task = self._server, self._task
        if server is None or task is None:
            return
        server.config.timeout_graceful_shutdown = max(0, int(deadline - asyncio.get_running_loop().time()))
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), max(0.1, deadline - asyncio.get_running_loop().time()) + 1)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        except Exception:  # it ended with an error: it is stopped all the same
            pass
