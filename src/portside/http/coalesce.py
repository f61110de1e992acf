"""One write per plain HTTP response: the status line and headers go out together with the first body part.

uvicorn's httptools protocol writes a response's head to the transport as soon as the application sends
`http.response.start`, and the body with `http.response.body`: two `send(2)` calls, two TCP segments and two
wake-ups of the client for every response, where one would do (py-spy of `bench/api.py`'s list: the head's
write was ~15-20% of the loop thread's samples, more than the 22 kB body's). `HttpProtocol` gives each
request/response cycle a `HeadHold` in place of the transport: it keeps the head back and writes it joined to
the next write. A head that no body write follows in the same loop step (HEAD, an empty or streamed body)
goes out on its own from `call_soon`, or earlier when the cycle completes, the connection reads more, or the
cycle closes the connection: the bytes and their order on the wire are the same, only fewer writes.

What this relies on inside uvicorn (run for real by tests/unit/test_http_coalesce.py, against uvicorn's own
protocol as the reference; pyproject.toml pins the minor series): `on_headers_complete` creates `self.cycle`
with `transport=self.transport` and only schedules its task; the cycle sets `response_started` before it
writes the head and uses only `write`, `close` and `is_closing` of its transport; the protocol's
`on_response_complete` is the cycle's `on_response`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


class HeadHold:
    """The transport as one cycle sees it (module docstring)."""

    __slots__ = ("_cycle", "_head", "_loop", "_seen", "transport")

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle, loop: asyncio.AbstractEventLoop):
        self.transport = transport
        self._cycle = cycle
        self._loop = loop
        self._head: bytes | None = None
        self._seen = False  # the head went by (held or written)

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self.transport.write(head + data)
        elif not self._seen and self._cycle.response_started:
            self._seen = True  # uvicorn writes the head right after setting response_started
            self._head = bytes(data)
            self._loop.call_soon(self.flush)
        else:
            self.transport.write(data)

    def flush(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            if not self.transport.is_closing():
                self.transport.write(head)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools HTTP/1.1 protocol whose cycles write each response's head with its body."""

    def on_headers_complete(self) -> None:
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not before and cycle is not None and cycle.transport is self.transport:
            hold: Any = HeadHold(self.transport, cycle, self.loop)
            cycle.transport = hold

    def data_received(self, data: bytes) -> None:
        self._flush_head()  # anything the protocol itself writes (an error answer) comes after the head
        super().data_received(data)

    def on_response_complete(self) -> None:
        self._flush_head()
        super().on_response_complete()

    def shutdown(self) -> None:
        self._flush_head()
        super().shutdown()

    def _flush_head(self) -> None:
        hold = self.cycle.transport if self.cycle is not None else None
        if isinstance(hold, HeadHold):
            hold.flush()
