"""Yjs rooms: the room manager (registry of loaded rooms, joining and leaving, peers' messages, relay between
nodes, compaction, housekeeping).

Every accepted update is applied to the room's Doc, made durable (group commit into `_yjs_document`, see
`yjs_writer`), and only then relayed to the room's other peers and, in a cluster, to the other nodes. The
room state is in `yjs_room`, presence in `yjs_presence`, row-bound rooms (seed, write-back, column changes)
in `yjs_rowbound` with their row operations given at construction (`RowOps`), re-checks in `yjs_rights`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from portside import log
from portside.core import yjs_store
from portside.core.config import ConfigStore
from portside.core.db import Database
from portside.realtime import yjs_protocol as yp
from portside.realtime.bus import Bus
from portside.realtime.yjs_output import Flusher
from portside.realtime.yjs_presence import Presence
from portside.realtime.yjs_rights import RoomRights
from portside.realtime.yjs_room import (
    CLOSE_BAD_DATA,
    CLOSE_ERROR,
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_TOO_SLOW,
    EMPTY_UPDATE,
    Binding,
    Content,
    Peer,
    Room,
    merge,
    seed_of,
)
from portside.realtime.yjs_rowbound import Recheck, RowBoundRooms, RowOps, Seed, WriteBack
from portside.realtime.yjs_writer import UpdateWriter

__all__ = [
    "CLOSE_BAD_DATA",
    "CLOSE_ERROR",
    "CLOSE_GOING_AWAY",
    "CLOSE_POLICY",
    "CLOSE_TOO_BIG",
    "CLOSE_TOO_SLOW",
    "Binding",
    "Content",
    "Peer",
    "Room",
    "RoomManager",
    "RowOps",
    "UpdateWriter",
]

logger = log.get("yjs")

DEFAULTS = {
    "yjs.max_message_bytes": 1024 * 1024,
    "yjs.max_document_bytes": 16 * 1024 * 1024,
    "yjs.idle_unload_seconds": 30,
    "yjs.compact_after": 500,
}

Publish = Callable[[str, bytes], None]


class RoomManager(RowBoundRooms, RoomRights, Presence):
    def __init__(self, db: Database, config: ConfigStore, rows: RowOps | None = None):
        """`rows`: the row operations of row-bound rooms (without them such rooms start empty, are not
        written back and are not re-checked)."""
        self.db = db
        self.config = config
        self.rooms: dict[str, Room] = {}
        self.writer = UpdateWriter(db)
        self.output = Flusher()  # transports batch their frames per loop turn here
        self.writer.after_batch.append(self.output.flush)  # the frames a committed batch relayed go out now
        self.seed: Seed | None = rows.seed if rows is not None else None
        self.write_back: WriteBack | None = rows.write_back if rows is not None else None
        self.publish: Publish | None = None  # cross-node relay, set when clustered
        self.recheck: Recheck | None = rows.recheck if rows is not None else None
        self._watch: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tick: asyncio.Task[None] | None = None
        self.updates_applied = 0  # peers' updates integrated into a document (metrics)

    # -- settings ---------------------------------------------------------------------------------

    def limit(self, key: str) -> int:
        return self.config.get_int(key, DEFAULTS[key])

    @property
    def enabled(self) -> bool:
        return self.config.get_bool("yjs.enabled", True)

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self, bus: Bus | None = None) -> None:
        self.writer.start()
        if bus is not None and self._watch is None:
            self._watch = asyncio.create_task(self._watch_rights(bus), name="portside-yjs-rights")
        if self._tick is None:
            self._tick = asyncio.create_task(self._housekeeping(), name="portside-yjs-housekeeping")

    async def stop(self) -> None:
        for task in (self._tick, self._watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._tick = self._watch = None
        for room in list(self.rooms.values()):
            for peer in list(room.peers):
                peer.close(CLOSE_GOING_AWAY, "server shutting down")
            with contextlib.suppress(Exception):
                await self._flush(room)
        for task in list(self._tasks):
            task.cancel()
        self.rooms.clear()
        await self.writer.stop()

    def spawn(self, coro: Awaitable[Any], name: str) -> None:
        async def run() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("%s failed", name)

        task = asyncio.create_task(run(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.sweep()
            except Exception:
                logger.exception("yjs housekeeping failed")

    async def sweep(self) -> None:
        """Close every room when yjs is switched off; unload rooms idle past the timeout."""
        if not self.enabled:
            for room in list(self.rooms.values()):
                for peer in list(room.peers):
                    peer.close(CLOSE_GOING_AWAY, "collaborative editing is disabled")
        idle = self.limit("yjs.idle_unload_seconds")
        now = time.monotonic()
        for name, room in list(self.rooms.items()):
            if not room.peers and room.loaded.is_set() and now - room.idle_since >= idle:
                await self.unload(name)

    async def unload(self, name: str) -> None:
        room = self.rooms.get(name)
        if room is None or room.peers or self.writer.holds(name):  # a reload would miss uncommitted updates
            return
        del self.rooms[name]
        room.closed = True
        await self._flush(room)
        if room.stored_rows >= 10:
            await self._compact(room)

    # -- joining ----------------------------------------------------------------------------------

    async def open(self, name: str, binding: Binding | None) -> Room:
        """The loaded room (loading it from the database, or seeding it, on first use)."""
        room = self.rooms.get(name)
        if room is None:
            room = Room(name, binding)
            self.rooms[name] = room
            try:
                await self._load(room)
            except BaseException as exc:
                room.failed = exc
                self.rooms.pop(name, None)
                room.loaded.set()
                raise
            room.loaded.set()
        else:
            await room.loaded.wait()
            if room.failed is not None:
                raise RuntimeError(f"room {name} failed to load")
        return room

    async def join(self, name: str, peer: Peer, binding: Binding | None) -> Room:
        room = await self.open(name, binding)
        room.peers.add(peer)
        peer.send(yp.sync_step1(room.doc.get_state()))
        if room.awareness:
            peer.send(room.awareness_message())
        return room

    def leave(self, room: Room, peer: Peer) -> None:
        room.peers.discard(peer)
        gone = []
        for cid in peer.awareness_ids:
            entry = room.awareness.pop(cid, None)
            if entry is not None:
                gone.append(yp.AwarenessEntry(cid, entry[0] + 1, "null"))
        if gone:
            message = yp.encode_awareness(gone)
            room.broadcast(message)
            if self.publish is not None:
                self.publish(room.name, message)
        if not room.peers:
            room.idle_since = time.monotonic()

    async def _load(self, room: Room) -> None:
        async with self.db.read() as conn:
            rows = await yjs_store.load(conn, room.name)
        for row in rows:
            room.doc.apply_update(row.data)
        room.size = sum(len(r.data) for r in rows)
        room.stored_rows = len(rows)
        if not rows and room.binding is not None and self.seed is not None:
            content = await self.seed(room.binding)
            room.column_text = content
            update = seed_of(content, room.binding.text_name)
            if update is not None:
                room.doc.apply_update(update)  # in the document before it is stored (compaction relies on it)
                await self.writer.store(room.name, update)
                room.size, room.stored_rows = len(update), 1
        elif room.binding is not None and self.seed is not None:
            room.column_text = await self.seed(room.binding)
        early, room.early = room.early or [], None
        for message in early:
            self._remote(room, message)
        if self.publish is not None:  # other nodes' peers announce themselves again (presence crosses nodes)
            self.publish(room.name, yp.query_awareness())
        if self._compaction_due(room):
            self._schedule_compaction(room)

    # -- messages from peers ----------------------------------------------------------------------

    def receive(self, room: Room, peer: Peer, frame: bytes) -> None:
        """Handle one frame from a peer, without waiting: document updates are applied and handed to the
        writer, which relays each once it is committed. Closes the peer on malformed or oversized input."""
        update = yp.sole_update(frame)
        if update is not None:  # the common frame, one edit: no general decode
            if not peer.readonly:
                self.apply(room, peer, update, frame)
            return
        try:
            messages = yp.decode(frame)
        except yp.ProtocolError as exc:
            peer.close(CLOSE_BAD_DATA, f"malformed message: {exc}"[:120])
            return
        for m in messages:
            if m.kind == yp.MSG_SYNC:
                if m.sub == yp.SYNC_STEP1:
                    try:
                        diff = room.doc.get_update(m.payload)
                    except ValueError:
                        peer.close(CLOSE_BAD_DATA, "malformed state vector")
                        return
                    peer.send(yp.sync_step2(diff))
                elif not peer.readonly and not self.apply(room, peer, m.payload):
                    return
            elif m.kind == yp.MSG_AWARENESS:
                if not self.awareness(room, peer, m.payload):
                    return
            elif m.kind == yp.MSG_QUERY_AWARENESS:
                peer.send(room.awareness_message())

    def apply(self, room: Room, peer: Peer, update: bytes, frame: bytes | None = None) -> bool:
        """Apply a peer's update to the document and submit it; it is relayed once committed. `frame`: the
        peer's message holding exactly this update, relayed as it is when the whole update was new."""
        if update == EMPTY_UPDATE:
            return True
        limit = self.limit("yjs.max_document_bytes")
        if room.size + len(update) > limit:
            peer.close(CLOSE_TOO_BIG, f"document would exceed {limit} bytes")
            return False
        try:
            delta = room.integrate(update)
        except ValueError:
            peer.close(CLOSE_BAD_DATA, "malformed update")
            return False
        if delta is None:
            return True
        room.size += len(delta)
        self.updates_applied += 1
        message = frame if frame is not None and delta == update else yp.update_message(delta)

        def stored(failure: BaseException | None) -> None:
            if failure is not None:
                peer.close(CLOSE_ERROR, "could not store the update")
                return
            self._relay_message(room, message, exclude=peer)
            if room.closed:  # unloaded, or its row deleted, meanwhile
                return
            if room.binding is not None:
                self._dirty(room, peer.actor)
            if self._compaction_due(room):
                self._schedule_compaction(room)

        self.writer.submit(room.name, delta, stored)
        return True

    def _relay_stored(self, room: Room, update: bytes, exclude: Peer | None = None) -> None:
        """A committed update goes to the room's peers and, in a cluster, to the other nodes."""
        self._relay_message(room, yp.update_message(update), exclude)

    def _relay_message(self, room: Room, message: bytes, exclude: Peer | None = None) -> None:
        """`_relay_stored` of an update already in its (y-protocols Update) message."""
        room.stored_rows += 1
        room.broadcast(message, exclude=exclude)
        if self.publish is not None:
            self.publish(room.name, message)

    # -- other nodes ------------------------------------------------------------------------------

    def on_remote(self, name: str, message: bytes) -> None:
        """A message relayed from another node: already stored there; apply and fan out here."""
        room = self.rooms.get(name)
        if room is None:
            return
        if room.early is not None:
            room.early.append(message)
            return
        self._remote(room, message)

    def _remote(self, room: Room, message: bytes) -> None:
        try:
            messages = yp.decode(message)
        except yp.ProtocolError:
            return
        for m in messages:
            if m.kind == yp.MSG_SYNC and m.sub != yp.SYNC_STEP1:
                try:
                    delta = room.integrate(m.payload)
                except ValueError:
                    continue
                if delta is not None:
                    room.size += len(delta)
                    room.broadcast(yp.update_message(delta))
            elif m.kind == yp.MSG_AWARENESS:
                try:
                    entries = yp.decode_awareness(m.payload)
                except yp.ProtocolError:
                    continue
                changed = self._apply_awareness(room, entries, None)
                if changed:
                    room.broadcast(yp.encode_awareness(changed))
            elif m.kind == yp.MSG_QUERY_AWARENESS and self.publish is not None:
                mine = [
                    yp.AwarenessEntry(cid, *room.awareness[cid])
                    for peer in room.peers
                    for cid in peer.awareness_ids
                    if cid in room.awareness
                ]
                if mine:
                    self.publish(room.name, yp.encode_awareness(mine))

    # -- compaction -------------------------------------------------------------------------------

    def _compaction_due(self, room: Room) -> bool:
        return room.stored_rows > max(1.0, room.compact_factor * self.limit("yjs.compact_after"))

    def _schedule_compaction(self, room: Room) -> None:
        if room.compacting:
            return
        room.compacting = True

        async def run() -> None:
            try:
                await self._compact(room)
            finally:
                room.compacting = False

        self.spawn(run(), f"yjs-compact-{room.name}")

    async def _compact(self, room: Room) -> None:
        """Fold the room's stored rows into one snapshot. On one node the document already holds every stored
        update, so the snapshot is its own state; in a cluster other nodes' rows may not have arrived yet, so
        the rows themselves are read and merged."""
        if self.publish is None:
            replaced, size = await self.writer.appender.replace(room.name, room.doc.get_update)
        else:
            replaced, size = await yjs_store.compact(self.db, room.name, merge)
        if replaced:
            room.stored_rows = max(1, room.stored_rows - replaced + 1)
            room.size = size

    async def resync(self) -> None:
        """Re-read every loaded room's stored updates (after relay messages may have been missed)."""
        for room in list(self.rooms.values()):
            if not room.loaded.is_set() or room.closed:
                continue
            async with self.db.read() as conn:
                rows = await yjs_store.load(conn, room.name)
            for row in rows:
                with contextlib.suppress(ValueError):
                    delta = room.integrate(row.data)
                    if delta is not None:
                        room.broadcast(yp.update_message(delta))
