"""Yjs room state: a room's authoritative document (pycrdt), its peers and awareness, and the seeds of
row-bound documents. Transport-neutral: a Peer is two callables (enqueue bytes without waiting, close with a
code) plus who it is.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Doc, Text, TransactionEvent

from portside import log
from portside.auth.permissions import Actor
from portside.errors import Kind
from portside.realtime import yjs_protocol as yp
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
