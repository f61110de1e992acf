"""An ASGI app behind Portside's WebSocket protocol (http/wire.py) on a real in-process uvicorn, port 0: the
setting of the direct-path canary and of the frame splitter's tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from portside.http.wire import CaptureRawSend, WebSocketProtocol


@contextlib.asynccontextmanager
async def serving(app: Any, **config: Any) -> AsyncIterator[int]:
    """Serve `app` (wrapped in `CaptureRawSend`) on 127.0.0.1 until the block ends; yields the port. `config`:
    more `uvicorn.Config` settings (per-message deflate is off, as Portside runs it)."""
    settings: dict[str, Any] = {"ws_per_message_deflate": False, "lifespan": "off", "log_level": "warning"}
    settings.update(config)
    server = uvicorn.Server(
        uvicorn.Config(CaptureRawSend(app), host="127.0.0.1", port=0, ws=WebSocketProtocol, **settings)
    )
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
