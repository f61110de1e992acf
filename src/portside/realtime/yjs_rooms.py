"""Yjs rooms: the authoritative document per room (pycrdt), its peers, awareness, persistence and relay.

Transport-neutral: a Peer is two callables (enqueue bytes without waiting, close with a code) plus who it is.
Every accepted update is applied to the room's Doc, made durable (group commit into `_yjs_document`), and
only then relayed to the room's other peers and, in a cluster, to the other nodes. Row-bound rooms (named
`{table}.{ref}.{column}`) get their seed, write-back and access checks through hooks the edge installs,
because those need the permission-aware row operations of a higher layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Doc, Text, TransactionEvent

from portside import log
from portside.auth.permissions import Actor
from portside.core import yjs_store
from portside.core.config import ConfigStore
from portside.core.db import Database
from portside.core.events import Event
from portside.core.model import MEMBERSHIP
from portside.errors import Kind
from portside.realtime import yjs_protocol as yp
from portside.realtime.bus import Bus
from portside.tools.wire_errors import ws_close_code

logger = log.get("yjs")

# close codes: the error kinds these closes stand for, through the one WebSocket mapping (tools.wire_errors)
CLOSE_GOING_AWAY = ws_close_code(Kind.GOING_AWAY)
CLOSE_BAD_DATA = ws_close_code(Kind.BAD_REQUEST)
CLOSE_POLICY = ws_close_code(Kind.FORBIDDEN)
CLOSE_TOO_BIG = ws_close_code(Kind.PAYLOAD_TOO_LARGE)
CLOSE_ERROR = ws_close_code(Kind.INTERNAL)
CLOSE_TOO_SLOW = ws_close_code(Kind.TOO_SLOW)

SEED_CLIENT_ID = 1  # seeds are made with one fixed client id, so two nodes seeding the same text agree
EMPTY_UPDATE = b"\x00\x00"
MAX_AWARENESS_ENTRIES = 10_000
WRITEBACK_DEBOUNCE = 1.0  # seconds after the last edit
WRITEBACK_MAX_DELAY = 9.0  # seconds after the first unwritten edit, during continuous editing
DEFAULTS = {
    "yjs.max_message_bytes": 1024 * 1024,
    "yjs.max_document_bytes": 16 * 1024 * 1024,
    "yjs.idle_unload_seconds": 30,
    "yjs.compact_after": 500,
}

Content = str | bytes  # a bound column's content: text, or a Yjs update (an `x-crdt/yjs` file)


@dataclass(frozen=True)
class Binding:
    """A room bound to a row's file column."""

    table: str
    ref: str
    column: str
    text_name: str = "content"

    @property
    def room(self) -> str:
        return f"{self.table}.{self.ref}.{self.column}"


@dataclass(eq=False)
class Peer:
    """One client of a room, as the transport presents it.

    `send` takes a message without waiting (False when the peer cannot take more). A transport that can
    write one pre-encoded frame to many peers also gives `frame` (message -> frame, the same function
    object for all such peers) and `send_framed` (message, its frame): a broadcast then encodes once.
    """

    send: Callable[[bytes], bool]
    close: Callable[[int, str], None]
    actor: Actor
    readonly: bool = False
    awareness_ids: set[int] = field(default_factory=set)
    frame: Callable[[bytes], bytes] | None = None
    send_framed: Callable[[bytes, bytes], bool] | None = None


class Room:
    def __init__(self, name: str, binding: Binding | None):
        self.name = name
        self.binding = binding
        self.doc: Doc[Any] = Doc()
        self.peers: set[Peer] = set()
        self.awareness: dict[int, tuple[int, str]] = {}  # client id -> (clock, JSON state)
        self.size = 0  # bytes stored for this room (snapshot + updates since)
        self.stored_rows = 0
        self.idle_since = time.monotonic()
        self.loaded = asyncio.Event()
        self.failed: BaseException | None = None
        self.early: list[bytes] | None = []  # remote messages that arrive while loading
        self.closed = False
        # row-bound rooms
        # the column's content as last seen or written: text, or a Yjs update (an `x-crdt/yjs` file)
        self.column_text: Content | None = None
        self.own_texts: list[Content] = []  # contents this node is writing back right now
        self.editor: Actor | None = None
        self.dirty_since: float | None = None
        self.last_edit = 0.0
        self.writeback: asyncio.Task[None] | None = None
        self.compacting = False
        # compaction comes after `yjs.compact_after` stored rows give or take a quarter, so rooms loaded
        # together and edited at the same pace do not all compact at the same moment
        self.compact_factor = random.uniform(0.75, 1.25)
        self._captured: list[bytes] = []
        self._sub = self.doc.observe(self._on_change)

    def _on_change(self, event: TransactionEvent) -> None:
        self._captured.append(event.update)

    def integrate(self, update: bytes) -> bytes | None:
        """Apply an update; the part that was new to the document, or None. Raises ValueError if malformed."""
        self._captured = []
        self.doc.apply_update(update)
        captured, self._captured = self._captured, []
        delta = b"".join(captured) if len(captured) == 1 else None
        if len(captured) > 1:
            from pycrdt import merge_updates

            delta = merge_updates(*captured)
        return None if delta is None or delta == EMPTY_UPDATE else delta

    def content(self) -> Content | None:
        """What a write-back stores: the whole document as one Yjs update when the column holds Yjs state
        (an `x-crdt/yjs` file), else the bound text."""
        if isinstance(self.column_text, bytes):
            return self.doc.get_update()
        return self.text()

    def text(self) -> str | None:
        if self.binding is None:
            return None
        try:
            return str(self.doc.get(self.binding.text_name, type=Text))
        except Exception:  # the shared name holds another type (e.g. an XML fragment)
            return None

    def replace_text(self, text: str) -> bytes | None:
        """Make the bound text equal `text`; the resulting update (or None when nothing changed)."""
        assert self.binding is not None
        t = self.doc.get(self.binding.text_name, type=Text)
        if str(t) == text:
            return None
        self._captured = []
        with self.doc.transaction():
            if len(t):
                del t[0 : len(t)]
            if text:
                t.insert(0, text)
        captured, self._captured = self._captured, []
        if not captured:
            return None
        from pycrdt import merge_updates

        return captured[0] if len(captured) == 1 else merge_updates(*captured)

    def broadcast(self, message: bytes, exclude: Peer | None = None) -> None:
        framer: Callable[[bytes], bytes] | None = None
        frame = b""
        for peer in tuple(self.peers):
            if peer is exclude:
                continue
            f, send_framed = peer.frame, peer.send_framed
            if f is None or send_framed is None:
                ok = peer.send(message)
            else:
                if f is not framer:
                    framer, frame = f, f(message)
                ok = send_framed(message, frame)
            if not ok:
                peer.close(CLOSE_TOO_SLOW, "too slow: send queue full")

    def awareness_message(self) -> bytes:
        entries = [yp.AwarenessEntry(cid, clock, state) for cid, (clock, state) in self.awareness.items()]
        return yp.encode_awareness(entries)


def seed_of(content: Content | None, name: str) -> bytes | None:
    """The update that seeds a row-bound document from its column: a stored Yjs update as it is (when it is
    one: a malformed one seeds nothing), text into the `Text` named `name`."""
    if isinstance(content, bytes):
        if not content or content == EMPTY_UPDATE:
            return None
        try:
            Doc().apply_update(content)
        except Exception:  # pycrdt raises its own error types for undecodable updates
            logger.warning("yjs: the column's x-crdt/yjs file is not a Yjs update; starting empty")
            return None
        return content
    return seed_update(content, name) if content else None


def seed_update(text: str, name: str) -> bytes:
    doc: Doc[Any] = Doc(client_id=SEED_CLIENT_ID)
    doc.get(name, type=Text).insert(0, text)
    return doc.get_update()


def merge(updates: list[bytes]) -> bytes:
    doc: Doc[Any] = Doc()
    for u in updates:
        doc.apply_update(u)
    return doc.get_update()


Stored = Callable[[BaseException | None], None]  # told once the update is committed (None) or failed


class UpdateWriter:
    """Group commit: updates submitted from every room meanwhile go into one transaction; each submitter is
    told once its row is committed (its relay happens then). Submitting never waits: a reader hands an update
    over and goes on reading, so the updates read in one turn of the event loop are committed together in the
    next. When more than MAX_PENDING updates wait (a database slower than the input), `backlogged` is true and
    readers should pause until `when_drained` calls them back. `after_batch` hooks run after each batch's
    callbacks (the edge writes out the frames the batch relayed).
    """

    MAX_PENDING = 10_000

    def __init__(self, db: Database, batch: int = 1000):
        self.appender = yjs_store.Appender(db)
        self.batch = batch
        self.pending: list[tuple[str, bytes, Stored]] = []
        self.after_batch: list[Callable[[], None]] = []
        self._wake = asyncio.Event()
        self._resumers: list[Callable[[], None]] = []
        self.task: asyncio.Task[None] | None = None
        self._checkpoint: asyncio.Task[None] | None = None
        self.commits = 0

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self._run(), name="portside-yjs-writer")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
            self.task = None
        while self.pending:  # what was accepted is stored before the process goes
            await self._commit(self._take())
        if self._checkpoint is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._checkpoint
        self.appender.close()

    def submit(self, room: str, data: bytes, done: Stored) -> None:
        self.pending.append((room, data, done))
        self._wake.set()

    def holds(self, room: str) -> bool:
        """Whether updates of `room` still wait for their commit."""
        return any(item[0] == room for item in self.pending)

    def discard(self, room: str) -> None:
        """Forget the waiting updates of a room whose document is being dropped; their submitters are told
        they were not stored (a `store` waiter must not wait forever)."""
        dropped = [item for item in self.pending if item[0] == room]
        if not dropped:
            return
        self.pending = [item for item in self.pending if item[0] != room]
        gone = RuntimeError(f"the document of {room} was dropped")
        for _, _, done in dropped:
            try:
                done(gone)
            except Exception:
                logger.exception("telling a dropped yjs update's submitter failed")

    @property
    def backlogged(self) -> bool:
        return len(self.pending) > self.MAX_PENDING

    def when_drained(self, resume: Callable[[], None]) -> None:
        """Call `resume` once the backlog is down to half of MAX_PENDING (now, if it already is)."""
        if len(self.pending) <= self.MAX_PENDING // 2:
            resume()
        else:
            self._resumers.append(resume)

    async def drained(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def resume() -> None:
            if not fut.done():
                fut.set_result(None)

        self.when_drained(resume)
        await fut

    async def store(self, room: str, data: bytes) -> None:
        """Store one update and wait for its commit."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def done(exc: BaseException | None) -> None:
            if not fut.done():
                fut.set_result(None) if exc is None else fut.set_exception(exc)

        self.submit(room, data, done)
        await fut

    def _take(self) -> list[tuple[str, bytes, Stored]]:
        items = self.pending[: self.batch]
        del self.pending[: self.batch]
        return items

    async def _run(self) -> None:
        while True:
            if not self.pending:
                self._wake.clear()
                await self._wake.wait()
            await self._commit(self._take())
            for hook in self.after_batch:
                try:
                    hook()
                except Exception:
                    logger.exception("yjs after-batch hook failed")
            if self._resumers and len(self.pending) <= self.MAX_PENDING // 2:
                resumers, self._resumers = self._resumers, []
                for resume in resumers:
                    resume()
            if self.appender.checkpoint_due and (self._checkpoint is None or self._checkpoint.done()):
                self._checkpoint = asyncio.create_task(self._run_checkpoint(), name="portside-yjs-checkpoint")

    async def _commit(self, items: list[tuple[str, bytes, Stored]]) -> None:
        outcome: BaseException | None = None
        try:
            await self.appender.append([(room, data) for room, data, _ in items])
            self.commits += 1
        except Exception as exc:
            logger.exception("storing %d yjs updates failed", len(items))
            outcome = exc
        for _, _, done in items:
            try:
                done(outcome)
            except Exception:  # one failing relay must not keep the others from theirs
                logger.exception("relaying a stored yjs update failed")

    async def _run_checkpoint(self) -> None:
        """In the background: the writer goes on appending while the log is copied."""
        try:
            await self.appender.checkpoint()
        except Exception:
            logger.exception("checkpoint of the write-ahead log failed")


Seed = Callable[[Binding], Awaitable[Content | None]]
WriteBack = Callable[[Binding, Content, Actor], Awaitable[None]]
Publish = Callable[[str, bytes], None]
Recheck = Callable[[Actor, Binding], Awaitable[str | None]]  # "rw", "ro" or None (no access)


class RoomManager:
    def __init__(self, db: Database, config: ConfigStore):
        self.db = db
        self.config = config
        self.rooms: dict[str, Room] = {}
        self.writer = UpdateWriter(db)
        self.seed: Seed | None = None
        self.write_back: WriteBack | None = None
        self.publish: Publish | None = None  # cross-node relay, set when clustered
        self.recheck: Recheck | None = None
        self._watch: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tick: asyncio.Task[None] | None = None

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

    def apply(self, room: Room, peer: Peer, update: bytes) -> bool:
        """Apply a peer's update to the document and submit it; it is relayed once committed."""
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

        def stored(failure: BaseException | None) -> None:
            if failure is not None:
                peer.close(CLOSE_ERROR, "could not store the update")
                return
            self._relay_stored(room, delta, exclude=peer)
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
        room.stored_rows += 1
        message = yp.update_message(update)
        room.broadcast(message, exclude=exclude)
        if self.publish is not None:
            self.publish(room.name, message)

    def awareness(self, room: Room, peer: Peer, payload: bytes) -> bool:
        try:
            entries = yp.decode_awareness(payload)
        except yp.ProtocolError as exc:
            peer.close(CLOSE_BAD_DATA, f"malformed awareness update: {exc}"[:120])
            return False
        changed = self._apply_awareness(room, entries, peer)
        if changed:
            message = yp.encode_awareness(changed)
            room.broadcast(message, exclude=peer)
            if self.publish is not None:
                self.publish(room.name, message)
        return True

    def _apply_awareness(
        self, room: Room, entries: list[yp.AwarenessEntry], peer: Peer | None
    ) -> list[yp.AwarenessEntry]:
        """Apply entries as y-protocols does (a state replaces an older clock; `null` at the same or a newer
        clock removes it); the entries that changed the room's state, the only ones worth relaying.

        Stock y-websocket clients re-send every presence change they receive, so each renewal comes back
        from every other client of the room with the clock the room already has: relaying those would
        multiply presence traffic by the room's size.
        """
        changed = []
        for e in entries:
            current = room.awareness.get(e.client_id)
            if e.state == "null":
                if current is not None and current[0] <= e.clock:
                    del room.awareness[e.client_id]
                    changed.append(e)
                if peer is not None:
                    peer.awareness_ids.discard(e.client_id)
                continue
            if current is None:
                if len(room.awareness) >= MAX_AWARENESS_ENTRIES:
                    continue
                room.awareness[e.client_id] = (e.clock, e.state)
                changed.append(e)
            elif current[0] < e.clock:
                room.awareness[e.client_id] = (e.clock, e.state)
                changed.append(e)
            if peer is not None:
                peer.awareness_ids.add(e.client_id)
        return changed

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

    # -- row-bound rooms --------------------------------------------------------------------------

    def _dirty(self, room: Room, editor: Actor) -> None:
        now = time.monotonic()
        room.editor = editor
        room.last_edit = now
        if room.dirty_since is None:
            room.dirty_since = now
        if room.writeback is None or room.writeback.done():
            room.writeback = asyncio.create_task(self._writeback_loop(room), name=f"yjs-writeback-{room.name}")

    async def _writeback_loop(self, room: Room) -> None:
        while room.dirty_since is not None:
            due = min(room.last_edit + WRITEBACK_DEBOUNCE, room.dirty_since + WRITEBACK_MAX_DELAY)
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            await self._write(room)

    async def _write(self, room: Room) -> None:
        room.dirty_since = None
        text = room.content()
        editor = room.editor
        if text is None or editor is None or room.binding is None or self.write_back is None:
            return
        if text == room.column_text:
            return
        room.own_texts.append(text)
        try:
            await self.write_back(room.binding, text, editor)
            room.column_text = text
        except Exception as exc:
            logger.warning("write-back of %s failed: %s", room.name, exc)
        finally:
            room.own_texts.remove(text)

    async def _flush(self, room: Room) -> None:
        task = room.writeback
        if room.dirty_since is not None:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self._write(room)

    async def column_changed(self, binding: Binding, text: Content) -> None:
        """The row's column was written (not by our own write-back): the document takes the new text, or
        merges the new Yjs state (an `x-crdt/yjs` file)."""
        name = binding.room
        room = self.rooms.get(name)
        if room is None:
            async with self.db.read() as conn:
                if not await yjs_store.exists(conn, name):
                    return  # no document yet: it will be seeded from the column when opened
        room = await self.open(name, binding)
        room.column_text = text
        if isinstance(text, bytes):
            seed = seed_of(text, binding.text_name)
            update = room.integrate(seed) if seed is not None else None
        else:
            update = room.replace_text(text)
        if update is None:
            return
        await self.writer.store(name, update)
        room.size += len(update)
        self._relay_stored(room, update)

    async def row_deleted(self, binding: Binding) -> None:
        """The row behind a room is gone: its clients are closed and its stored document is dropped."""
        name = binding.room
        room = self.rooms.pop(name, None)
        if room is not None:
            room.closed = True
            room.dirty_since = None  # nothing left to write back into
            if room.writeback is not None:
                room.writeback.cancel()
            for peer in list(room.peers):
                peer.send(yp.permission_denied("the row was deleted"))
                peer.close(CLOSE_GOING_AWAY, "the row was deleted")
        self.writer.discard(name)  # not stored after the document is dropped
        await yjs_store.delete(self.db, name)

    def is_own_write(self, name: str, text: Content) -> bool:
        room = self.rooms.get(name)
        return room is not None and text in room.own_texts

    def peers(self) -> list[tuple[Room, Peer]]:
        return [(room, peer) for room in self.rooms.values() for peer in room.peers]

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

    # -- rights -----------------------------------------------------------------------------------

    async def _watch_rights(self, bus: Bus) -> None:
        while True:
            try:
                async with bus.subscribe() as sub:
                    async for event in sub:
                        if self.rooms:
                            self.react(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("yjs rights watcher failed; resubscribing")
                await asyncio.sleep(0.5)

    def react(self, event: Event) -> None:
        """Rights may have changed: re-check the affected peers without waiting for them to reconnect."""
        if event.table in (MEMBERSHIP, "user_account"):
            return  # identity changes reach peers through the session registry (auth/sessions.py)
        if event.table == "world":
            table = event.data.get("table_name")
            hit = [(r, p) for r, p in self.peers() if r.binding is not None and r.binding.table == table]
        elif "has_usergroup" in event.table:
            hit = [
                (r, p)
                for r, p in self.peers()
                if r.binding is not None and event.table.startswith(r.binding.table + "_")
            ]
        else:
            hit = [
                (r, p)
                for r, p in self.peers()
                if r.binding is not None and r.binding.table == event.table and r.binding.ref == event.ref
            ]
        if hit:
            self.spawn(self._recheck(hit), "yjs-recheck")

    def expel(self, peer: Peer, reason: str) -> None:
        """The peer's credentials no longer hold (session registry): close it (policy violation)."""
        peer.close(CLOSE_POLICY, reason)

    async def recheck_peer(self, room: Room, peer: Peer, fresh: Actor) -> None:
        """Same credentials, new identity (session registry): re-decide the peer's mode in a row-bound room."""
        peer.actor = fresh
        if room.binding is not None:
            await self._recheck([(room, peer)])

    async def _recheck(self, pairs: list[tuple[Room, Peer]]) -> None:
        if self.recheck is None:
            return
        for room, peer in pairs:
            if room.binding is None or peer not in room.peers:
                continue
            mode = await self.recheck(peer.actor, room.binding)
            if mode is None:
                peer.send(yp.permission_denied("permission revoked"))
                peer.close(CLOSE_POLICY, "permission revoked")
            else:
                upgraded = peer.readonly and mode == "rw"
                peer.readonly = mode != "rw"
                if upgraded:  # the client answers with whatever it has that the room lacks
                    peer.send(yp.sync_step1(room.doc.get_state()))
