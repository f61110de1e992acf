"""Cross-node relay for Yjs rooms over one Redis pub/sub channel.

Each message is `node id (8 bytes) + varbytes(room name) + y-protocols message`. A node publishes the
updates it accepted (already stored by it) and its peers' awareness; other nodes apply them to their loaded
copy of the room and fan them out, never storing them again. Publishing is batched through a queue and
never blocks a room. Pub/sub is at-most-once: after the subscription reconnects, `on_reconnect` lets the
rooms re-read their stored updates.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from portside import log
from portside.realtime import yjs_protocol as yp

logger = log.get("yjs.relay")
NODE_ID_BYTES = 8
CLIENT_NAME = "portside-yjs-relay"  # how the subscription shows in Redis `CLIENT LIST`: `NAME:<channel>`


class RedisRelay:
    def __init__(
        self,
        url: str,
        channel: str,
        deliver: Callable[[str, bytes], None],
        on_reconnect: Callable[[], Awaitable[None]] | None = None,
    ):
        self.url = url
        self.channel = channel
        self.deliver = deliver
        self.on_reconnect = on_reconnect
        self.node = os.urandom(NODE_ID_BYTES)
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=100_000)
        self._pub: Redis[bytes] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.subscribed = asyncio.Event()

    async def start(self) -> None:
        self._pub = Redis.from_url(self.url)
        self._tasks = [
            asyncio.create_task(self._publisher(), name="portside-yjs-relay-pub"),
            asyncio.create_task(self._subscriber(), name="portside-yjs-relay-sub"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.subscribed.wait(), 5)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._pub is not None:
            with contextlib.suppress(Exception):
                await self._pub.aclose()  # type: ignore[attr-defined]
            self._pub = None

    def publish(self, room: str, message: bytes) -> None:
        out = bytearray(self.node)
        yp.write_bytes(out, room.encode())
        out += message
        try:
            self.queue.put_nowait(bytes(out))
        except asyncio.QueueFull:
            logger.warning("yjs relay queue full: dropping a message for %s", room)

    async def _publisher(self) -> None:
        assert self._pub is not None
        while True:
            batch = [await self.queue.get()]
            while not self.queue.empty() and len(batch) < 500:
                batch.append(self.queue.get_nowait())
            try:
                async with self._pub.pipeline(transaction=False) as pipe:
                    for item in batch:
                        pipe.publish(self.channel, item)
                    await pipe.execute()
            except Exception as exc:
                logger.warning("yjs relay publish failed (%d messages): %s", len(batch), exc)
                await asyncio.sleep(0.2)

    async def _subscriber(self) -> None:
        delay = 0.1
        first = True
        while True:
            # named per channel (one per cluster), so one cluster's relays can be told from another's on a shared Redis
            client: Redis[bytes] = Redis.from_url(self.url, client_name=f"{CLIENT_NAME}:{self.channel}")
            try:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self.channel)
                self.subscribed.set()
                if not first and self.on_reconnect is not None:
                    await self.on_reconnect()
                first = False
                delay = 0.1
                async for msg in pubsub.listen():
                    data = msg.get("data")
                    if isinstance(data, bytes):
                        self._on_message(data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("yjs relay subscription lost: %s; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()  # type: ignore[attr-defined]

    def _on_message(self, data: bytes) -> None:
        if len(data) <= NODE_ID_BYTES or data[:NODE_ID_BYTES] == self.node:
            return
        r = yp.Reader(data[NODE_ID_BYTES:])
        try:
            room = r.string()
        except yp.ProtocolError:
            return
        message = data[NODE_ID_BYTES + r.pos :]
        try:
            self.deliver(room, message)
        except Exception:
            logger.exception("yjs relay delivery failed for %s", room)
