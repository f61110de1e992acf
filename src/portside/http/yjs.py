"""Collaborative editing endpoints (y-websocket protocol): standalone and row-bound Yjs rooms.

- `/yjs/{room}`: a standalone room for any signed-in user. The name is normalised by `tools.names` (NFC,
  exact; control characters and edge spaces refused). A name of the canonical form `{table}.{uuid}.{column}`
  (the UUID in any accepted spelling) is never standalone: it is the row-bound room and gets the row checks
  below (GHSA-wj7x-58c2-5793); a name that only reads as one (look-alike dots, full-width letters, case,
  spaces: `todo<U+FF0E>{uuid}<U+FF0E>body`) is refused with 400.
- `/live/{table}/{reference_id}/{column}/yjs`: the row-bound room of a `file.*` column.

Checks before the upgrade (each refusal carries its error kind in the `Portside-Error-Code` header): no or bad
token → 403; unknown table, column not `file.*`, missing row or a row
the caller may not read → 404; malformed reference id → 400. May update → read-write, may read → read-only.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from portside import log
from portside.actions.yjs_binding import row_access
from portside.auth.permissions import Actor
from portside.core.yjs_store import MAX_ROOM_NAME
from portside.errors import Kind, PortsideError
from portside.http.common import actor as caller
from portside.http.common import deny, open_session, origin_refusal, services, token_of
from portside.http.wire import DirectWire, binary_frame
from portside.realtime.yjs_output import Flusher, coalesce
from portside.realtime.yjs_rooms import (
    CLOSE_ERROR,
    CLOSE_TOO_BIG,
    CLOSE_TOO_SLOW,
    Binding,
    Peer,
    RoomManager,
)
from portside.tools import names
from portside.tools.ids import parse_uuid
from portside.tools.wire_errors import ws_close_code

logger = log.get("yjs")
QUEUE_SIZE = 4096
MAX_BACKLOG = 1 << 20  # bytes written to a socket but not yet taken by the kernel: beyond this, messages queue
CLOSE_UNSUPPORTED = ws_close_code(Kind.UNSUPPORTED_MEDIA_TYPE)
CLOSE_GRACE = 3.0  # seconds a closing peer has to answer the close frame


def canonical_parts(name: str) -> tuple[str, str, str] | None:
    """(table, ref, column) when `name` could name a row-bound room, whatever the UUID's spelling."""
    parts = name.split(".")
    if len(parts) == 3 and parse_uuid(parts[1]) is not None:
        return parts[0], parts[1], parts[2]
    return None


def standalone_name(raw: str) -> tuple[str | None, tuple[str, str, str] | None, str]:
    """(standalone room name, row-bound parts, refusal): how a `/yjs/{room}` name is served."""
    try:
        name = names.identifier(raw, "room name", MAX_ROOM_NAME)
    except names.BadName as exc:
        return None, None, str(exc)
    parts = canonical_parts(name)
    if parts is not None:
        return None, parts, ""
    if names.reads_as_row_room(name):
        return None, None, "room name reads as a row-bound room (table.id.column): use that exact name"
    return name, None, ""


class Connection:
    """One socket's output. While the peer keeps up, messages go straight to the socket as pre-built frames
    (`DirectWire`); the frames offered to one socket during one turn of the event loop are written together,
    in one system call (a burst of relayed edits costs each peer one write, not one per edit). Once more
    than MAX_BACKLOG bytes wait for the peer, messages queue instead, in order, and a writer task sends them
    through ASGI (which waits for the socket to drain), merging runs of queued document updates into one
    update, so a slow peer costs one frame per drain instead of one per edit. More than QUEUE_SIZE queued
    messages close the peer (1013). Without the direct path every message queues.
    """

    def __init__(self, ws: WebSocket, output: Flusher):
        self.ws = ws
        self.output = output
        self.wire = DirectWire.of(ws.scope)
        self.out: list[bytes] = []  # frames offered this turn of the loop, written by `flush`
        self.out_messages: list[bytes] = []  # the same, unframed, in case they have to queue after all
        self.buffer: collections.deque[bytes] = collections.deque()
        self.draining = False  # the writer is sending a batch: new messages queue behind it
        self.ready = asyncio.Event()
        self.closing: tuple[int, str] | None = None
        self.reader: asyncio.Task[Any] | None = None

    @property
    def direct(self) -> bool:
        """Messages may go straight to the socket: the direct path exists and nothing queued is ahead."""
        return self.wire is not None and not self.buffer and not self.draining and self.closing is None

    def offer(self, message: bytes) -> bool:
        return self.offer_framed(message, binary_frame(message)) if self.direct else self.enqueue(message)

    def offer_framed(self, message: bytes, frame: bytes) -> bool:
        if not self.direct:
            return self.enqueue(message)
        if not self.out:
            self.output.add(self)
        self.out.append(frame)
        self.out_messages.append(message)
        return True

    def flush(self) -> None:
        frames, messages = self.out, self.out_messages
        self.out, self.out_messages = [], []
        if not frames or self.closing is not None:
            return
        sent = 0
        if self.direct and self.wire is not None:
            # only as many frames as fit under the backlog limit (one relayed batch can hold a thousand
            # updates); the first always goes while the socket is below the limit
            room, size = MAX_BACKLOG - self.wire.backlog, 0
            while sent < len(frames) and room > 0 and (sent == 0 or size + len(frames[sent]) <= room):
                size += len(frames[sent])
                sent += 1
            if sent:
                data = frames[0] if sent == 1 else b"".join(frames[:sent])
                if not self.wire.send(data, MAX_BACKLOG):
                    sent = 0
        for message in messages[sent:]:
            if not self.enqueue(message):
                self.close_later(CLOSE_TOO_SLOW, "too slow: send queue full")
                return

    def enqueue(self, message: bytes) -> bool:
        if self.closing is not None:
            return True  # going away: nothing more is sent
        if len(self.buffer) >= QUEUE_SIZE:
            return False
        self.buffer.append(message)
        self.ready.set()
        return True

    def close_later(self, code: int, reason: str) -> None:
        if self.closing is None:
            self.closing = (code, reason[:120])
            self.ready.set()
            # a peer that stops reading never lets the writer reach the close frame: drop it after a grace
            asyncio.get_running_loop().call_later(CLOSE_GRACE, self.give_up)

    def give_up(self) -> None:
        if self.reader is not None and not self.reader.done():
            if self.wire is not None:
                self.wire.abort()
            self.reader.cancel()

    async def writer(self) -> None:
        send = self.ws.send
        while True:
            await self.ready.wait()
            self.ready.clear()
            while self.buffer:
                batch = list(self.buffer)
                self.buffer.clear()
                self.draining = True
                try:
                    for frame in coalesce(batch):
                        await send({"type": "websocket.send", "bytes": frame})
                finally:
                    self.draining = False
            if self.closing is not None:
                with contextlib.suppress(Exception):
                    await self.ws.close(*self.closing)
                return  # the client answers the close, ending the session; if it does not, `give_up` does


async def serve(
    ws: WebSocket, name: str | None, bound: tuple[str, str, str] | None, refusal: str = "invalid room name"
) -> None:
    svc = services(ws)
    manager = svc.yjs
    if manager is None or not manager.enabled:
        await deny(ws, Kind.NOT_FOUND, "collaborative editing is disabled")
        return
    if token_of(ws) is None:
        await deny(ws, Kind.UNAUTHORIZED, "a token is required", 403)
        return
    try:
        who = await caller(ws)
    except PortsideError as exc:
        await deny(ws, exc.kind, f"forbidden: {exc.detail}", 403)
        return
    if who.is_guest:
        await deny(ws, Kind.UNAUTHORIZED, "a token is required", 403)
        return
    refused = origin_refusal(ws)  # cross-site WebSocket hijacking with the user's cookie
    if refused is not None:
        await deny(ws, Kind.FORBIDDEN, refused)
        return
    binding: Binding | None = None
    readonly = False
    if bound is not None:
        try:
            binding, readonly = await row_access(svc, who, *bound)
        except PortsideError as exc:
            await deny(ws, exc.kind, exc.detail)
            return
        name = binding.room
    elif name is None:
        await deny(ws, Kind.BAD_REQUEST, refusal)
        return
    await ws.accept()
    await run_session(ws, manager, name, binding, who, readonly)


async def run_session(
    ws: WebSocket, manager: RoomManager, name: str, binding: Binding | None, who: Actor, readonly: bool
) -> None:
    conn = Connection(ws, manager.output)
    peer = Peer(conn.offer, conn.close_later, who, readonly)
    if conn.wire is not None:
        peer.frame, peer.send_framed = binary_frame, conn.offer_framed
    else:
        logger.warning("yjs: direct frame path unavailable, using ASGI sends (slower fan-out)")
    try:
        room = await manager.join(name, peer, binding)
    except Exception:
        logger.exception("could not open yjs room %s", name)
        await ws.close(CLOSE_ERROR, "could not open the document")
        return
    unregister = open_session(
        ws,
        who,
        "yjs",
        recheck=lambda fresh: manager.recheck_peer(room, peer, fresh),
        end=lambda reason: manager.expel(peer, reason),
    )
    writer = asyncio.create_task(conn.writer())
    conn.reader = asyncio.current_task()

    def handle(data: bytes) -> None:
        if conn.closing is not None:
            return  # closing: input is no longer processed
        limit = manager.limit("yjs.max_message_bytes")
        if len(data) > limit:
            conn.close_later(CLOSE_TOO_BIG, f"message larger than {limit} bytes")
            return
        manager.receive(room, peer, data)

    def sink(data: bytes) -> None:
        handle(data)
        if manager.writer.backlogged and wire is not None:
            wire.hold()
            manager.writer.when_drained(wire.release)

    wire = conn.wire
    direct_input = wire is not None and wire.set_sink(sink)
    try:
        while True:
            message = await ws.receive()  # with the direct input path: only text, close and disconnect
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None:
                if conn.closing is None:
                    conn.close_later(CLOSE_UNSUPPORTED, "binary frames only")
                continue
            handle(data)
            if manager.writer.backlogged:
                await manager.writer.drained()
    except (WebSocketDisconnect, asyncio.CancelledError):
        return
    finally:
        if direct_input and wire is not None:
            wire.set_sink(None)
        unregister()
        manager.leave(room, peer)
        if not writer.done():
            writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer


async def standalone(ws: WebSocket) -> None:
    name, parts, refusal = standalone_name(ws.path_params["room"])
    await serve(ws, name, parts, refusal or "invalid room name")


async def row_bound(ws: WebSocket) -> None:
    p = ws.path_params
    await serve(ws, None, (p["table"], p["ref"], p["column"]))


routes = [
    WebSocketRoute("/yjs/{room}", standalone),
    WebSocketRoute("/live/{table}/{ref}/{column}/yjs", row_bound),
]
