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


class _Conn:
    close_sent: object = None
    extensions: list[object] = []


class _Proto:
    def __init__(self) -> None:
        self.conn = _Conn()
        self.close_sent = self.disconnected = False


class _Transport:
    """What DirectWire uses of an asyncio transport: the written bytes and the buffered count."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.buffered = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def abort(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


def test_poster_follows_the_rules_of_send() -> None:
    """The fan-out poster writes whole frames while the socket is open and keeps up, drops them (True) once a
    close frame went out or the transport closes, and refuses (False, `on_full`) beyond the backlog limit."""
    from portside.http.wire import DirectWire

    proto, transport = _Proto(), _Transport()
    full: list[int] = []
    post = DirectWire(proto, transport).poster(100, lambda: full.append(1))
    assert post(b"a") and post(b"b") and transport.out == [b"a", b"b"]
    transport.buffered = 101
    assert not post(b"c") and full == [1] and transport.out == [b"a", b"b"]
    transport.buffered = 100
    assert post(b"d") and transport.out[-1] == b"d"
    for closed in ("proto", "conn", "transport"):
        p, t = _Proto(), _Transport()
        if closed == "proto":
            p.close_sent = True
        elif closed == "conn":
            p.conn.close_sent = object()
        else:
            t.closing = True
        assert DirectWire(p, t).poster(100, lambda: full.append(2))(b"x") and t.out == [], closed
    assert full == [1]
