"""What FETCH derives from a message's whole MIME structure (ENVELOPE, BODYSTRUCTURE, BODY), kept per process.

Parsing a message for these is most of the server's CPU on a FETCH of many messages, and clients ask for
the same messages again and again (every client that opens the mailbox, every re-sync). The cache is keyed
by a digest of the raw message bytes, not by mailbox and UID: an entry can never be stale (a row whose raw
message was rewritten through /api, or stored in another of Daptin's forms, has other bytes or simply the
same answer), so nothing needs invalidating; entries only age out (least recently used first).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from portside.imap import mime
from portside.imap.response import encode

MAX_ENTRIES = 20_000
MAX_BYTES = 32 * 1024 * 1024
ITEMS = ("ENVELOPE", "BODYSTRUCTURE", "BODY")


class ParsedCache:
    """raw-message digest -> {item: wire bytes} for the items of `ITEMS`, bounded by entries and bytes."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._entries: OrderedDict[bytes, dict[str, bytes]] = OrderedDict()
        self._size = 0

    @staticmethod
    def key(raw: bytes) -> bytes:
        return hashlib.blake2b(raw, digest_size=16).digest()

    def item(self, key: bytes, raw: bytes, name: str, entity: mime.Entity | None) -> tuple[bytes, mime.Entity | None]:
        """The wire bytes of item `name` of message `raw` (whose `key` the caller computed once), and the
        parsed entity when it had to be made (passed on to the next item and the sections)."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            found = entry.get(name)
            if found is not None:
                return found, entity
        if entity is None:
            entity = mime.Entity(raw)
        value = compute(entity, name)
        if entry is None:
            entry = self._entries[key] = {}
        entry[name] = value
        self._size += len(value)
        while self._entries and (len(self._entries) > self.max_entries or self._size > self.max_bytes):
            _, old = self._entries.popitem(last=False)
            self._size -= sum(len(v) for v in old.values())
        return value, entity


def compute(entity: mime.Entity, name: str) -> bytes:
    if name == "ENVELOPE":
        return encode(mime.envelope(entity))
    if name == "BODYSTRUCTURE":
        return mime.structure_bytes(entity)
    if name == "BODY":
        return mime.structure_bytes(entity, extended=False)
    raise ValueError(name)


CACHE = ParsedCache()  # one per process: entries are facts about bytes, shared by every session
