"""Portside's own split of WebSocket input into frames (http/wire.py `WebSocketProtocol._frames_received`),
against a real uvicorn on port 0 and a raw TCP client that writes hand-built frames cut at arbitrary points:
the common binary frame goes straight to the sink, everything else through websockets with its rules and
close codes, and nothing is lost, reordered or delivered twice whatever the cut."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from portside.http import wire
from portside.http.wire import DirectWire
from wire_support import serving

MAX_SIZE = 1 << 20


@dataclass
class Seen:
    sunk: list[bytes] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    protocols: list[Any] = field(default_factory=list)
    got: asyncio.Event = field(default_factory=asyncio.Event)


@contextlib.asynccontextmanager
async def server() -> AsyncIterator[tuple[int, Seen]]:
    seen = Seen()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        seen.protocols.append(getattr(scope.get(wire.RAW_SEND), "__self__", None))
        direct = DirectWire.of(scope)
        assert direct is not None

        def sink(data: bytes) -> None:
            assert type(data) is bytes
            seen.sunk.append(data)
            seen.got.set()

        direct.set_sink(sink)
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                seen.texts.append(message["text"])
                seen.got.set()

    async with serving(app, ws_max_size=MAX_SIZE, ws_ping_interval=None, log_level="critical") as port:
        yield port, seen


def request() -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True, rsv: int = 0) -> bytes:
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    bit = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def connect(port: int, first: bytes = b"") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request() + first)  # `first`: frames sent with the request, before the answer (pipelined)
    await writer.drain()
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return reader, writer


async def server_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await asyncio.wait_for(reader.readexactly(2), 5)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    return b0 & 0x0F, await reader.readexactly(n)


async def close_code(reader: asyncio.StreamReader) -> int:
    while True:
        opcode, payload = await server_frame(reader)
        if opcode == 0x8:
            return int(struct.unpack("!H", payload[:2])[0])


async def wait_for(seen: Seen, sunk: int, texts: int = 0) -> None:
    async def until() -> None:
        while len(seen.sunk) < sunk or len(seen.texts) < texts:
            seen.got.clear()
            await seen.got.wait()

    await asyncio.wait_for(until(), 10)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_any_cut_of_mixed_frames_delivers_every_message_once_and_in_order(seed: int) -> None:
    rng = random.Random(seed)
    sizes = [0, 1, 2, 125, 126, 127, 65535, 65536, 70000, *(rng.randrange(1, 3000) for _ in range(150))]
    rng.shuffle(sizes)
    stream, expected, texts, pings = b"", [], [], []
    for i, size in enumerate(sizes):
        data = bytes(rng.randrange(256) for _ in range(min(size, 64))) * (size // 64 + 1)
        data = data[:size]
        expected.append(data)
        if i % 17 == 5:  # one message in three frames: websockets joins them, the sink gets one message
            stream += frame(0x2, data[:3], fin=False) + frame(0x9, b"p%d" % i) + frame(0x0, data[3:7], fin=False)
            stream += frame(0x0, data[7:])
            pings.append(b"p%d" % i)
        else:
            stream += frame(0x2, data)
        if i % 23 == 7:
            texts.append(f"text {i}")
            stream += frame(0x1, texts[-1].encode())
    async with server() as (port, seen):
        reader, writer = await connect(port)
        pos = 0
        while pos < len(stream):  # cuts of 1 byte, a few bytes, inside headers, masks and payloads, whole runs
            step = rng.choice([1, 2, 3, 5, 7, 11, 64, 1000, 5000, 70000])
            writer.write(stream[pos : pos + step])
            pos += step
            if rng.random() < 0.2:
                await writer.drain()
                await asyncio.sleep(0)
        await writer.drain()
        await wait_for(seen, len(expected), len(texts))
        assert [len(m) for m in seen.sunk] == [len(m) for m in expected]
        assert seen.sunk == expected
        assert seen.texts == texts
        pongs = [await server_frame(reader) for _ in pings]
        assert pongs == [(0xA, p) for p in pings]
        assert seen.protocols[0]._framing is True  # split here, not by websockets alone
        writer.write(frame(0x8, struct.pack("!H", 1000)))
        assert await close_code(reader) == 1000
        writer.close()


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (frame(0x2, b"unmasked", masked=False), 1002),
        (frame(0x2, b"rsv", rsv=0x40), 1002),
        (frame(0x3, b"opcode 3"), 1002),
        # one byte over the limit, refused from its header (its payload is not sent: unread input would make
        # the server's close a reset)
        (bytes([0x82, 0x80 | 127]) + struct.pack("!Q", MAX_SIZE + 1) + os.urandom(4), 1009),
        (bytes([0x82, 0x80 | 127]) + b"\xff" * 8 + os.urandom(4), 1009),  # a 64-bit length, top bit set
        (frame(0x2, b"a", fin=False) + frame(0x2, b"b"), 1002),  # a new message inside a fragmented one
        (frame(0x0, b"lone continuation"), 1002),
        (frame(0x9, b"p" * 126), 1002),  # a control frame over 125 bytes
    ],
    ids=[
        "unmasked",
        "rsv-bit",
        "opcode-3",
        "over-the-limit",
        "64-bit-length-top-bit",
        "message-inside-fragments",
        "lone-continuation",
        "long-control-frame",
    ],  # the frames carry random masks: ids must not come from them (xdist workers collect separately)
)
async def test_a_bad_frame_gets_websockets_close_code_and_nothing_after_it_is_delivered(bad: bytes, code: int) -> None:
    async with server() as (port, seen):
        reader, writer = await connect(port)
        writer.write(frame(0x2, b"before") + bad + frame(0x2, b"after"))
        await writer.drain()
        assert await close_code(reader) == code
        await asyncio.sleep(0.1)
        assert seen.sunk[:1] == [b"before"] and b"after" not in seen.sunk
        writer.close()


async def test_frames_sent_with_the_opening_request_leave_the_split_to_websockets() -> None:
    """A client that does not wait for the answer (RFC 6455 4.1 says it must): websockets may be inside a
    frame already, so this connection is never split here; whatever websockets makes of it (websockets 17
    restarts its parser at the answer and refuses the rest, 1002), no garbage reaches the sink."""
    big = frame(0x2, b"x" * 300)
    async with server() as (port, seen):
        reader, writer = await connect(port, first=frame(0x2, b"early") + big[:9])
        writer.write(big[9:])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(frame(0x2, b"late"))
        await writer.drain()
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError):
            await close_code(reader)
        assert seen.protocols[0]._framing is False
        assert all(m in (b"early", b"x" * 300, b"late") for m in seen.sunk), seen.sunk
        writer.close()


async def test_a_request_cut_anywhere_still_opens_a_split_connection() -> None:
    async with server() as (port, seen):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        opening = request()
        for i in range(0, len(opening), 7):  # the request in 7-byte pieces, the last ending with its blank line
            writer.write(opening[i : i + 7])
            await writer.drain()
            await asyncio.sleep(0.001)
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 101")
        two = frame(0x2, b"two")
        writer.write(frame(0x2, b"one") + two[:3])  # the second frame cut inside its mask
        await writer.drain()
        await wait_for(seen, 1)
        writer.write(two[3:])
        await writer.drain()
        await wait_for(seen, 2)
        assert seen.sunk == [b"one", b"two"]
        assert seen.protocols[0]._framing is True
        writer.close()
