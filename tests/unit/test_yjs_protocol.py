"""The y-protocols codec: varuints, message framing and awareness, checked against pycrdt's own encoder."""

from __future__ import annotations

import pycrdt
import pytest
from pycrdt import Doc, Text

from portside.realtime import yjs_protocol as yp


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16383, 16384, 2**32 - 1, 2**53])
def test_varuint_round_trip_matches_lib0(value: int) -> None:
    out = bytearray()
    yp.write_varuint(out, value)
    assert bytes(out) == pycrdt.write_var_uint(value)
    assert yp.Reader(bytes(out)).varuint() == value


def test_sync_messages_match_pycrdt_and_decode() -> None:
    doc: Doc = Doc()
    doc.get("content", type=Text).insert(0, "hello")
    update = doc.get_update()
    assert yp.update_message(update) == pycrdt.create_update_message(update)
    assert yp.sync_step1(doc.get_state()) == pycrdt.create_sync_message(doc)
    frame = yp.sync_step1(b"\x00") + yp.sync_step2(update) + yp.query_awareness()
    messages = yp.decode(frame)
    assert [(m.kind, m.sub) for m in messages] == [(0, 0), (0, 1), (3, 0)]
    assert messages[1].payload == update


def test_awareness_round_trip() -> None:
    entries = [yp.AwarenessEntry(12345, 3, '{"user":"a"}'), yp.AwarenessEntry(7, 9, "null")]
    message = yp.encode_awareness(entries)
    (decoded,) = yp.decode(message)
    assert decoded.kind == yp.MSG_AWARENESS
    assert yp.decode_awareness(decoded.payload) == entries


def test_permission_denied_message() -> None:
    (m,) = yp.decode(yp.permission_denied("no"))
    assert (m.kind, m.sub, m.payload) == (yp.MSG_AUTH, 0, b"no")


@pytest.mark.parametrize(
    "frame",
    [
        b"\x00",  # sync without subtype
        b"\x00\x02\x05ab",  # truncated payload
        b"\x00\x07\x00",  # unknown sync subtype
        b"\x09",  # unknown message type
        b"\x80\x80\x80\x80\x80\x80\x80\x80\x80",  # endless varuint
        b"\x01\x03\x01\x01",  # awareness: payload shorter than declared
    ],
)
def test_malformed_frames_raise_protocol_error(frame: bytes) -> None:
    with pytest.raises(yp.ProtocolError):
        for m in yp.decode(frame):
            if m.kind == yp.MSG_AWARENESS:
                yp.decode_awareness(m.payload)


def test_malformed_awareness_payload() -> None:
    with pytest.raises(yp.ProtocolError):
        yp.decode_awareness(b"\x02\x01\x01\x02{}")  # says two entries, holds one


def test_sole_update_reads_exactly_one_update_message() -> None:
    small = b"\x01\x02\x03"
    big = bytes(range(256)) * 2  # its length takes a two-byte varuint
    for payload in (small, big, b""):
        assert yp.sole_update(yp.update_message(payload)) == payload
    assert yp.sole_update(yp.update_message(small) + yp.query_awareness()) is None  # two messages
    assert yp.sole_update(yp.update_message(small) + yp.update_message(small)) is None
    assert yp.sole_update(yp.update_message(big)[:-1]) is None  # truncated
    assert yp.sole_update(yp.sync_step2(small)) is None  # not an Update
    assert yp.sole_update(yp.sync_step1(small)) is None
    assert yp.sole_update(yp.encode_awareness([])) is None
    assert yp.sole_update(b"\x00\x02" + b"\xff" * 9) is None  # varuint too long
    assert yp.sole_update(b"\x00\x02") is None
