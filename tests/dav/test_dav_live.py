"""A collection's ctag / sync token moving is announced on /live: every object write (DAV or /api) emits an
`update` event of the collection row carrying the new `sync_seq`, to the readers of the collection only.
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import websockets

from dav_support import DavUser, client, event, mkcalendar, multistatus, running_dav_world
from support import Server, World, events, is_event, recv, until

CTAG = (
    '<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:CS="http://calendarserver.org/ns/">'
    "<D:prop><CS:getctag/></D:prop></D:propfind>"
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest) -> Iterator[tuple[Server, World, dict[str, DavUser]]]:
    with running_dav_world(request.param) as env:
        yield env


def _ws(server: Server, token: str) -> str:
    return server.url.replace("http://", "ws://") + f"/live?token={token}"


def _data(frame: dict[str, Any]) -> Any:
    return json.loads(base64.b64decode(frame["data"]))


async def _follow(ws: Any, topic: str) -> None:
    await recv(ws)  # the session frame
    await ws.send(json.dumps({"id": "s", "method": "subscribe", "attributes": {"topicName": topic}}))
    r = await recv(ws)
    assert r["type"] == "response" and r["ok"] is True, r


def test_ctag_bump_reaches_live(env: tuple[Server, World, dict[str, DavUser]]) -> None:
    srv, _, users = env
    owner, stranger = users["owner"], users["stranger"]
    with client(srv, owner) as c:
        url = mkcalendar(c, owner, "live-cal")

    def ctag() -> str:
        with client(srv, owner) as c:
            prop = multistatus(c.request("PROPFIND", url, headers={"Depth": "0"}, content=CTAG))[url]
            return str(getattr(prop["{http://calendarserver.org/ns/}getctag"], "text", ""))

    async def main() -> None:
        async with websockets.connect(_ws(srv, owner.token)) as o, websockets.connect(_ws(srv, stranger.token)) as s:
            await _follow(o, "collection")
            await _follow(s, "collection")
            before = ctag()
            with client(srv, owner) as c:
                assert c.put(url + "a.ics", content=event("live-1")).status_code == 201
            got = [f for f in events(await until(o, is_event("update", "collection"))) if f["topic"] == "collection"]
            data = _data(got[-1])
            assert data["name"] == "live-cal"
            after = ctag()
            assert after != before and str(data["sync_seq"]) in after
            with client(srv, owner) as c:
                assert c.delete(url + "a.ics").status_code == 204
            got = events(await until(o, is_event("update", "collection")))
            assert _data(got[-1])["sync_seq"] == data["sync_seq"] + 1
            # the stranger may not read the collection: nothing of it before their own collection (the marker)
            with client(srv, stranger) as c:
                mkcalendar(c, stranger, "stranger-marker")
            seen = events(await until(s, is_event("create", "collection")))
            assert [_data(f)["name"] for f in seen] == ["stranger-marker"]

    asyncio.run(main())
