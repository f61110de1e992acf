"""The y-websocket wire format (y-protocols sync + awareness), encode and decode only.

Integers are unsigned LEB128 varints (lib0 `writeVarUint`); "bytes" and strings are a varint length followed
by the raw bytes. A frame holds one or more messages, each starting with its type:

- 0 sync: varint subtype (0 SyncStep1 + state vector, 1 SyncStep2 + update, 2 Update + update)
- 1 awareness: bytes(awareness update = count, then per client: id, clock, JSON state string)
- 2 auth: varint (0 = permission denied) + string reason
- 3 query awareness: nothing follows
"""

from __future__ import annotations

from dataclasses import dataclass

MSG_SYNC = 0
MSG_AWARENESS = 1
MSG_AUTH = 2
MSG_QUERY_AWARENESS = 3

SYNC_STEP1 = 0
SYNC_STEP2 = 1
SYNC_UPDATE = 2

MAX_VARUINT_BYTES = 8  # 56 bits: client ids are 32-bit and clocks never get near this


class ProtocolError(ValueError):
    """The bytes are not a well-formed y-protocols message."""


@dataclass(frozen=True)
class Message:
    """One decoded message: `kind` (MSG_*), `sub` (sync subtype, else 0) and its payload bytes."""

    kind: int
    sub: int
    payload: bytes


@dataclass(frozen=True)
class AwarenessEntry:
    client_id: int
    clock: int
    state: str  # JSON text; "null" means the client is gone


def write_varuint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError("varuint must not be negative")
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)


def write_bytes(out: bytearray, data: bytes) -> None:
    write_varuint(out, len(data))
    out += data


class Reader:
    """A cursor over a buffer; every read checks bounds and raises ProtocolError on truncation."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)

    def varuint(self) -> int:
        value = 0
        shift = 0
        data = self.data
        for _ in range(MAX_VARUINT_BYTES):
            if self.pos >= len(data):
                raise ProtocolError("truncated varuint")
            byte = data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7
        raise ProtocolError("varuint too long")

    def bytes(self) -> bytes:
        n = self.varuint()
        end = self.pos + n
        if end > len(self.data):
            raise ProtocolError("truncated byte string")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def string(self) -> str:
        try:
            return self.bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("string is not UTF-8") from None


def decode(frame: bytes) -> list[Message]:
    """All messages in one WebSocket frame. Unknown message types end the parse (the rest is unreadable)."""
    r = Reader(frame)
    out: list[Message] = []
    while not r.done:
        kind = r.varuint()
        if kind == MSG_SYNC:
            sub = r.varuint()
            if sub not in (SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE):
                raise ProtocolError(f"unknown sync message type {sub}")
            out.append(Message(kind, sub, r.bytes()))
        elif kind == MSG_AWARENESS:
            out.append(Message(kind, 0, r.bytes()))
        elif kind == MSG_AUTH:
            sub = r.varuint()
            reason = r.bytes() if sub == 0 and not r.done else b""
            out.append(Message(kind, sub, reason))
        elif kind == MSG_QUERY_AWARENESS:
            out.append(Message(kind, 0, b""))
        else:
            raise ProtocolError(f"unknown message type {kind}")
    return out


def sole_update(frame: bytes) -> bytes | None:
    """The update when `frame` is exactly one sync Update message (the frame a client sends per edit), else
    None (several messages, another type, or malformed: `decode` then reads it, or reports the error)."""
    if len(frame) < 3 or frame[0] != MSG_SYNC or frame[1] != SYNC_UPDATE:
        return None
    n = frame[2]
    if n < 0x80:
        return frame[3:] if len(frame) == 3 + n else None
    r = Reader(frame)
    r.pos = 2
    try:
        n = r.varuint()
    except ProtocolError:
        return None
    return frame[r.pos :] if len(frame) == r.pos + n else None


def sync_message(sub: int, payload: bytes) -> bytes:
    out = bytearray()
    write_varuint(out, MSG_SYNC)
    write_varuint(out, sub)
    write_bytes(out, payload)
    return bytes(out)


def sync_step1(state_vector: bytes) -> bytes:
    return sync_message(SYNC_STEP1, state_vector)


def sync_step2(update: bytes) -> bytes:
    return sync_message(SYNC_STEP2, update)


def update_message(update: bytes) -> bytes:
    return sync_message(SYNC_UPDATE, update)


def query_awareness() -> bytes:
    return bytes([MSG_QUERY_AWARENESS])


def permission_denied(reason: str) -> bytes:
    out = bytearray()
    write_varuint(out, MSG_AUTH)
    write_varuint(out, 0)
    write_bytes(out, reason.encode())
    return bytes(out)


def decode_awareness(payload: bytes) -> list[AwarenessEntry]:
    """The entries of an awareness update (the payload of an awareness message)."""
    r = Reader(payload)
    count = r.varuint()
    if count > 100_000:
        raise ProtocolError("too many awareness entries")
    entries = []
    for _ in range(count):
        client_id = r.varuint()
        clock = r.varuint()
        entries.append(AwarenessEntry(client_id, clock, r.string()))
    return entries


def encode_awareness(entries: list[AwarenessEntry]) -> bytes:
    """An awareness message (type 1) carrying these entries."""
    body = bytearray()
    write_varuint(body, len(entries))
    for e in entries:
        write_varuint(body, e.client_id)
        write_varuint(body, e.clock)
        write_bytes(body, e.state.encode())
    out = bytearray()
    write_varuint(out, MSG_AWARENESS)
    write_bytes(out, bytes(body))
    return bytes(out)
