"""Awareness (presence) in a Yjs room: applied as y-protocols does, relayed only when it changed something."""

from __future__ import annotations

from collections.abc import Callable

from portside.realtime import yjs_protocol as yp
from portside.realtime.yjs_room import CLOSE_BAD_DATA, MAX_AWARENESS_ENTRIES, Peer, Room


class Presence:
    """RoomManager's awareness part (a mixin: `publish` is the manager's cross-node relay)."""

    publish: Callable[[str, bytes], None] | None

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
