"""A node-to-node relay over one Redis pub/sub channel: what one node publishes, every other node receives.

Each message is `node id (8 bytes) + payload`; a node skips its own. Publishing goes through a bounded
queue, batched into pipelines, and never blocks the caller (a full queue drops with a warning). The
subscription reconnects with backoff; pub/sub is at-most-once, so `on_reconnect` lets the owner re-read
what it may have missed. Users: the Yjs room relay (`yjs_relay`) and the sign-in throttle's shared counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from portside import log

logger = log.get("relay")
NODE_ID_BYTES = 8


class Relay:
    def __init__(
        self,
        url: str,
        channel: str,
        deliver: Callable[[bytes, bytes], None],
        on_reconnect: Callable[[], Awaitable[None]] | None = None,
        *,
        client_name: str = "portside-relay",
        max_queue: int = 100_000,
    ):
        """`deliver(origin node id, payload)` gets every other node's messages, on the loop, in order."""
        self.url = url
        self.channel = channel
        self.deliver = deliver
        self.on_reconnect = on_reconnect
        self.client_name = client_name
        self.node = os.urandom(NODE_ID_BYTES)
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=max_queue)
        self._pub: Redis[bytes] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.subscribed = asyncio.Event()

    async def start(self) -> None:
        self._pub = Redis.from_url(self.url)
        self._tasks = [
            asyncio.create_task(self._publisher(), name=f"{self.client_name}-pub"),
            asyncio.create_task(self._subscriber(), name=f"{self.client_name}-sub"),
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

    def publish(self, payload: bytes) -> bool:
        """Queue `payload` for the other nodes; False (dropped) when the queue is full."""
        try:
            self.queue.put_nowait(self.node + payload)
            return True
        except asyncio.QueueFull:
            return False

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
                logger.warning("%s: publish failed (%d messages): %s", self.client_name, len(batch), exc)
                await asyncio.sleep(0.2)

    async def _subscriber(self) -> None:
        delay = 0.1
        first = True
        while True:
            # named per channel (one per cluster), so one cluster's relays can be told from another's on a shared Redis
            client: Redis[bytes] = Redis.from_url(self.url, client_name=f"{self.client_name}:{self.channel}")
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
                logger.warning("%s: subscription lost: %s; retrying in %.1fs", self.client_name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()  # type: ignore[attr-defined]

    def _on_message(self, data: bytes) -> None:
        if len(data) <= NODE_ID_BYTES or data[:NODE_ID_BYTES] == self.node:
            return
        try:
            self.deliver(data[:NODE_ID_BYTES], data[NODE_ID_BYTES:])
        except Exception:  # one bad message must not end the subscription
            logger.exception("%s: delivery failed", self.client_name)
