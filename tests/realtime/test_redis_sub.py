"""The bus's own Redis subscription reader (realtime/redis_sub.py): RESP2 parsing fed in arbitrary pieces,
refusal of what is not RESP, and a subscription that goes silent being detected and re-established."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy.dialects.mysql  # noqa: F401  (core.events uses sa.dialects.mysql without importing it)
from redis.exceptions import ResponseError

from portside.core import events
from portside.core.db import Database
from portside.realtime.redis_bus import RedisBus
from portside.realtime.redis_sub import MAX_LINE, Parser, ProtocolError, command

STREAM = (
    b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
    b"+OK\r\n-ERR bad thing\r\n$-1\r\n*-1\r\n$0\r\n\r\n"
    b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$12\r\nhello\r\nworld\r\n"
    b"*2\r\n*1\r\n:-7\r\n*0\r\n"
)


def normal(replies: list[object]) -> list[object]:
    return [f"error: {r}" if isinstance(r, ResponseError) else r for r in replies]


EXPECTED = [
    [b"subscribe", b"ch", 1],
    b"OK",
    "error: ERR bad thing",
    None,
    None,
    b"",
    [b"message", b"ch", b"hello\r\nworld"],  # a CRLF inside a bulk string is data
    [[-7], []],
]


def test_parser_reads_every_reply_type_at_once() -> None:
    p = Parser()
    p.feed(STREAM)
    assert normal(p.replies()) == EXPECTED
    assert p.replies() == []


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 13])
def test_parser_joins_replies_split_anywhere(size: int) -> None:
    p = Parser()
    got: list[object] = []
    for i in range(0, len(STREAM), size):
        p.feed(STREAM[i : i + size])
        got += p.replies()
    assert normal(got) == EXPECTED


@pytest.mark.parametrize(
    "junk",
    [b"?what\r\n", b"$abc\r\n", b"*x\r\n", b"$3\r\nabcXY", b"$999999999999\r\n", b"+" + b"a" * MAX_LINE],
)
def test_parser_refuses_what_is_not_resp(junk: bytes) -> None:
    p = Parser()
    p.feed(b"+OK\r\n" + junk)
    with pytest.raises(ProtocolError):
        p.replies()


def test_command_encoding() -> None:
    assert command("SUBSCRIBE", b"a b") == b"*2\r\n$9\r\nSUBSCRIBE\r\n$3\r\na b\r\n"


class SilentRedis:
    """Confirms the subscription like Redis, then never answers again (a link that died without a FIN)."""

    def __init__(self) -> None:
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        buf = b""
        while b"SUBSCRIBE" not in buf:
            chunk = await reader.read(4096)
            if not chunk:
                return
            buf += chunk
        writer.write(b"+OK\r\n*3\r\n$9\r\nsubscribe\r\n$4\r\nchan\r\n:1\r\n")
        await writer.drain()
        while await reader.read(4096):  # pings are read and ignored
            pass


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    async with database.engine.begin() as conn:
        await conn.run_sync(events.event_metadata.create_all)
    yield database
    await database.dispose()


async def test_a_silent_subscription_is_dropped_and_made_again(db: Database) -> None:
    fake = SilentRedis()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    bus = RedisBus(db, f"redis://127.0.0.1:{port}/0", "chan")
    bus.ping_interval = 0.05
    bus.reconnect_delay = 0.01
    try:
        async with bus:
            assert bus.connected and fake.connections == 1
            for _ in range(200):  # three silent ping intervals, then a fresh subscription
                if bus.reconnects >= 1:
                    break
                await asyncio.sleep(0.01)
            assert bus.reconnects >= 1 and fake.connections >= 2
    finally:
        for w in fake.writers:
            w.close()
        server.close()
        await server.wait_closed()
