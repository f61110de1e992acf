"""The bus's Redis subscription: one connection, RESP2, every message that arrived in one read.

redis-py's asyncio `PubSub.get_message` returns one message per call, and each call pays a timeout
context, the retry wrapper, the health check and an await per reply element (bench: ~140-200 µs of CPU per
message on a busy machine). Every node receives every commit of the cluster, so that cost is per event per
node. `Subscriber` reads whatever bytes the socket holds, parses every complete reply in them and returns the
payloads of all the messages together, so a burst of published events costs one wake-up and one hand-off to
the bus.

Only what the subscription needs is spoken: AUTH, CLIENT SETNAME, SUBSCRIBE and PING, over redis://,
rediss:// (`?ssl_cert_reqs=none` turns certificate checks off) and unix:// URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

READ_SIZE = 1 << 20  # bytes asked of the socket per wake-up
MAX_BULK = 512 << 20  # Redis's own limit on one string
MAX_LINE = 64 << 10  # a header line (type byte, length, CRLF) longer than this is not RESP
MAX_ITEMS = 1 << 20  # elements of one array reply

_INCOMPLETE: Any = object()  # the buffer ends inside a reply: read more


class ProtocolError(RedisConnectionError):
    """The server sent something that is not RESP2: the connection is dropped."""


def command(*args: bytes | str) -> bytes:
    """One command in RESP2 (an array of bulk strings)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


class Parser:
    """Incremental RESP2 parser: `feed` bytes, then `replies` returns every complete reply so far.

    Simple strings and bulk strings come back as bytes, integers as int, a null as None, arrays as lists and
    error replies as `ResponseError` instances (returned, not raised)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def replies(self) -> list[Any]:
        out: list[Any] = []
        pos = 0
        while pos < len(self._buf):
            value, end = self._reply(pos)
            if value is _INCOMPLETE:
                break
            out.append(value)
            pos = end
        if pos:
            del self._buf[:pos]
        return out

    def _line(self, pos: int) -> tuple[bytes, int] | None:
        end = self._buf.find(b"\r\n", pos, pos + MAX_LINE)
        if end < 0:
            if len(self._buf) - pos >= MAX_LINE:
                raise ProtocolError("RESP header line too long")
            return None
        return bytes(self._buf[pos + 1 : end]), end + 2

    def _reply(self, pos: int) -> tuple[Any, int]:
        got = self._line(pos)
        if got is None:
            return _INCOMPLETE, pos
        line, nxt = got
        kind = self._buf[pos]
        if kind == 0x2B:  # +simple string
            return line, nxt
        if kind == 0x2D:  # -error
            return ResponseError(line.decode("utf-8", "replace")), nxt
        try:
            n = int(line)
        except ValueError:
            raise ProtocolError(f"bad RESP length or integer {line[:40]!r}") from None
        if kind == 0x3A:  # :integer
            return n, nxt
        if kind == 0x24:  # $bulk string
            if n < 0:
                return None, nxt
            if n > MAX_BULK:
                raise ProtocolError(f"bulk string of {n} bytes")
            end = nxt + n
            if len(self._buf) < end + 2:
                return _INCOMPLETE, pos
            if self._buf[end : end + 2] != b"\r\n":
                raise ProtocolError("bulk string not terminated by CRLF")
            return bytes(self._buf[nxt:end]), end + 2
        if kind == 0x2A:  # *array
            if n < 0:
                return None, nxt
            if n > MAX_ITEMS:
                raise ProtocolError(f"array of {n} elements")
            items = []
            for _ in range(n):
                item, nxt = self._reply(nxt)
                if item is _INCOMPLETE:
                    return _INCOMPLETE, pos
                items.append(item)
            return items, nxt
        raise ProtocolError(f"unknown RESP type byte {kind!r}")


async def _open_stream(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str | None, str | None]:
    """Connect to the server a redis://, rediss:// or unix:// URL names; returns the streams and the
    credentials (username, password) the URL carries."""
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    username = unquote(parsed.username) if parsed.username else None
    password = unquote(parsed.password) if parsed.password else None
    limit = 2 * READ_SIZE
    if scheme == "unix":
        reader, writer = await asyncio.open_unix_connection(unquote(parsed.path), limit=limit)
    elif scheme in ("redis", "rediss"):
        context: ssl.SSLContext | None = None
        if scheme == "rediss":
            context = ssl.create_default_context()
            if parse_qs(parsed.query).get("ssl_cert_reqs", [""])[0].lower() in ("none", "cert_none"):
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        host = unquote(parsed.hostname) if parsed.hostname else "localhost"
        reader, writer = await asyncio.open_connection(host, parsed.port or 6379, ssl=context, limit=limit)
    else:
        raise ValueError("Redis URL must start with redis://, rediss:// or unix://")
    return reader, writer, username, password


class Subscriber:
    """One subscribed connection. `connect` returns once the server confirmed the subscription: from then on
    nothing published to the channel can be missed while the connection lives."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, channel: bytes) -> None:
        self._reader = reader
        self._writer = writer
        self._channel = channel
        self._parser = Parser()
        self._pending: list[Any] = []  # replies parsed during the handshake, not yet handed out
        self.pongs = 0

    @classmethod
    async def connect(cls, url: str, channel: str, client_name: str, timeout: float) -> Subscriber:
        async with asyncio.timeout(timeout):
            reader, writer, username, password = await _open_stream(url)
            sub = cls(reader, writer, channel.encode())
            try:
                await sub._handshake(username, password, client_name)
            except BaseException:
                await sub.close()
                raise
        return sub

    async def _handshake(self, username: str | None, password: str | None, client_name: str) -> None:
        expect: list[str] = []
        out = b""
        if password is not None:
            out += command("AUTH", username, password) if username else command("AUTH", password)
            expect.append("AUTH")
        out += command("CLIENT", "SETNAME", client_name) + command("SUBSCRIBE", self._channel)
        expect.append("CLIENT SETNAME")
        self._writer.write(out)
        await self._writer.drain()
        while True:
            replies = self._pending or await self._read_replies()
            self._pending = []
            for i, reply in enumerate(replies):
                if expect:
                    step = expect.pop(0)
                    if isinstance(reply, ResponseError):
                        kind = AuthenticationError if step == "AUTH" else ResponseError
                        raise kind(f"Redis refused {step}: {reply}")
                    continue
                if isinstance(reply, ResponseError):
                    raise ResponseError(f"Redis refused SUBSCRIBE: {reply}")
                if isinstance(reply, list) and reply[:2] == [b"subscribe", self._channel]:
                    self._pending = replies[i + 1 :]
                    return

    async def _read_replies(self) -> list[Any]:
        data = await self._reader.read(READ_SIZE)
        if not data:
            raise RedisConnectionError("Redis closed the connection")
        self._parser.feed(data)
        return self._parser.replies()

    async def read(self) -> list[bytes]:
        """Wait for the next bytes from the server; the payloads of every complete message on the channel in
        them, in order (may be empty: a pong, or only part of a message so far)."""
        replies = self._pending or await self._read_replies()
        self._pending = []
        out: list[bytes] = []
        for reply in replies:
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                if reply[1] == self._channel and isinstance(reply[2], bytes):
                    out.append(reply[2])
            elif isinstance(reply, list) and reply and reply[0] == b"pong":
                self.pongs += 1
            elif isinstance(reply, ResponseError):
                raise RedisConnectionError(f"Redis error on the subscription: {reply}")
        return out

    async def ping(self) -> None:
        self._writer.write(command("PING"))
        await self._writer.drain()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, RedisConnectionError, TimeoutError, ssl.SSLError):
            async with asyncio.timeout(1.0):
                await self._writer.wait_closed()
