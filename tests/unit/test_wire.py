"""The pre-built server frames of the direct path (/live, Yjs) parse as exactly the text a client expects."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from portside.http.wire import binary_frame, text_frame


def parse(data: bytes, count: int) -> list[Frame]:
    """`count` frames as websockets' own client-side parser reads them (server frames are unmasked)."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    for _ in range(count):
        parser = Frame.parse(reader.read_exact, mask=False)
        try:
            next(parser)
        except StopIteration as done:
            frames.append(done.value)
        else:
            raise AssertionError("incomplete frame")
    assert not reader.buffer, "bytes left over"
    return frames


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 200_000])
def test_text_frame_is_read_by_a_websocket_client(size: int) -> None:
    text = b"e" * size
    frames = parse(text_frame(text) + text_frame(b'{"type":"pong"}'), 2)
    assert [(f.opcode, f.fin, bytes(f.data)) for f in frames] == [
        (Opcode.TEXT, True, text),
        (Opcode.TEXT, True, b'{"type":"pong"}'),
    ]


@pytest.mark.parametrize("size", [0, 2, 125, 126, 65535, 65536])
def test_binary_frame_is_read_by_a_websocket_client(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    frames = parse(binary_frame(payload) + text_frame(b"x"), 2)
    assert [(f.opcode, f.fin, bytes(f.data)) for f in frames] == [
        (Opcode.BINARY, True, payload),
        (Opcode.TEXT, True, b"x"),
    ]
