"""A direct frame path for /live and Yjs fan-out: one pre-built WebSocket frame written to many transports.

Without per-message compression (Portside turns permessage-deflate off), a server-to-client text frame is
the same bytes for every socket: RFC 6455 header (FIN + opcode, unmasked length) followed by the payload.
Fan-out can therefore build the frame once per event and write it to each recipient's transport, instead
of one ASGI `websocket.send` coroutine (plus a queue and a writer task) per socket and event.

The transport is reached through the uvicorn WebSocket protocol object, whose bound `send` the ASGI server
passes to the application; `CaptureRawSend` records it in the scope before Starlette wraps it. When that
object is not the one we know (another server, a future uvicorn, a negotiated extension), `DirectWire.of`
answers None and the connection falls back to plain ASGI sends: slower, never wrong.

The receiving side has a direct path too: `WebSocketProtocol` (uvicorn's sans-I/O protocol, which Portside
runs) hands each complete binary message to a `sink` the application installs, synchronously, from the
transport's read callback, instead of queueing it for an ASGI `receive` (a queue, a task wake-up, and a
pause/resume of the socket per message). Text messages, close and disconnect still go through ASGI.

It also splits the input into frames itself (`_frames_received`), once the client has sent its opening
request and nothing after it: the common frame (one whole masked binary message, FIN set, no RSV bits,
within the size limit, the connection open and no fragmented message under way) is unmasked and handed to
the sink without websockets' generator-based parser (its Frame objects, events and dispatch; bench/yjs.py,
interleaved A/B: the server's CPU per update 197 -> 185 us). Every other frame - text, control,
continuation, unmasked, anything odd - goes to websockets as the whole frame, so it stays at a frame boundary
and keeps every rule and error it had; a frame declared larger than the limit goes to websockets at once
(which refuses it, 1009), so no more than one frame of the limit is ever buffered here.

Everything this module relies on inside uvicorn is listed in `PROTOCOL_ATTRIBUTES`, `CONN_ATTRIBUTES` and
`WebSocketProtocol`, and checked by tests/unit/test_uvicorn_canary.py; pyproject.toml pins uvicorn to the
minor series that test ran against.

Debug switch (not an option): `PORTSIDE_DEBUG_STOCK_WS=websockets-sansio` runs uvicorn's stock sans-I/O
protocol (direct output, input through ASGI), `PORTSIDE_DEBUG_STOCK_WS=websockets` its websockets-library
protocol (no direct path at all: every frame through ASGI). The tests use it to exercise the fallbacks.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import Callable
from typing import Any, Protocol

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets ships the C speedups for this platform
    from websockets.utils import apply_mask

from portside import log
from portside.errors import StartupError

logger = log.get("http")

RAW_SEND = "portside.raw_send"
OP_TEXT = 0x1
OP_BINARY = 0x2
# what `DirectWire` reads on uvicorn's WebSocket protocol object, and on its websockets `ServerProtocol` (`conn`)
PROTOCOL_ATTRIBUTES = ("transport", "conn", "close_sent", "disconnected", "handshake_complete")
CONN_ATTRIBUTES = ("close_sent", "extensions")
DEBUG_STOCK_WS = "PORTSIDE_DEBUG_STOCK_WS"
STOCK_WS = ("websockets-sansio", "websockets")  # uvicorn's own names for its protocols


def _frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked, unfragmented server frame (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


def text_frame(payload: bytes) -> bytes:
    return _frame(OP_TEXT, payload)


def binary_frame(payload: bytes) -> bytes:
    return _frame(OP_BINARY, payload)


class _Transport(Protocol):
    def write(self, data: bytes) -> None: ...
    def is_closing(self) -> bool: ...
    def get_write_buffer_size(self) -> int: ...
    def abort(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


def _nothing() -> None:
    pass


class DirectWire:
    """Writes whole frames straight to one connection's transport (the server's own pings, pongs and close
    frames are whole frames too, so they interleave safely at frame boundaries)."""

    __slots__ = ("_held", "_posters", "_proto", "transport")

    def __init__(self, proto: Any, transport: _Transport):
        self._proto = proto
        self.transport = transport
        self._held = False
        self._posters: dict[int, Callable[[bytes], bool]] = {}  # limit -> `send`'s poster

    @classmethod
    def of(cls, scope: Scope) -> DirectWire | None:
        proto: Any = getattr(scope.get(RAW_SEND), "__self__", None)
        if not all(hasattr(proto, a) for a in PROTOCOL_ATTRIBUTES):
            return None
        transport, conn = proto.transport, proto.conn
        if transport is None or not all(hasattr(conn, a) for a in CONN_ATTRIBUTES) or conn.extensions != []:
            return None
        if not proto.handshake_complete:
            return None
        return cls(proto, transport)

    def send(self, frame: bytes, limit: int) -> bool:
        """Write `frame` unless the socket is closing (dropped: the connection loop ends the session);
        False, writing nothing, when more than `limit` bytes already wait for the peer."""
        post = self._posters.get(limit)
        if post is None:
            post = self._posters[limit] = self.poster(limit, _nothing)
        return post(frame)

    def poster(self, limit: int, on_full: Callable[[], None]) -> Callable[[bytes], bool]:
        """`send` for fan-out, with the objects it reads bound once: the hub calls it once per socket and event.
        Same rules; when more than `limit` bytes wait it calls `on_full` and answers False."""
        p, conn, t = self._proto, self._proto.conn, self.transport
        is_closing, buffered, write = t.is_closing, t.get_write_buffer_size, t.write

        def post(frame: bytes) -> bool:
            if p.close_sent or p.disconnected or conn.close_sent is not None or is_closing():
                return True
            if buffered() > limit:
                on_full()
                return False
            write(frame)
            return True

        return post

    @property
    def backlog(self) -> int:
        """Bytes written but not yet taken by the kernel."""
        return self.transport.get_write_buffer_size()

    def abort(self) -> None:
        self.transport.abort()

    def set_sink(self, sink: Callable[[bytes], None] | None) -> bool:
        """Deliver binary messages to `sink` as they are read (None: back to ASGI); False if the server's
        protocol cannot (the caller keeps reading through ASGI)."""
        if not isinstance(self._proto, WebSocketProtocol):
            return False
        self._proto.sink = sink
        return True

    def hold(self) -> None:
        """Stop reading from the peer (its input waits in the kernel, which in turn slows the peer)."""
        if not self._held and not self.transport.is_closing():
            self._held = True
            self.transport.pause_reading()

    def release(self) -> None:
        if self._held:
            self._held = False
            if not self.transport.is_closing():
                self.transport.resume_reading()


FAST_HEAD = 0x80 | OP_BINARY  # FIN, no RSV bits, binary: the first byte of the frames split here
MAX_REQUEST = 64 << 10  # opening-request bytes kept to see where it ends; a longer request: websockets splits


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, plus an optional synchronous sink for binary messages and the
    frame splitter in front of websockets' parser (module docstring)."""

    sink: Callable[[bytes], None] | None = None
    # None: the opening request is still coming; True: `_frames_received` splits the input; False: websockets
    _framing: bool | None = None
    _request: bytearray | None = None
    _pending: bytearray | None = None  # the start of a frame not wholly received yet
    _need = 0  # bytes `_pending` must hold before the frame (or its header) can be read

    def data_received(self, data: bytes) -> None:
        if self._framing:
            self._frames_received(data)
            return
        if self._framing is not None or self.handshake_initiated:
            super().data_received(data)
            return
        request = self._request
        if request is None:
            request = self._request = bytearray()
        if len(request) <= MAX_REQUEST:
            request += data
        super().data_received(data)
        if self.handshake_initiated:  # the request is in: split frames only if nothing came after it
            end = request.find(b"\r\n\r\n")
            self._framing = 0 <= end == len(request) - 4 and not self.conn.reader.buffer
            self._request = None
        elif len(request) > MAX_REQUEST:
            self._framing, self._request = False, None

    def _frames_received(self, data: bytes) -> None:
        pending = self._pending
        if pending is not None:
            pending += data
            if len(pending) < self._need:
                return
            buf: bytes | bytearray = pending
            self._pending = None
        else:
            buf = data
        view = memoryview(buf)
        n, pos, conn = len(buf), 0, self.conn
        try:
            while pos < n:
                # the header: 2 bytes, then a 16- or 64-bit length, then the 4-byte mask
                if n - pos < 2:
                    self._keep(buf, pos, 2)
                    return
                b1 = buf[pos + 1]
                size, start = b1 & 0x7F, pos + 2
                if size >= 126:
                    start += 2 if size == 126 else 8
                    if n < start:
                        self._keep(buf, pos, start - pos)
                        return
                    size = int.from_bytes(view[pos + 2 : start], "big")
                limit = conn.max_message_size
                if limit is not None and size > limit:  # websockets refuses it from its header (1009)
                    self._framing = False
                    super().data_received(bytes(view[pos:]))
                    return
                masked = b1 & 0x80
                if masked:
                    start += 4
                end = start + size
                if end > n:
                    self._keep(buf, pos, end - pos)
                    return
                sink = self.sink
                if (
                    masked
                    and buf[pos] == FAST_HEAD
                    and sink is not None
                    and conn.state is State.OPEN
                    and conn.current_size is None
                    and not self.close_sent
                ):
                    _deliver(sink, apply_mask(view[start:end], buf[start - 4 : start]))
                else:
                    super().data_received(bytes(view[pos:end]))  # a whole frame: websockets stays at a boundary
                    if conn.parser_exc is not None:
                        self._framing = False
                        return
                pos = end
        finally:
            view.release()

    def _keep(self, buf: bytes | bytearray, pos: int, need: int) -> None:
        """Hold the incomplete frame starting at `pos` until `need` bytes of it are in."""
        self._pending = buf if pos == 0 and isinstance(buf, bytearray) else bytearray(buf[pos:])
        self._need = need

    def send_receive_event_to_app(self) -> None:
        sink = self.sink
        if sink is None or self.curr_msg_data_type != "bytes" or self.close_sent:
            super().send_receive_event_to_app()
            return
        frames, self.frames = self.frames, []
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        _deliver(sink, data if type(data) is bytes else bytes(data))


def _deliver(sink: Callable[[bytes], None], message: bytes) -> None:
    try:
        sink(message)
    except Exception:  # one bad message must not take the connection's reader down
        logger.exception("websocket message handler failed")


def ws_protocol() -> type[asyncio.Protocol] | str:
    """The WebSocket protocol uvicorn runs: Portside's, unless the debug switch names one of uvicorn's own."""
    stock = os.environ.get(DEBUG_STOCK_WS, "")
    if not stock:
        return WebSocketProtocol
    if stock not in STOCK_WS:
        raise StartupError(f"{DEBUG_STOCK_WS} must be one of {', '.join(STOCK_WS)}, not {stock!r}")
    logger.warning("debug: uvicorn's stock %s WebSocket protocol (%s)", stock, DEBUG_STOCK_WS)
    return stock


class CaptureRawSend:
    """Outermost ASGI layer: remember the server's own `send` for WebSocket scopes."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            scope[RAW_SEND] = send
        await self.app(scope, receive, send)
