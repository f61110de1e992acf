"""Canary for the direct WebSocket path (http/wire.py) into uvicorn's internals.

Every uvicorn (and websockets) internal that `DirectWire`, `WebSocketProtocol`, `CaptureRawSend` and the
runtime's uvicorn configuration rely on is checked here by name, then the whole path is run for real: an
in-process uvicorn on port 0 with Portside's protocol, frames written straight to the transport and binary
messages delivered to the sink. A failure names what changed; pyproject.toml pins uvicorn to the minor
series this passed on, so an upgrade has to come through here.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
import uvicorn
import websockets
from uvicorn.config import WS_PROTOCOLS
from uvicorn.protocols.websockets import websockets_sansio_impl
from uvicorn.server import ServerState

from portside.http import wire
from portside.http.wire import CaptureRawSend, DirectWire, WebSocketProtocol, binary_frame, text_frame
from wire_support import serving

SANSIO = "WebSocketsSansIOProtocol"
# instance attributes of uvicorn's protocol read by DirectWire / WebSocketProtocol, with their type right
# after construction (`transport` is set by connection_made: checked on the live connection below)
PROTOCOL_STATE = {
    "close_sent": bool,
    "disconnected": bool,
    "handshake_complete": bool,
    "frames": list,
    "curr_msg_data_type": str,
    "read_paused": bool,
}
# methods of uvicorn's protocol: overridden (`send_receive_event_to_app`), handed to the app as ASGI
# `send` (bound: DirectWire finds the protocol through `__self__`), or calling the override
PROTOCOL_METHODS = ("send_receive_event_to_app", "send", "handle_text", "handle_bytes", "handle_cont", "run_asgi")
CONN_STATE = ("close_sent", "extensions")  # websockets' ServerProtocol, as `proto.conn`
TRANSPORT_METHODS = ("write", "is_closing", "get_write_buffer_size", "abort", "pause_reading", "resume_reading")
CONFIG_PARAMETERS = ("ws", "ws_max_size", "ws_per_message_deflate", "ws_ping_interval", "ws_ping_timeout")


def fresh_protocol() -> Any:
    config = uvicorn.Config(CaptureRawSend(lambda *_: None), ws=WebSocketProtocol, ws_per_message_deflate=False)
    config.load()
    return WebSocketProtocol(config=config, server_state=ServerState(), app_state={})


def test_the_protocol_class_is_where_wire_imports_it_from() -> None:
    cls = getattr(websockets_sansio_impl, SANSIO, None)
    assert cls is not None, f"uvicorn.protocols.websockets.websockets_sansio_impl.{SANSIO} is gone"
    assert issubclass(WebSocketProtocol, cls)
    assert issubclass(cls, asyncio.Protocol), f"{SANSIO} is no longer an asyncio.Protocol"


def test_the_attributes_directwire_checks_are_the_ones_listed_here() -> None:
    assert set(wire.PROTOCOL_ATTRIBUTES) <= {*PROTOCOL_STATE, "transport", "conn"}, wire.PROTOCOL_ATTRIBUTES
    assert set(wire.CONN_ATTRIBUTES) == set(CONN_STATE), wire.CONN_ATTRIBUTES


async def test_protocol_state_attributes() -> None:
    proto = fresh_protocol()
    for name, kind in PROTOCOL_STATE.items():
        assert hasattr(proto, name), f"uvicorn {SANSIO}.{name} is gone (http/wire.py reads it)"
        value = getattr(proto, name)
        assert isinstance(value, kind), f"uvicorn {SANSIO}.{name} is now {type(value).__name__}, not {kind.__name__}"
    assert proto.frames == [] and proto.curr_msg_data_type in ("bytes", "text")
    assert hasattr(proto, "transport"), f"uvicorn {SANSIO}.transport is gone"
    assert hasattr(proto, "conn"), f"uvicorn {SANSIO}.conn (websockets ServerProtocol) is gone"
    for name in CONN_STATE:
        assert hasattr(proto.conn, name), f"websockets ServerProtocol.{name} is gone ({SANSIO}.conn.{name})"
    assert proto.conn.close_sent is None, "ServerProtocol.close_sent no longer starts as None"
    assert proto.conn.extensions == [], "ServerProtocol.extensions is not an empty list without deflate"


@pytest.mark.parametrize("name", PROTOCOL_METHODS)
def test_protocol_methods(name: str) -> None:
    cls = getattr(websockets_sansio_impl, SANSIO)
    method = getattr(cls, name, None)
    assert callable(method), f"uvicorn {SANSIO}.{name} is gone"
    if name == "send_receive_event_to_app":
        assert list(inspect.signature(method).parameters) == ["self"], f"{SANSIO}.{name} changed its signature"
        source = inspect.getsource(method)
        for used in ("self.frames", "self.curr_msg_data_type", "self.close_sent", "self.queue.put_nowait"):
            assert used in source, f"{SANSIO}.{name} no longer uses {used}: re-check WebSocketProtocol's override"
    if name in ("handle_text", "handle_bytes", "handle_cont"):
        assert "self.send_receive_event_to_app()" in inspect.getsource(method), (
            f"{SANSIO}.{name} no longer delivers through send_receive_event_to_app (the sink would be skipped)"
        )
    if name == "run_asgi":
        assert "self.send)" in inspect.getsource(method), f"{SANSIO}.run_asgi no longer hands `self.send` to the app"


@pytest.mark.parametrize("name", CONFIG_PARAMETERS)
def test_config_parameters(name: str) -> None:
    assert name in inspect.signature(uvicorn.Config).parameters, f"uvicorn.Config({name}=...) is gone"


@pytest.mark.parametrize("name", wire.STOCK_WS)
def test_stock_protocol_names_of_the_debug_switch(name: str) -> None:
    assert name in WS_PROTOCOLS, f"uvicorn no longer knows the ws protocol {name!r} (PORTSIDE_DEBUG_STOCK_WS)"


async def test_the_direct_path_end_to_end() -> None:
    """A real uvicorn with Portside's protocol: DirectWire found through the captured `send`, frames written
    to the transport, whole and fragmented binary messages delivered to the sink, text through ASGI."""
    seen: dict[str, Any] = {}
    sunk: asyncio.Queue[bytes] = asyncio.Queue()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        seen["extensions"] = scope.get("extensions")
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        proto = getattr(scope.get(wire.RAW_SEND), "__self__", None)
        seen["protocol"] = type(proto).__name__
        seen["transport"] = [m for m in TRANSPORT_METHODS if not callable(getattr(proto.transport, m, None))]
        direct = DirectWire.of(scope)
        seen["wire"] = direct is not None
        if direct is None:  # say why, in the first frame the client checks
            missing = [a for a in wire.PROTOCOL_ATTRIBUTES if not hasattr(proto, a)]
            missing += [f"conn.{a}" for a in wire.CONN_ATTRIBUTES if not hasattr(getattr(proto, "conn", None), a)]
            await send({"type": "websocket.send", "text": f"no DirectWire: {type(proto).__name__} lacks {missing}"})
            await send({"type": "websocket.close", "code": 1011})
            return

        def sink(data: bytes) -> None:
            sunk.put_nowait(data)
            direct.hold()  # back-pressure calls: pause and resume the transport's reading
            direct.release()
            assert direct.send(binary_frame(b"echo:" + data), 1 << 20)

        seen["sink"] = direct.set_sink(sink)
        assert direct.send(text_frame(b"direct hello"), 1 << 20)
        assert isinstance(direct.backlog, int)
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                direct.set_sink(None)
                return
            seen.setdefault("asgi", []).append(message)
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": "asgi:" + message["text"]})

    async with serving(app) as port, websockets.connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
        assert await asyncio.wait_for(ws.recv(), 5) == "direct hello"
        await ws.send(b"\x01\x02")
        assert await asyncio.wait_for(sunk.get(), 5) == b"\x01\x02"
        assert await asyncio.wait_for(ws.recv(), 5) == b"echo:\x01\x02"
        await ws.send([b"frag", b"mented"])  # one message in continuation frames (handle_cont)
        assert await asyncio.wait_for(sunk.get(), 5) == b"fragmented"
        assert await asyncio.wait_for(ws.recv(), 5) == b"echo:fragmented"
        await ws.send("text")
        assert await asyncio.wait_for(ws.recv(), 5) == "asgi:text"
    assert seen["protocol"] == "WebSocketProtocol", f"the captured ASGI send is not bound to the protocol: {seen}"
    assert seen["transport"] == [], f"the transport lacks {seen['transport']}"
    assert seen["wire"], "DirectWire.of answered None on Portside's own protocol"
    assert seen["sink"], "DirectWire.set_sink refused Portside's own protocol"
    assert [m.get("text") for m in seen["asgi"]] == ["text"], "binary messages reached ASGI instead of the sink"
    assert "websocket.http.response" in (seen["extensions"] or {}), "uvicorn lost the denial-response extension"


# what the frame splitter (WebSocketProtocol._frames_received) reads on websockets' ServerProtocol
SPLITTER_CONN = ("state", "current_size", "max_message_size", "parser_exc", "reader")


async def test_what_the_frame_splitter_reads() -> None:
    proto = fresh_protocol()
    assert proto.handshake_initiated is False, f"uvicorn {SANSIO}.handshake_initiated is gone or changed"
    for name in SPLITTER_CONN:
        assert hasattr(proto.conn, name), f"websockets ServerProtocol.{name} is gone ({SANSIO}.conn.{name})"
    assert proto.conn.current_size is None and proto.conn.parser_exc is None
    assert isinstance(proto.conn.reader.buffer, bytearray), "websockets StreamReader.buffer is no longer a bytearray"
    assert proto.conn.max_message_size == proto.config.ws_max_size
    source = inspect.getsource(getattr(websockets_sansio_impl, SANSIO).data_received)
    for used in ("self.conn.receive_data(data)", "self.handle_events()", "parser_exc"):
        assert used in source, f"{SANSIO}.data_received no longer uses {used}: re-check the frame splitter"
