"""Batched output to Yjs peers, transport-neutral: frames offered during one turn of the event loop are
written together once the turn's callbacks have run, and a slow peer's queued messages are coalesced."""

from __future__ import annotations

import asyncio
from typing import Protocol

from pycrdt import merge_updates

from portside import log
from portside.realtime import yjs_protocol as yp

logger = log.get("yjs")


class Flushable(Protocol):
    def flush(self) -> None: ...


class Flusher:
    """Writes every connection's frames of this loop turn once the turn's callbacks have run."""

    def __init__(self) -> None:
        self.dirty: list[Flushable] = []

    def add(self, conn: Flushable) -> None:
        if not self.dirty:
            asyncio.get_running_loop().call_soon(self.flush)
        self.dirty.append(conn)

    def flush(self) -> None:
        dirty, self.dirty = self.dirty, []
        for conn in dirty:
            try:
                conn.flush()
            except Exception:  # one broken socket must not keep the others' frames back
                logger.exception("yjs: writing to a peer failed")


def coalesce(batch: list[bytes]) -> list[bytes]:
    """The frames to send for `batch`: all document updates merged into one update, all awareness entries
    into one awareness message (the latest entry per client), other messages unchanged and in order.

    Document updates commute and awareness is independent of the document, so moving them is safe; it
    turns a burst (e.g. every client renewing its presence at once) into two frames per peer.
    """
    if len(batch) == 1:
        return batch
    others: list[bytes] = []
    updates: list[bytes] = []
    presence: dict[int, yp.AwarenessEntry] = {}
    for message in batch:
        try:
            if len(message) > 2 and message[0] == yp.MSG_SYNC and message[1] == yp.SYNC_UPDATE:
                r = yp.Reader(message)
                r.varuint()
                r.varuint()
                updates.append(r.bytes())
                continue
            if message and message[0] == yp.MSG_AWARENESS:
                (m,) = yp.decode(message)
                for e in yp.decode_awareness(m.payload):
                    presence[e.client_id] = e
                continue
        except (yp.ProtocolError, ValueError):
            pass
        others.append(message)
    if updates:
        others.append(yp.update_message(updates[0] if len(updates) == 1 else merge_updates(*updates)))
    if presence:
        others.append(yp.encode_awareness(list(presence.values())))
    return others
