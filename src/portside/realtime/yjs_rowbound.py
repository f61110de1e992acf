"""Row-bound Yjs rooms (named `{table}.{ref}.{column}`): debounced write-back of the document into its row's
column, the column changed by others, the row deleted.

The row operations themselves (seed, write-back, access re-checks) need the permission-aware record service
of a higher layer: the manager gets them at construction as a `RowOps` (the runtime passes the one
`actions.yjs_binding` implements).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from portside import log
from portside.auth.permissions import Actor
from portside.core import yjs_store
from portside.core.db import Database
from portside.realtime import yjs_protocol as yp
from portside.realtime.yjs_room import CLOSE_GOING_AWAY, Binding, Content, Peer, Room, seed_of
from portside.realtime.yjs_writer import UpdateWriter

logger = log.get("yjs")

WRITEBACK_DEBOUNCE = 1.0  # seconds after the last edit
WRITEBACK_MAX_DELAY = 9.0  # seconds after the first unwritten edit, during continuous editing

Seed = Callable[[Binding], Awaitable[Content | None]]
WriteBack = Callable[[Binding, Content, Actor], Awaitable[None]]
Recheck = Callable[[Actor, Binding], Awaitable[str | None]]  # "rw", "ro" or None (no access)


class RowOps(Protocol):
    """What row-bound rooms need from the record layer."""

    async def seed(self, binding: Binding) -> Content | None:
        """The column's current content (None: no such row)."""

    async def write_back(self, binding: Binding, content: Content, editor: Actor) -> None:
        """Store the document's content in the column, as `editor` (with their rights)."""

    async def recheck(self, who: Actor, binding: Binding) -> str | None:
        """ "rw", "ro" or None (no access any more)."""


class RowBoundRooms:
    """RoomManager's row-bound part (a mixin: the manager's state is declared here, set by the manager)."""

    db: Database
    rooms: dict[str, Room]
    writer: UpdateWriter
    write_back: WriteBack | None

    if TYPE_CHECKING:

        async def open(self, name: str, binding: Binding | None) -> Room: ...

        def _relay_stored(self, room: Room, update: bytes, exclude: Peer | None = None) -> None: ...

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
