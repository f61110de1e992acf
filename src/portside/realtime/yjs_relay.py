"""Cross-node relay for Yjs rooms over one Redis pub/sub channel (`relay.Relay`).

Each payload is `varbytes(room name) + y-protocols message`. A node publishes the updates it accepted
(already stored by it) and its peers' awareness; other nodes apply them to their loaded copy of the room
and fan them out, never storing them again. Publishing is batched through a queue and never blocks a room.
Pub/sub is at-most-once: after the subscription reconnects, `on_reconnect` lets the rooms re-read their
stored updates.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from portside import log
from portside.realtime import yjs_protocol as yp
from portside.realtime.relay import Relay

logger = log.get("yjs.relay")
CLIENT_NAME = "portside-yjs-relay"  # how the subscription shows in Redis `CLIENT LIST`: `NAME:<channel>`


class RedisRelay(Relay):
    def __init__(
        self,
        url: str,
        channel: str,
        deliver: Callable[[str, bytes], None],
        on_reconnect: Callable[[], Awaitable[None]] | None = None,
    ):
        super().__init__(url, channel, self._on_payload, on_reconnect, client_name=CLIENT_NAME)
        self.deliver_room = deliver

    def publish_room(self, room: str, message: bytes) -> None:
        out = bytearray()
        yp.write_bytes(out, room.encode())
        out += message
        if not self.publish(bytes(out)):
            logger.warning("yjs relay queue full: dropping a message for %s", room)

    def _on_payload(self, origin: bytes, payload: bytes) -> None:
        r = yp.Reader(payload)
        try:
            room = r.string()
        except yp.ProtocolError:
            return
        self.deliver_room(room, payload[r.pos :])
