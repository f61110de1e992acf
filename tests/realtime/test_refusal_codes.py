"""Refusals on /live and Yjs carry a stable error code (`portside.errors.Kind`) next to Daptin's fields:
`code` in /live response frames, the `Portside-Error-Code` header on a refused WebSocket upgrade."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import websockets

from support import Server, new_user, recv, schema_upload

SCHEMA = """
Tables:
  - TableName: codenote
    AccessGroups: [{Name: users, Permission: 2080768}]
    DefaultPermission: 16256
    Columns:
      - {Name: title, DataType: varchar(100), ColumnType: label}
      - {Name: body, DataType: text, ColumnType: file.txt, IsNullable: true}
"""
HEADER = "portside-error-code"


@pytest.fixture(scope="module")
def env(sqlite_server: Server) -> Iterator[tuple[Server, str, str]]:
    _, admin = new_user(sqlite_server, "cadmin")
    _, alice = new_user(sqlite_server, "calice")
    _, bob = new_user(sqlite_server, "cbob")
    with sqlite_server.client(admin) as c:
        assert c.post("/action/world/become_an_administrator").status_code == 200
        assert schema_upload(c, SCHEMA).status_code == 200
    yield sqlite_server, alice, bob


def ws(server: Server, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


async def refused_upgrade(url: str, **kw: Any) -> tuple[int, str | None, str]:
    with pytest.raises(websockets.InvalidStatus) as err:
        async with websockets.connect(url, **kw):
            pass
    r = err.value.response
    return r.status_code, r.headers.get(HEADER), r.body.decode() if r.body else ""


def test_live_refusal_frames_carry_codes(env: tuple[Server, str, str]) -> None:
    server, alice, bob = env

    async def main() -> None:
        async with (
            websockets.connect(ws(server, f"/live?token={alice}&encoding=json")) as a,
            websockets.connect(ws(server, f"/live?token={bob}&encoding=json")) as b,
        ):
            await recv(a)
            await recv(b)

            async def refusal(sock: Any, raw: str) -> tuple[str, str]:
                await sock.send(raw)
                frame = await recv(sock)
                assert frame["type"] == "response" and frame["ok"] is False, frame
                return frame["error"], frame["code"]

            def req(method: str, **attrs: Any) -> str:
                return json.dumps({"id": "r", "method": method, "attributes": attrs})

            assert await refusal(a, "{nope") == ("invalid JSON", "bad_request")
            assert await refusal(a, "[1]") == ("request must be a JSON object", "bad_request")
            assert await refusal(a, json.dumps({"id": 5, "method": "ping"})) == ("id must be a string", "bad_request")
            assert await refusal(a, req("nope")) == ("no such method", "bad_request")
            assert await refusal(a, req("subscribe", topicName="zz-none")) == ("topic not found: zz-none", "not_found")
            assert (await refusal(a, req("subscribe", topicName=",".join(f"t{i}" for i in range(101)))))[1] == (
                "bad_request"
            )
            assert (await refusal(a, req("subscribe", topicName="codenote", since=-1)))[1] == "bad_request"
            assert await refusal(a, req("unsubscribe", topicName="codenote")) == (
                "not subscribed: codenote",
                "not_found",
            )
            assert await refusal(a, req("create-topicName", name="codenote")) == (
                "cannot create topic with reserved name",
                "conflict",
            )
            await a.send(req("create-topicName", name="code-room"))
            assert (await recv(a))["ok"] is True
            assert await refusal(a, req("create-topicName", name="code-room")) == (
                "topic already exists",
                "unique_violation",
            )
            assert await refusal(b, req("subscribe", topicName="code-room")) == (
                "permission denied: code-room",
                "forbidden",
            )
            assert await refusal(b, req("set-topic-permission", topicName="code-room", permission=1)) == (
                "only owner or admin can change permissions",
                "forbidden",
            )
            assert (await refusal(a, req("set-topic-permission", topicName="code-room", permission="7")))[1] == (
                "validation_failed"
            )
            assert await refusal(a, req("new-message", topicName="zz-none", message={})) == (
                "topic does not exist: zz-none",
                "not_found",
            )
            # a success carries no code; the session still works after every refusal
            await a.send(req("subscribe", topicName="codenote"))
            ok = await recv(a)
            assert ok["ok"] is True and "code" not in ok and "error" not in ok

    asyncio.run(main())


def test_refused_upgrades_carry_codes(env: tuple[Server, str, str]) -> None:
    server, alice, _ = env

    async def main() -> None:
        # /live: no token, bad token, cookie from a foreign origin
        assert await refused_upgrade(ws(server, "/live")) == (401, "unauthorized", "unauthorized: a token is required")
        status, code, _ = await refused_upgrade(ws(server, "/live?token=garbage"))
        assert status == 401 and code is not None and code in ("unauthorized", "token_expired", "token_revoked")
        cookie = {"Cookie": f"token={alice}"}
        status, code, _ = await refused_upgrade(ws(server, "/live"), additional_headers=cookie, origin="https://x.test")
        assert (status, code) == (403, "forbidden")
        # Yjs: no token, malformed room name, a row-bound room of a row that does not exist
        status, code, _ = await refused_upgrade(ws(server, "/yjs/room"))
        assert (status, code) == (403, "unauthorized")
        status, code, _ = await refused_upgrade(ws(server, "/yjs/" + "x" * 300 + f"?token={alice}"))
        assert (status, code) == (400, "bad_request")
        missing = "/live/codenote/0190f5a0-0000-7000-8000-000000000000/body/yjs"
        status, code, _ = await refused_upgrade(ws(server, f"{missing}?token={alice}"))
        assert status == 404 and code in ("not_found", "row_not_found")
        status, code, _ = await refused_upgrade(
            ws(server, f"/live/nosuch/{missing.split('/')[3]}/body/yjs?token={alice}")
        )
        assert status == 404 and code is not None and code.endswith("not_found")

    asyncio.run(main())
