"""The WebSocket fallback paths: /live and Yjs over uvicorn's stock protocols (debug switch
`PORTSIDE_DEBUG_STOCK_WS`), where Portside's direct input path (and, with `websockets`, its direct output
path) is unavailable and frames go through plain ASGI receive/send. Same exchanges, same answers."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import websockets

from conftest import DATABASES
from support import World, create, fresh_database, setup_world, start_server
from yclient import YClient

SCHEMA = """
Tables:
  - TableName: memo
    AccessGroups: [{Name: users, Permission: 2080768}]
    DefaultPermission: 16256
    Columns:
      - {Name: title, DataType: varchar(100), ColumnType: label}
      - {Name: body, DataType: text, ColumnType: file.txt, IsNullable: true}
"""
# uvicorn protocol -> what the server says about it: the debug switch is announced; without any direct path
# the realtime endpoints say they fall back to ASGI sends
MODES = {
    "websockets-sansio": ["debug: uvicorn's stock websockets-sansio WebSocket protocol"],
    "websockets": [
        "debug: uvicorn's stock websockets WebSocket protocol",
        "live: direct frame path unavailable",
        "yjs: direct frame path unavailable",
    ],
}


@pytest.fixture(scope="module", params=[(m, db) for m in sorted(MODES) for db in DATABASES], ids=lambda p: "-".join(p))
def stock(request: pytest.FixtureRequest) -> Iterator[tuple[str, World]]:
    mode, kind = request.param
    database, drop = fresh_database(kind)
    server = start_server(database, env={"PORTSIDE_DEBUG_STOCK_WS": mode})
    try:
        yield mode, setup_world(server, database, SCHEMA)
    finally:
        server.stop()
        drop()


def ws_base(world: World) -> str:
    return world.server.url.replace("http://", "ws://")


async def recv(ws: Any, timeout: float = 10) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return frame


def file_value(text: str) -> list[dict[str, str]]:
    return [{"name": "body.txt", "type": "text/plain", "contents": base64.b64encode(text.encode()).decode()}]


def body_text(world: World, token: str, ref: str) -> str:
    with world.c(token) as c:
        r = c.get(f"/api/memo/{ref}")
        assert r.status_code == 200, r.text
        raw = r.json()["data"]["attributes"]["body"]
    entries = json.loads(raw) if isinstance(raw, str) else raw  # a text column may hand the JSON back as text
    return base64.b64decode(entries[0]["contents"]).decode()


def said(world: World, lines: list[str]) -> None:
    for line in lines:
        assert any(line in logged for logged in world.server.log), (line, world.server.log)


def test_live_exchange_on_the_stock_protocol(stock: tuple[str, World]) -> None:
    mode, world = stock

    async def main() -> None:
        async with (
            websockets.connect(f"{ws_base(world)}/live?token={world.owner}") as owner,
            websockets.connect(f"{ws_base(world)}/live?token={world.stranger}&encoding=json") as stranger,
        ):
            for ws, as_json in ((owner, False), (stranger, True)):
                assert (await recv(ws))["type"] == "session"
                await ws.send(json.dumps({"id": "s1", "method": "subscribe", "attributes": {"topicName": "memo"}}))
                answer = await recv(ws)
                assert (answer["type"], answer["id"], answer["ok"]) == ("response", "s1", True), answer
                data = answer["data"] if as_json else json.loads(base64.b64decode(answer["data"]))
                assert data == {"topic": "memo"}
            await owner.send(json.dumps({"method": "ping"}))
            assert await recv(owner) == {"type": "pong"}
            await owner.send(b'{"method": "ping"}')  # a binary frame is read as well
            assert await recv(owner) == {"type": "pong"}
            with world.c(world.owner) as c:
                r = create(c, "memo", title="on the fallback path")
                assert r.status_code == 201, r.text
                ref = r.json()["data"]["id"]
            event = await recv(owner)
            assert (event["type"], event["event"], event["topic"]) == ("event", "create", "memo")
            data = json.loads(base64.b64decode(event["data"]))
            assert (data["reference_id"], data["title"]) == (ref, "on the fallback path")
            # the stranger may not read the owner's row: nothing arrives, while its own ping is answered
            await stranger.send(json.dumps({"method": "ping"}))
            assert await recv(stranger) == {"type": "pong"}

    asyncio.run(main())
    said(world, [line for line in MODES[mode] if not line.startswith("yjs:")])


def test_yjs_exchange_on_the_stock_protocol(stock: tuple[str, World]) -> None:
    mode, world = stock
    room = f"{ws_base(world)}/yjs/fallback-{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        a = await YClient.connect(f"{room}?token={world.owner}")
        b = await YClient.connect(f"{room}?token={world.member}")
        await a.edit(0, "hello")
        assert await b.wait_for(lambda: b.text == "hello"), b.text
        await b.edit(5, " world")
        assert await a.wait_for(lambda: a.text == "hello world"), a.text
        await a.set_presence(777, 1, {"user": "a"})
        assert await b.wait_for(lambda: 777 in b.awareness), b.awareness
        await b.ws.send("a text frame")  # refused: Yjs speaks binary frames only
        assert await b.closed() == 1003
        await a.close()
        # the document was stored: a new client gets it back
        c = await YClient.connect(f"{room}?token={world.member}")
        assert c.text == "hello world"
        await c.close()

    asyncio.run(main())
    said(world, [line for line in MODES[mode] if not line.startswith("live:")])


def test_row_bound_yjs_on_the_stock_protocol(stock: tuple[str, World]) -> None:
    """Seed, write-back and the row's read/write check (the row operations the runtime wires in) work the
    same when the frames go through ASGI."""
    _, world = stock
    with world.c(world.owner) as c:
        r = create(c, "memo", title="bound", body=file_value("seeded"))
        assert r.status_code == 201, r.text
        ref = r.json()["data"]["id"]

    async def main() -> None:
        a = await YClient.connect(f"{ws_base(world)}/live/memo/{ref}/body/yjs?token={world.owner}")
        assert a.text == "seeded"
        await a.edit(len(a.text), " and edited")
        loop = asyncio.get_running_loop()
        started = loop.time()
        while body_text(world, world.owner, ref) != "seeded and edited":
            assert loop.time() - started < 10, "no write-back"
            await asyncio.sleep(0.2)
        await a.close()
        with pytest.raises(websockets.InvalidStatus) as err:
            await YClient.connect(f"{ws_base(world)}/live/memo/{ref}/body/yjs?token={world.stranger}")
        assert err.value.response.status_code == 404

    asyncio.run(main())
