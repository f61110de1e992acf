"""A lean WebSocket receiver for load generation (RFC 6455, client side, text frames only).

Each received chunk is time-stamped in `data_received`, before any frame or JSON parsing, and the frames are
kept as raw bytes; decoding happens after the measured window. A receiver built on a full client library
spends ~20 µs of Python per message, so a burst of a few hundred frames (one event fanned out to every
socket in this process) queues in the load generator and shows up as server latency. Here a frame costs a
few microseconds. Server pings are answered (masked pongs), so keepalive does not close the sockets.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from typing import cast
from urllib.parse import urlsplit

OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA


def masked(opcode: int, payload: bytes) -> bytes:
    """A client frame: FIN, `opcode`, masked payload (clients must mask, RFC 6455 §5.3)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    key = os.urandom(4)
    body = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    return head + key + body


class Receiver(asyncio.Protocol):
    """One socket: the upgrade, then every text frame as (receive time, payload bytes)."""

    def __init__(self, url: str):
        self.url = urlsplit(url)
        self.frames: list[tuple[float, bytes]] = []
        self.close_code: int | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._buf = bytearray()
        self._upgraded = False
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio.Transport
        transport = self._transport
        key = base64.b64encode(os.urandom(16)).decode()
        path = self.url.path + (f"?{self.url.query}" if self.url.query else "")
        transport.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: {self.url.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def send_text(self, text: str) -> None:
        assert self._transport is not None
        self._transport.write(masked(OP_TEXT, text.encode()))

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(masked(OP_CLOSE, (1000).to_bytes(2, "big")))
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buf = self._buf
        buf += data
        if not self._upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[:end]).split(b"\r\n", 1)[0]
            del buf[: end + 4]
            if b" 101 " not in status:
                self.opened.set_exception(RuntimeError(status.decode(errors="replace")))
                return
            self._upgraded = True
            self.opened.set_result(None)
        while len(buf) >= 2:
            opcode, n, start = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, start = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, start = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < start + n:
                return
            payload = bytes(buf[start : start + n])
            del buf[: start + n]
            if opcode == OP_TEXT:
                self.frames.append((now, payload))
            elif opcode == OP_PING and self._transport is not None:
                self._transport.write(masked(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed before the upgrade"))
        if not self.closed.done():
            self.closed.set_result(None)


async def connect(url: str) -> Receiver:
    u = urlsplit(url)
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(lambda: Receiver(url), u.hostname, u.port or 80)
    await proto.opened
    return proto
