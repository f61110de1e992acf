"""Re-checking a Yjs room's peers when rights may have changed (table gate, row grants; changes to the user
themselves come through the session registry as `expel`/`recheck_peer`), without waiting for them to reconnect."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from portside import log
from portside.auth import access
from portside.auth.permissions import Actor
from portside.core.events import Event
from portside.realtime import yjs_protocol as yp
from portside.realtime.bus import Bus
from portside.realtime.yjs_room import CLOSE_POLICY, Peer, Room
from portside.realtime.yjs_rowbound import Recheck

logger = log.get("yjs")


class RoomRights:
    """RoomManager's rights part (a mixin: the manager's state is declared here, set by the manager)."""

    rooms: dict[str, Room]
    recheck: Recheck | None

    if TYPE_CHECKING:

        def spawn(self, coro: Awaitable[Any], name: str) -> None: ...

    def peers(self) -> list[tuple[Room, Peer]]:
        return [(room, peer) for room in self.rooms.values() for peer in room.peers]

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
        if access.changes_identity(event.table):
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
