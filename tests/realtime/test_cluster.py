"""Two `portside serve` processes on one PostgreSQL database and one Redis: a write on one node reaches
subscribers in every process exactly once, and schema and config changes apply on the other node live."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import sqlalchemy as sa

from portside.core.db import Database
from portside.realtime.bus import make_bus
from support import REDIS, Server, create, new_user, schema_upload, sync_url


def cluster_id(url: str) -> str:
    engine = sa.create_engine(sync_url(url))
    with engine.connect() as c:
        value = c.execute(sa.text("SELECT value FROM _config WHERE name = 'cluster.id'")).scalar_one()
    engine.dispose()
    return str(value)


def eventually(fn, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


@pytest.fixture(scope="module")
def bystander(cluster: tuple[str, Server, Server]) -> str:
    """A second ordinary user's token, signed up before `setup` makes an administrator (which closes signup)."""
    _, a, _ = cluster
    return new_user(a, "cby")[1]


@pytest.fixture(scope="module")
def setup(cluster: tuple[str, Server, Server], bystander: str) -> tuple[str, str, str]:
    """(admin token, user token, table) — the table is declared through node A only."""
    _, a, b = cluster
    _, admin = new_user(a, "cadmin")
    _, user = new_user(b, "cuser")
    table = f"shared_{uuid.uuid4().hex[:6]}"
    with a.client(admin) as c:
        assert c.post("/action/world/become_an_administrator").status_code == 200
        schema = f"""
Tables:
  - TableName: {table}
    AccessGroups: [{{Name: users, Permission: 2080768}}]
    DefaultPermission: 16256
    Columns: [{{Name: title, DataType: varchar(50), ColumnType: label}}]
"""
        assert schema_upload(c, schema).status_code == 200
        assert c.get(f"/api/{table}").status_code == 200
    return admin, user, table


def test_schema_and_config_changes_reach_the_other_node(
    cluster: tuple[str, Server, Server], setup: tuple[str, str, str]
) -> None:
    _, a, b = cluster
    admin, user, table = setup
    # node B learns the table from A's world events, without a restart
    with b.client(user) as c:
        assert eventually(lambda: c.get(f"/api/{table}").status_code == 200)
        assert create(c, table, title="from b").status_code == 201
    # node B also knows an administrator exists now: signup is closed for guests there too
    with b.client() as c:
        r = c.post(
            "/action/user_account/signup",
            json={
                "attributes": {
                    "name": "x",
                    "email": "late@example.com",
                    "password": "secret123",
                    "passwordConfirm": "secret123",
                }
            },
        )
        assert r.status_code == 403
    with a.client(admin) as c:
        assert c.post("/_config/backend/api.max_page_size", content="3").status_code == 200
    with b.client(user) as c:
        assert eventually(lambda: c.get(f"/api/{table}", params={"page[size]": 50}).json()["links"]["per_page"] == 3)


async def _collect(url: str, node: Server, token: str, table: str) -> list[str]:
    """Subscribe from this (third) process, write through `node`, return the titles received."""
    db = Database(url)
    bus = make_bus(db, REDIS, f"portside:events:{cluster_id(url)}")
    await bus.start()
    got: list[str] = []

    def write() -> None:
        with node.client(token) as c:
            for i in range(3):
                assert create(c, table, title=f"ev{i}").status_code == 201

    try:
        async with bus.subscribe() as sub:
            await asyncio.to_thread(write)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    event = await sub.get(timeout=0.5)
                except TimeoutError:
                    if len(got) >= 3:
                        break  # and nothing more (no duplicate) arrived within the quiet period
                    continue
                if event.table == table and event.type == "create":
                    got.append(event.data["title"])
    finally:
        await bus.stop()
        await db.dispose()
    return got


@pytest.mark.parametrize("node", ["a", "b"])
def test_write_on_one_node_reaches_subscribers_once(
    cluster: tuple[str, Server, Server], setup: tuple[str, str, str], node: str
) -> None:
    url, a, b = cluster
    _, user, table = setup
    got = asyncio.run(_collect(url, a if node == "a" else b, user, table))
    assert got == ["ev0", "ev1", "ev2"]


def test_nodes_deliver_each_others_events(cluster: tuple[str, Server, Server], setup: tuple[str, str, str]) -> None:
    """Both nodes consume the bus: a config write on B changes behaviour on A and on B."""
    _, a, b = cluster
    admin, user, table = setup
    with b.client(admin) as c:
        assert c.put("/_config/backend/api.max_page_size", content="4").status_code == 200
    for node in (a, b):
        with node.client(user) as c:
            assert eventually(
                lambda c=c: c.get(f"/api/{table}", params={"page[size]": 50}).json()["links"]["per_page"] == 4
            )


def test_live_subscriber_on_one_node_sees_writes_on_the_other(
    cluster: tuple[str, Server, Server], setup: tuple[str, str, str]
) -> None:
    import json

    import websockets

    _, a, b = cluster
    _, user, table = setup

    async def main() -> list[str]:
        url = b.url.replace("http://", "ws://") + f"/live?token={user}&encoding=json"
        async with websockets.connect(url) as ws:
            assert json.loads(await ws.recv())["type"] == "session"
            await ws.send(json.dumps({"method": "subscribe", "attributes": {"topicName": table}}))
            assert json.loads(await ws.recv())["ok"] is True

            def write() -> None:
                with a.client(user) as c:
                    for i in range(3):
                        assert create(c, table, title=f"live{i}").status_code == 201

            await asyncio.to_thread(write)
            titles: list[str] = []
            while True:
                try:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 3))
                except TimeoutError:
                    return titles
                if frame["type"] == "event":
                    titles.append(frame["data"]["title"])

    assert asyncio.run(main()) == ["live0", "live1", "live2"]


def test_event_committed_by_a_node_that_died_before_publishing_still_arrives(
    cluster: tuple[str, Server, Server], setup: tuple[str, str, str]
) -> None:
    import json

    import websockets

    from portside.core.events import EventDraft, Grants
    from portside.tools.ids import uuid7_str
    from support import me

    url, _, b = cluster
    _, user, table = setup
    with b.client(user) as c:
        user_ref = me(c)["id"]

    async def orphan() -> None:
        """Commit an event the way a node does, then 'die': nothing is ever published for it."""
        db = Database(url)
        try:
            async with db.transaction() as uow:
                await uow.emit(
                    EventDraft(
                        table,
                        "create",
                        uuid7_str(),
                        {"__type": table, "title": "orphan"},
                        Grants(user_ref, 16256),
                        user_ref,
                    )
                )
        finally:
            await db.dispose()

    async def main() -> list[str]:
        ws_url = b.url.replace("http://", "ws://") + f"/live?token={user}&encoding=json"
        async with websockets.connect(ws_url) as ws:
            json.loads(await ws.recv())
            await ws.send(json.dumps({"method": "subscribe", "attributes": {"topicName": table}}))
            assert json.loads(await ws.recv())["ok"] is True
            await orphan()
            titles: list[str] = []
            try:
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 6))
                    if frame["type"] == "event":
                        titles.append(frame["data"]["title"])
            except TimeoutError:
                return titles

    assert asyncio.run(main()) == ["orphan"]  # exactly once, from the other node's sweep of the log


def test_user_topic_created_on_one_node_is_used_from_the_other(
    cluster: tuple[str, Server, Server], setup: tuple[str, str, str]
) -> None:
    import json

    import websockets

    _, a, b = cluster
    _, user, _ = setup
    topic = f"room-{uuid.uuid4().hex[:6]}"

    async def main() -> list[dict[str, object]]:
        url_a = a.url.replace("http://", "ws://") + f"/live?token={user}&encoding=json"
        url_b = b.url.replace("http://", "ws://") + f"/live?token={user}&encoding=json"
        async with websockets.connect(url_a) as on_a, websockets.connect(url_b) as on_b:
            json.loads(await on_a.recv())
            json.loads(await on_b.recv())
            await on_a.send(json.dumps({"method": "create-topicName", "attributes": {"name": topic}}))
            assert json.loads(await on_a.recv())["ok"] is True
            await on_b.send(json.dumps({"method": "subscribe", "attributes": {"topicName": topic}}))
            assert json.loads(await on_b.recv())["ok"] is True  # the topic row is visible on B at once
            await on_a.send(
                json.dumps({"method": "new-message", "attributes": {"topicName": topic, "message": {"n": 1}}})
            )
            assert json.loads(await on_a.recv())["ok"] is True
            got = []
            try:
                while True:
                    frame = json.loads(await asyncio.wait_for(on_b.recv(), 3))
                    if frame["type"] == "event":
                        got.append(frame["data"])
            except TimeoutError:
                return got

    assert asyncio.run(main()) == [{"n": 1}]


def test_row_written_on_one_node_reaches_only_permitted_subscribers_on_the_other(
    cluster: tuple[str, Server, Server], setup: tuple[str, str, str], bystander: str
) -> None:
    """Node B's hub filters events that came over Redis from node A by the row's grants: the owner's private
    row reaches the owner's socket on B and not another user's socket on B, whose own row (the marker, written
    after it through A) arrives alone."""
    import json

    import websockets

    _, a, b = cluster
    _, owner, table = setup

    async def subscribed(token: str) -> websockets.ClientConnection:
        ws = await websockets.connect(b.url.replace("http://", "ws://") + f"/live?token={token}&encoding=json")
        assert json.loads(await ws.recv())["type"] == "session"
        await ws.send(json.dumps({"method": "subscribe", "attributes": {"topicName": table}}))
        assert json.loads(await ws.recv())["ok"] is True
        return ws

    async def titles_until(ws: websockets.ClientConnection, last: str) -> list[str]:
        got: list[str] = []
        while not got or got[-1] != last:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["type"] == "event" and frame["topic"] == table:
                got.append(frame["data"]["title"])
        return got

    def write() -> str:
        with a.client(owner) as c:
            r = create(c, table, title="private")
            assert r.status_code == 201
            ref = str(r.json()["data"]["id"])
        with a.client(bystander) as c:
            assert c.get(f"/api/{table}/{ref}").status_code in (403, 404)  # HTTP agrees: not readable
            assert create(c, table, title="marker").status_code == 201
        return ref

    async def main() -> tuple[list[str], list[str]]:
        mine, theirs = await subscribed(owner), await subscribed(bystander)
        try:
            await asyncio.to_thread(write)
            return await titles_until(mine, "private"), await titles_until(theirs, "marker")
        finally:
            await mine.close()
            await theirs.close()

    assert asyncio.run(main()) == (["private"], ["marker"])
