"""A direct frame path for /live and Yjs fan-out: one pre-built WebSocket frame written to many transports.

Without per-message compression (Portside turns permessage-deflate off), a server-to-client text frame is
the same bytes for every socket: RFC 6455 header (FIN + opcode, unmasked length) followed by the payload.
Fan-out can therefore build the frame once per event and write it to each recipient's transport, instead
of one ASGI `websocket.send` coroutine (plus a queue and a writer task) per socket and event.

The transport is reached through the uvicorn WebSocket protocol object, whose bound `send` the ASGI server
passes to the application; `CaptureRawSend` records it in the scope before Starlette wraps it. When that
object is not the one we know (another server, a future uvicorn, a negotiated extension), `DirectWire.of`
answers None and the connection falls back to plain ASGI sends: slower, never wrong.
"""

from __future__ import annotations

import struct
from typing import Any, Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

RAW_SEND = "portside.raw_send"
OP_TEXT = 0x1
OP_BINARY = 0x2


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


class DirectWire:
    """Writes whole frames straight to one connection's transport (the server's own pings, pongs and close
    frames are whole frames too, so they interleave safely at frame boundaries)."""

    __slots__ = ("_proto", "transport")

    def __init__(self, proto: Any, transport: _Transport):
        self._proto = proto
        self.transport = transport

    @classmethod
    def of(cls, scope: Scope) -> DirectWire | None:
        proto: Any = getattr(scope.get(RAW_SEND), "__self__", None)
        transport = getattr(proto, "transport", None)
        conn = getattr(proto, "conn", None)
        known = all(hasattr(proto, a) for a in ("close_sent", "disconnected", "handshake_complete"))
        if transport is None or not known or not hasattr(conn, "close_sent") or getattr(conn, "extensions", 0) != []:
            return None
        if not proto.handshake_complete:
            return None
        return cls(proto, transport)

    def send(self, frame: bytes, limit: int) -> bool:
        """Write `frame` unless the socket is closing (dropped: the connection loop ends the session);
        False, writing nothing, when more than `limit` bytes already wait for the peer."""
        p, t = self._proto, self.transport
        if p.close_sent or p.disconnected or p.conn.close_sent is not None or t.is_closing():
            return True
        if t.get_write_buffer_size() > limit:
            return False
        t.write(frame)
        return True

    def abort(self) -> None:
        self.transport.abort()


class CaptureRawSend:
    """Outermost ASGI layer: remember the server's own `send` for WebSocket scopes."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            scope[RAW_SEND] = send
        await self.app(scope, receive, send)
