"""One transport write per plain HTTP response (http/coalesce.py): the head goes out joined to the first body
part; a head no body write follows (HEAD) still goes out, on its own, and in order; `100 Continue` is not held.

uvicorn's own httptools protocol runs against the same recording transport as the reference: it writes the
head and the body separately, so the count of writes is what this module changes and the bytes are not."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from portside.http.coalesce import HeadHold, HttpProtocol


class Recording(asyncio.Transport):
    """A transport that keeps what is written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["path"] == "/upload":
        while (await receive()).get("more_body"):
            pass
    body = b'{"data": []}' * 100
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


async def exchange(protocol_class: type[HttpToolsProtocol], *requests: bytes) -> Recording:
    config = uvicorn.Config(app, http=protocol_class, lifespan="off", log_level="warning")
    proto = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = Recording()
    proto.connection_made(transport)
    for request in requests:
        proto.data_received(request)
        for _ in range(50):  # the ASGI task, then any call_soon
            await asyncio.sleep(0)
    proto.connection_lost(None)
    return transport


GET = b"GET /api/x HTTP/1.1\r\nhost: a\r\n\r\n"
HEAD = b"HEAD /api/x HTTP/1.1\r\nhost: a\r\n\r\n"
UPLOAD = b"POST /upload HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n"


async def test_one_write_per_response_same_bytes() -> None:
    stock = await exchange(HttpToolsProtocol, GET, GET)
    ours = await exchange(HttpProtocol, GET, GET)
    assert len(stock.writes) == 4  # head, body, head, body
    assert len(ours.writes) == 2
    assert b"".join(ours.writes) == b"".join(stock.writes)
    head, body = stock.writes[0], stock.writes[1]
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and ours.writes[0] == head + body


async def test_head_request_and_order() -> None:
    stock = await exchange(HttpToolsProtocol, HEAD, GET)
    ours = await exchange(HttpProtocol, HEAD, GET)
    # HEAD: a head and no body; it is not kept back behind the next response
    assert b"".join(ours.writes) == b"".join(stock.writes)
    assert ours.writes[0] == stock.writes[0] and ours.writes[0].endswith(b"\r\n\r\n")
    assert len(ours.writes) == 2


async def test_continue_goes_out_at_once() -> None:
    config = uvicorn.Config(app, http=HttpProtocol, lifespan="off", log_level="warning")
    proto = HttpProtocol(config=config, server_state=ServerState(), app_state={})
    transport = Recording()
    proto.connection_made(transport)
    proto.data_received(UPLOAD)
    for _ in range(10):
        await asyncio.sleep(0)
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]  # the client waits for it to send the body
    proto.data_received(b"{}")
    for _ in range(50):
        await asyncio.sleep(0)
    assert len(transport.writes) == 2 and transport.writes[1].startswith(b"HTTP/1.1 200 OK\r\n")
    assert isinstance(proto.cycle.transport, HeadHold)
    proto.connection_lost(None)
