"""Collaborative editing over real sockets: the stock y-websocket client stack (Node, separate providers with
BroadcastChannel disabled) and a pycrdt client, against standalone and row-bound rooms."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import websockets

from portside.realtime import yjs_protocol as yp
from support import REDIS, Server, create, new_user, schema_upload, stored_config
from yclient import YClient, node_ready, run_node

SCHEMA = """
Tables:
  - TableName: note
    AccessGroups: [{Name: users, Permission: 2080768}]
    DefaultPermission: 16256
    Columns:
      - {Name: title, DataType: varchar(100), ColumnType: label}
      - {Name: body, DataType: text, ColumnType: file.txt, IsNullable: true}
"""
OWNER_ALL = 16256
GUEST_READ = 1 | 2
GUEST_UPDATE = 8


@pytest.fixture(scope="session")
def node() -> None:
    node_ready()


@pytest.fixture(scope="module")
def env(sqlite_server: Server) -> Iterator[dict[str, Any]]:
    _, admin = new_user(sqlite_server, "yadmin")
    _, alice = new_user(sqlite_server, "yalice")
    _, bob = new_user(sqlite_server, "ybob")
    _, carol = new_user(sqlite_server, "ycarol")
    _, dave = new_user(sqlite_server, "ydave")
    with sqlite_server.client(admin) as c:
        assert c.post("/action/world/become_an_administrator").status_code == 200
        assert schema_upload(c, SCHEMA).status_code == 200
    yield {"server": sqlite_server, "admin": admin, "alice": alice, "bob": bob, "carol": carol, "dave": dave}


def ws_base(server: Server) -> str:
    return server.url.replace("http://", "ws://")


def file_value(text: str) -> list[dict[str, str]]:
    return [{"name": "body.txt", "type": "text/plain", "contents": base64.b64encode(text.encode()).decode()}]


def column_text(server: Server, token: str, ref: str) -> str:
    with server.client(token) as c:
        r = c.get(f"/api/note/{ref}")
        assert r.status_code == 200, r.text
        raw = r.json()["data"]["attributes"]["body"]
    entries = json.loads(raw) if isinstance(raw, str) else raw
    return base64.b64decode(entries[0]["contents"]).decode()


def new_note(server: Server, token: str, text: str, permission: int | None = None) -> str:
    with server.client(token) as c:
        r = create(c, "note", title="n", body=file_value(text))
        assert r.status_code == 201, r.text
        ref = str(r.json()["data"]["id"])
        if permission is not None:
            set_permission(server, token, ref, permission)
    return ref


def set_permission(server: Server, token: str, ref: str, permission: int) -> None:
    with server.client(token) as c:
        r = c.patch(
            f"/api/note/{ref}", json={"data": {"type": "note", "id": ref, "attributes": {"permission": permission}}}
        )
        assert r.status_code == 200, r.text


async def status_of(url: str) -> int:
    with pytest.raises(websockets.InvalidStatus) as err:
        async with websockets.connect(url):
            pass
    return err.value.response.status_code


def set_config(server: Server, admin: str, key: str, value: str) -> None:
    with server.client(admin) as c:
        r = c.put(f"/_config/backend/{key}", content=value)
        assert r.status_code in (200, 201), r.text


# -- standalone rooms ----------------------------------------------------------------------------


def test_node_providers_converge_with_presence(env: dict[str, Any], node: None) -> None:
    server = env["server"]
    room = f"pad-{uuid.uuid4().hex[:8]}"
    result = run_node(
        "converge.mjs",
        {"server": ws_base(server) + "/yjs", "room": room, "tokens": [env["alice"], env["bob"], env["carol"]]},
    )
    assert result["ok"] and result["exit"] == 0, result
    assert result["stateVectorsEqual"]
    assert all(f"[edit-{i}]" in result["text"] for i in range(3))


def test_an_edit_is_stored_relayed_as_sent_and_reaches_a_late_joiner(env: dict[str, Any]) -> None:
    """The frame a client sends for one edit reaches the others byte for byte (no re-encoding), only after
    the update is in the database; concurrent edits converge; a client joining later gets the whole text."""
    server = env["server"]
    room = f"relay-{uuid.uuid4().hex[:8]}"
    url = ws_base(server) + f"/yjs/{room}?token="

    async def next_update(ws: Any) -> bytes:
        while True:
            frame = await asyncio.wait_for(ws.recv(), 10)
            messages = yp.decode(frame)
            if any(m.kind == yp.MSG_SYNC and m.sub == yp.SYNC_UPDATE for m in messages):
                return bytes(frame)

    async def main() -> None:
        a = await YClient.connect(url + env["alice"])
        b = await YClient.connect(url + env["bob"])
        async with websockets.connect(url + env["carol"], max_size=None) as raw:
            await raw.send(yp.sync_step1(b"\x00"))
            update = await a.edit(0, "hello")
            assert await next_update(raw) == yp.update_message(update)
            assert [data for _, data in stored_rows(server.database_url, room)] == [update]
        assert await b.wait_for(lambda: b.text == "hello")
        await asyncio.gather(a.edit(0, "<"), b.edit(5, ">"), a.edit(6, "!"))
        assert await a.wait_for(lambda: len(a.text) == 8) and await b.wait_for(lambda: b.text == a.text)
        late = await YClient.connect(url + env["dave"])
        assert late.text == a.text and "hello" in late.text
        for c in (a, b, late):
            await c.close()

    asyncio.run(main())


def test_standalone_room_auth_and_names(env: dict[str, Any]) -> None:
    server = env["server"]
    base = ws_base(server) + "/yjs/"

    async def main() -> None:
        assert await status_of(base + "room") == 403
        assert await status_of(base + "room?token=garbage") == 403
        assert await status_of(base + "x" * 300 + f"?token={env['alice']}") == 400
        client = await YClient.connect(base + f"ok-room?token={env['alice']}")
        assert client.text == ""
        await client.close()
        # Bearer header and cookie work too; a cookie from a foreign Origin is refused (cross-site hijacking)
        async with websockets.connect(base + "ok-room", additional_headers={"Authorization": f"Bearer {env['alice']}"}):
            pass
        cookie = {"Cookie": f"token={env['alice']}"}
        async with websockets.connect(base + "ok-room", additional_headers=cookie):
            pass
        with pytest.raises(websockets.InvalidStatus) as err:
            async with websockets.connect(base + "ok-room", additional_headers=cookie, origin="https://evil.example"):
                pass
        assert err.value.response.status_code == 403

    asyncio.run(main())


def test_pycrdt_clients_sync_presence_and_query(env: dict[str, Any]) -> None:
    server = env["server"]
    url = ws_base(server) + f"/yjs/py-{uuid.uuid4().hex[:8]}?token="

    async def main() -> None:
        a = await YClient.connect(url + env["alice"])
        await a.edit(0, "hello")
        await a.set_presence(1111, 1, {"user": "alice"})
        b = await YClient.connect(url + env["bob"])
        assert b.text == "hello"  # SyncStep2 from the server's own document
        assert await b.wait_for(lambda: 1111 in b.awareness)  # known states are sent on join
        await b.edit(5, " world")
        assert await a.wait_for(lambda: a.text == "hello world")
        await b.set_presence(2222, 1, {"user": "bob"})
        assert await a.wait_for(lambda: 2222 in a.awareness)
        await a.ws.send(bytes([3]))  # query awareness: answered with every known state
        assert await a.wait_for(lambda: 1111 in a.awareness and 2222 in a.awareness)
        await b.close()  # bob's presence is removed for everyone
        assert await a.wait_for(lambda: 2222 not in a.awareness)
        await a.close()

    asyncio.run(main())


def test_presence_echoes_are_not_relayed_and_stale_entries_change_nothing(env: dict[str, Any]) -> None:
    """Stock clients send back every presence change they receive; the server relays only entries that are
    news to the room (a newer clock, or the removal of a known state), as y-protocols applies them."""
    url = ws_base(env["server"]) + f"/yjs/echo-{uuid.uuid4().hex[:8]}?token={env['alice']}"

    async def main() -> None:
        a, b, c = [await YClient.connect(url) for _ in range(3)]
        await a.set_presence(501, 3, {"user": "a"})
        assert await c.wait_for(lambda: 501 in c.awareness)
        before = c.awareness_frames
        await b.set_presence(501, 3, {"user": "a"})  # the echo a stock client would send
        await b.set_presence(501, 2, {"user": "stale"})  # an older clock
        await b.ws.send(yp.encode_awareness([yp.AwarenessEntry(501, 1, "null")]))  # an older removal
        # a peer's messages are handled in order: once b's next, new entry (the marker) reaches c, the three
        # above were handled, and none of them was relayed
        await b.set_presence(502, 1, {"user": "marker"})
        assert await c.wait_for(lambda: 502 in c.awareness)
        assert c.awareness_frames == before + 1 and c.awareness[501] == (3, '{"user": "a"}')
        await a.set_presence(501, 4, {"user": "a2"})
        assert await c.wait_for(lambda: c.awareness.get(501, (0, ""))[0] == 4)
        assert c.awareness_frames == before + 2
        late = await YClient.connect(url)  # a newcomer gets the current states on join
        assert await late.wait_for(lambda: late.awareness.get(501) == (4, '{"user": "a2"}'))
        for x in (a, b, c, late):
            await x.close()

    asyncio.run(main())


def test_malformed_and_oversized_messages_close_with_clear_codes(env: dict[str, Any]) -> None:
    server, admin = env["server"], env["admin"]
    url = ws_base(server) + f"/yjs/lim-{uuid.uuid4().hex[:8]}?token={env['alice']}"

    async def main() -> None:
        a = await YClient.connect(url)
        await a.ws.send(b"\x00\x02\x05ab")  # truncated update
        assert await a.closed() == 1007
        set_config(server, admin, "yjs.max_message_bytes", "2000")
        await asyncio.sleep(1.5)
        b = await YClient.connect(url)
        await b.edit(0, "x" * 5000)
        assert await b.closed() == 1009
        assert "larger than 2000" in b.close_reason
        set_config(server, admin, "yjs.max_message_bytes", "1048576")
        set_config(server, admin, "yjs.max_document_bytes", "3000")
        await asyncio.sleep(1.5)
        c = await YClient.connect(url)
        await c.edit(0, "y" * 1000)
        await c.edit(0, "y" * 1000)
        await c.edit(0, "y" * 1500)
        assert await c.closed() == 1009
        assert "document" in c.close_reason
        set_config(server, admin, "yjs.max_document_bytes", str(16 * 1024 * 1024))

    asyncio.run(main())


def test_a_peer_that_stops_reading_gets_merged_updates_and_others_keep_going(env: dict[str, Any]) -> None:
    """A peer whose socket is full no longer gets a frame per edit: its updates queue and are merged into
    one when it reads again; the room's other peers are not held up meanwhile."""
    url = ws_base(env["server"]) + f"/yjs/slow-{uuid.uuid4().hex[:8]}?token={env['alice']}"
    edits, size = 1500, 8000  # 12 MB: more than the kernel buffers plus the server's 1 MiB backlog
    # a receive buffer below the loopback MSS (64 KiB) can leave TCP waiting on zero-window probes, whose
    # back-off stalls the transfer for many seconds once the peer reads again: keep it above that

    async def main() -> None:
        writer = await YClient.connect(url)
        slow = await YClient.connect(url, ping_interval=None)  # it will not read pongs for a while
        watcher = await YClient.connect(url)
        sock = slow.ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 128 << 10)
        slow.ws.transport.pause_reading()
        for i in range(edits):
            await writer.edit(0, str(i % 10) * size)
            if i % 50 == 49:  # the watcher shares this process: it reads as fast as the writer writes
                assert await watcher.wait_for(lambda n=(i + 1) * size: len(watcher.text) == n, 60)
        assert await watcher.wait_for(lambda: len(watcher.text) == edits * size, 60)
        assert slow.update_frames < edits
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # a small window would drain very slowly
        slow.ws.transport.resume_reading()
        assert await slow.wait_for(lambda: slow.text == writer.text, 60), (slow.close_code, len(slow.text))
        assert slow.update_frames < 0.8 * edits, slow.update_frames  # the backlog came merged, not edit by edit
        assert watcher.update_frames > edits / 2  # a reading peer gets (nearly) one frame per edit
        for c in (writer, slow, watcher):
            await c.close()

    asyncio.run(main())


def test_a_peer_that_never_reads_is_dropped_once_its_queue_is_full(env: dict[str, Any]) -> None:
    url = ws_base(env["server"]) + f"/yjs/stuck-{uuid.uuid4().hex[:8]}?token={env['alice']}"

    async def main() -> None:
        writer = await YClient.connect(url)
        stuck = await YClient.connect(url, ping_interval=None)
        watcher = await YClient.connect(url)
        sock = stuck.ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 128 << 10)  # above the loopback MSS, see above
        stuck.ws.transport.pause_reading()
        for i in range(1000):  # fill the kernel buffers and the server's backlog (8 MB)
            await writer.edit(0, str(i % 10) * 8000)
            if i % 100 == 99:  # the watcher shares this process: let it keep up (it must not be the slow one)
                assert await watcher.wait_for(lambda: watcher.text == writer.text, 60)
        # then more queued messages than a peer may have (4096), however many the writer took meanwhile
        for i in range(8200):
            await writer.edit(0, "s")
            if i % 500 == 499:
                assert await watcher.wait_for(lambda: watcher.text == writer.text, 60)
        assert await watcher.wait_for(lambda: watcher.text == writer.text, 60)
        await asyncio.sleep(4)  # the close frame cannot reach a peer that does not read: it is dropped
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        stuck.ws.transport.resume_reading()
        assert await stuck.closed(30) == 1006  # what was sent arrives, then the connection ends without a close
        assert len(stuck.text) < len(writer.text)  # the rest was never sent
        await writer.edit(0, "after")  # the room goes on
        assert await watcher.wait_for(lambda: watcher.text.startswith("after"))

    asyncio.run(main())


# -- row-bound rooms -----------------------------------------------------------------------------


def test_row_room_checks_before_upgrade(env: dict[str, Any]) -> None:
    server, alice, bob = env["server"], env["alice"], env["bob"]
    ref = new_note(server, alice, "secret")
    base = ws_base(server)

    async def main() -> None:
        assert await status_of(f"{base}/live/note/{ref}/body/yjs") == 403  # no token
        assert await status_of(f"{base}/live/nope/{ref}/body/yjs?token={alice}") == 404
        assert await status_of(f"{base}/live/note/{ref}/nocol/yjs?token={alice}") == 404
        assert await status_of(f"{base}/live/note/{ref}/title/yjs?token={alice}") == 404  # not file.*
        assert await status_of(f"{base}/live/note/{uuid.uuid4()}/body/yjs?token={alice}") == 404
        assert await status_of(f"{base}/live/note/not-a-uuid/body/yjs?token={alice}") == 400
        assert await status_of(f"{base}/live/note/{ref}/body/yjs?token={bob}") == 404  # may not read
        # the canonical name on /yjs is the same room and gets the same checks, in every UUID spelling
        for spelling in (ref, ref.upper(), ref.replace("-", ""), "{" + ref + "}"):
            assert await status_of(f"{base}/yjs/note.{spelling}.body?token={bob}") == 404
        assert await status_of(f"{base}/yjs/nope.{ref}.body?token={bob}") == 404
        assert await status_of(f"{base}/yjs/note.{ref}.title?token={alice}") == 404
        owner = await YClient.connect(f"{base}/yjs/note.{ref.upper()}.body?token={alice}")
        assert owner.text == "secret"
        await owner.close()

    asyncio.run(main())


def test_seed_write_back_and_patch_while_open(env: dict[str, Any], node: None) -> None:
    server, alice = env["server"], env["alice"]
    ref = new_note(server, alice, "hello seed")
    url = ws_base(server) + f"/live/note/{ref}/body/yjs?token={alice}"

    async def main() -> None:
        a = await YClient.connect(url)
        assert a.text == "hello seed"
        await a.edit(len(a.text), " world")
        loop = asyncio.get_running_loop()
        started = loop.time()
        while column_text(server, alice, ref) != "hello seed world":
            assert loop.time() - started < 3, "write-back did not happen within 2 s of the last edit"
            await asyncio.sleep(0.2)
        # a REST PATCH of the column while the room is open replaces the document's text
        with server.client(alice) as c:
            r = c.patch(
                f"/api/note/{ref}",
                json={"data": {"type": "note", "id": ref, "attributes": {"body": file_value("patched")}}},
            )
            assert r.status_code == 200, r.text
        assert await a.wait_for(lambda: a.text == "patched"), a.text
        await asyncio.sleep(2.5)  # no later write-back undoes it
        assert column_text(server, alice, ref) == "patched"
        await a.close()

    asyncio.run(main())
    # the stock client on the /live path: provider URL = server + '/' + room
    result = run_node(
        "edit.mjs", {"server": ws_base(server) + f"/live/note/{ref}/body", "room": "yjs", "token": alice, "insert": "!"}
    )
    assert result["text"] == "patched!", result


def test_deleting_the_row_closes_its_room_and_drops_the_document(env: dict[str, Any]) -> None:
    server, alice = env["server"], env["alice"]
    ref = new_note(server, alice, "short-lived")
    room = f"note.{ref}.body"

    async def main() -> None:
        a = await YClient.connect(ws_base(server) + f"/live/note/{ref}/body/yjs?token={alice}")
        await a.edit(0, ">")
        assert stored_rows(server.database_url, room)
        with server.client(alice) as c:
            assert c.delete(f"/api/note/{ref}").status_code in (200, 204)
        assert await a.closed() == 1001
        assert "deleted" in a.close_reason
        for _ in range(50):
            if not stored_rows(server.database_url, room):
                break
            await asyncio.sleep(0.1)
        assert stored_rows(server.database_url, room) == []
        with pytest.raises(websockets.InvalidStatus) as refused:  # the row is gone: no room to join
            await YClient.connect(ws_base(server) + f"/yjs/{room}?token={alice}")
        assert refused.value.response.status_code == 404

    asyncio.run(main())


def test_read_only_and_rights_change_without_reconnect(env: dict[str, Any]) -> None:
    server, alice, bob = env["server"], env["alice"], env["bob"]
    ref = new_note(server, alice, "base", permission=OWNER_ALL | GUEST_READ)
    url = ws_base(server) + f"/live/note/{ref}/body/yjs?token="

    async def main() -> None:
        owner = await YClient.connect(url + alice)
        intruder = await YClient.connect(url + bob)
        assert intruder.text == "base"  # history for a reader
        await intruder.edit(0, "EVIL ")  # refused: not applied, not relayed, not stored
        await intruder.set_presence(4242, 1, {"user": "bob"})  # awareness still works
        assert await owner.wait_for(lambda: 4242 in owner.awareness)
        await owner.edit(4, "!")
        assert await intruder.wait_for(lambda: intruder.text.endswith("base!"))  # live updates reach readers
        assert owner.text == "base!"
        fresh = await YClient.connect(url + alice)
        assert fresh.text == "base!"
        await fresh.close()
        await intruder.close()
        reader = await YClient.connect(url + bob)
        # upgrade to read-write without reconnecting
        set_permission(server, alice, ref, OWNER_ALL | GUEST_READ | GUEST_UPDATE)
        await asyncio.sleep(0.5)
        await reader.edit(0, "bob:")
        assert await owner.wait_for(lambda: "bob:" in owner.text), owner.text
        # downgrade to read-only: the next edit is refused
        set_permission(server, alice, ref, OWNER_ALL | GUEST_READ)
        await asyncio.sleep(0.5)
        await reader.edit(0, "nope:")
        await reader.set_presence(7777, 1, {"user": "marker"})  # handled after the edit: the edit was decided
        assert await owner.wait_for(lambda: 7777 in owner.awareness)
        assert "nope:" not in owner.text
        # revoked: disconnected
        set_permission(server, alice, ref, OWNER_ALL)
        assert await reader.closed() == 1008
        assert reader.close_reason == "permission revoked"
        await owner.close()

    asyncio.run(main())
    assert "EVIL" not in column_text(server, alice, ref)


def test_disabling_yjs_closes_rooms(env: dict[str, Any]) -> None:
    server, admin, alice = env["server"], env["admin"], env["alice"]
    url = ws_base(server) + f"/yjs/off-{uuid.uuid4().hex[:8]}?token={alice}"

    async def main() -> None:
        a = await YClient.connect(url)
        set_config(server, admin, "yjs.enabled", "false")
        try:
            assert await a.closed(5) == 1001
            assert await status_of(url) == 404
        finally:
            set_config(server, admin, "yjs.enabled", "true")
        await asyncio.sleep(0.5)
        b = await YClient.connect(url)
        await b.close()

    asyncio.run(main())


# -- durability, compaction, several nodes -------------------------------------------------------


def stored_rows(db_url: str, room: str) -> list[tuple[str, bytes]]:
    import sqlalchemy as sa

    from support import sync_url

    engine = sa.create_engine(sync_url(db_url))
    try:
        with engine.connect() as c:
            # the indexed table, then the journal that the SQLite group commit writes first (core/yjs_store.py)
            rows = c.execute(
                sa.text(
                    "SELECT kind, data, 0 AS j, id FROM _yjs_document WHERE room = :r"
                    " UNION ALL SELECT 'update', data, 1 AS j, id FROM _yjs_journal WHERE room = :r ORDER BY j, id"
                ),
                {"r": room},
            )
            return [(str(k), bytes(d)) for k, d, _, _ in rows]
    finally:
        engine.dispose()


def test_kill_9_durability_and_compaction(db_url: str) -> None:
    from support import start_server

    server = start_server(db_url)
    room = f"dur-{uuid.uuid4().hex[:8]}"
    try:
        _, admin = new_user(server, "dadmin")
        _, alice = new_user(server, "dalice")
        with server.client(admin) as c:
            assert c.post("/action/world/become_an_administrator").status_code == 200
        url = ws_base(server) + f"/yjs/{room}?token={alice}"

        async def before_crash() -> str:
            a = await YClient.connect(url)
            b = await YClient.connect(url)
            for i in range(30):
                await a.edit(len(a.text), f"{i},")
            expected = "".join(f"{i}," for i in range(30))
            assert await b.wait_for(lambda: b.text == expected)  # b has seen every update relayed
            return b.text

        seen = asyncio.run(before_crash())
        server.proc.kill()  # SIGKILL: no shutdown hooks, no flush
        server.proc.wait(10)
    finally:
        server.stop()
    server = start_server(db_url, server.data_dir)
    try:
        set_config(server, admin, "yjs.compact_after", "10")
        url = ws_base(server) + f"/yjs/{room}?token={alice}"

        async def after_restart() -> None:
            c = await YClient.connect(url)
            assert c.text == seen
            for _ in range(15):
                await c.edit(0, "z")
            await asyncio.sleep(1.0)
            d = await YClient.connect(url)
            assert d.text == "z" * 15 + seen
            await c.close()
            await d.close()

        asyncio.run(after_restart())
        rows = stored_rows(db_url, room)
        assert any(kind == "snapshot" for kind, _ in rows)
        assert len(rows) < 30, len(rows)  # 45 updates were stored; compaction merged them
    finally:
        server.stop()


def test_cross_node_convergence_without_double_storage(cluster: tuple[str, Server, Server], node: None) -> None:
    url, a, b = cluster
    _, alice = new_user(a, "xalice")
    _, bob = new_user(b, "xbob")
    room = f"x-{uuid.uuid4().hex[:8]}"
    result = run_node(
        "converge.mjs",
        {"servers": [ws_base(a) + "/yjs", ws_base(b) + "/yjs"], "room": room, "tokens": [alice, bob, alice]},
    )
    assert result["ok"] and result["exit"] == 0, result

    async def fine() -> None:
        x = await YClient.connect(ws_base(a) + f"/yjs/{room}?token={alice}")
        y = await YClient.connect(ws_base(b) + f"/yjs/{room}?token={bob}")
        await x.edit(0, "A>")
        assert await y.wait_for(lambda: y.text.startswith("A>")), y.text
        await y.set_presence(777, 1, {"user": "bob"})
        assert await x.wait_for(lambda: 777 in x.awareness)
        await y.close()
        assert await x.wait_for(lambda: 777 not in x.awareness)
        await x.close()

    asyncio.run(fine())
    rows = stored_rows(url, room)
    datas = [d for _, d in rows]
    assert rows and len(datas) == len(set(datas)), "an update was stored twice"


def test_a_node_that_lost_its_relay_subscription_catches_up_from_the_database(
    cluster: tuple[str, Server, Server],
) -> None:
    """Pub/sub is at-most-once: updates relayed while a node resubscribes are lost to it. After resubscribing,
    the node re-reads its rooms' stored updates, so its clients converge anyway."""
    url, a, b = cluster
    _, alice = new_user(a, "ralice")
    room = f"resync-{uuid.uuid4().hex[:8]}"
    admin = redis.Redis.from_url(REDIS)
    # this cluster's relays only (other clusters may share the Redis)
    name = f"portside-yjs-relay:portside:yjs:{stored_config(url, 'cluster.id')}"

    def cut_relay_subscriptions() -> int:
        ids = [c["id"] for c in admin.client_list() if c.get("name") == name]
        for cid in ids:
            admin.client_kill_filter(_id=cid)
        return len(ids)

    async def main() -> None:
        x = await YClient.connect(ws_base(a) + f"/yjs/{room}?token={alice}")
        y = await YClient.connect(ws_base(b) + f"/yjs/{room}?token={alice}")
        await x.edit(0, "start ")
        assert await y.wait_for(lambda: y.text == x.text)
        for i in range(300):  # edits keep coming while both nodes resubscribe (~0.1 s without relay)
            await x.edit(len(x.text), f"{i} ")
            if i == 50:
                assert await asyncio.to_thread(cut_relay_subscriptions) == 2
            await asyncio.sleep(0.003)
        assert await y.wait_for(lambda: y.text == x.text, 20), (len(y.text), len(x.text))
        await y.edit(0, "B>")  # and the relay works again, both ways
        assert await x.wait_for(lambda: x.text.startswith("B>"))
        await x.close()
        await y.close()

    try:
        asyncio.run(main())
    finally:
        admin.close()


def test_idle_rooms_unload_and_text_name_per_column(env: dict[str, Any]) -> None:
    server, admin, alice = env["server"], env["admin"], env["alice"]
    room = f"idle-{uuid.uuid4().hex[:8]}"
    set_config(server, admin, "yjs.idle_unload_seconds", "1")
    set_config(server, admin, "yjs.text_name.note.body", "codemirror")
    ref = new_note(server, alice, "named seed")

    async def main() -> None:
        a = await YClient.connect(ws_base(server) + f"/yjs/{room}?token={alice}")
        for _ in range(12):
            await a.edit(0, "i")
        await a.close()
        b = await YClient.connect(ws_base(server) + f"/live/note/{ref}/body/yjs?token={alice}", name="codemirror")
        assert b.text == "named seed"
        await b.close()

    try:
        asyncio.run(main())
        db_url = server.database_url
        for _ in range(50):  # unloaded after a second idle; unloading compacts the 12 stored updates
            rows = stored_rows(db_url, room)
            if len(rows) == 1:
                break
            asyncio.run(asyncio.sleep(0.2))
        assert [k for k, _ in rows] == ["snapshot"], rows
    finally:
        set_config(server, admin, "yjs.idle_unload_seconds", "30")
        with server.client(admin) as c:
            c.delete("/_config/backend/yjs.text_name.note.body")


def test_write_back_during_continuous_editing(env: dict[str, Any]) -> None:
    server, alice = env["server"], env["alice"]
    ref = new_note(server, alice, "")
    url = ws_base(server) + f"/live/note/{ref}/body/yjs?token={alice}"

    async def main() -> list[str]:
        a = await YClient.connect(url)
        seen: list[str] = []
        loop = asyncio.get_running_loop()
        start = loop.time()
        while loop.time() - start < 11.5:  # an edit every 0.4 s: the debounce never settles
            await a.edit(len(a.text), ".")
            text = column_text(server, alice, ref)
            if not seen or seen[-1] != text:
                seen.append(text)
            await asyncio.sleep(0.4)
        await a.close()
        return seen

    seen = asyncio.run(main())
    # written during the editing (at most ~10 s after it began), and not on every edit
    assert any(len(t) > 5 for t in seen), seen
    assert len(seen) <= 3, seen


def test_changed_password_closes_the_users_rooms(env: dict[str, Any]) -> None:
    from support import me

    sqlite_server, dave, erin = env["server"], env["dave"], env["carol"]
    url = ws_base(sqlite_server) + f"/yjs/cred-{uuid.uuid4().hex[:8]}?token="

    async def main() -> None:
        d = await YClient.connect(url + dave)
        e = await YClient.connect(url + erin)
        with sqlite_server.client(dave) as c:
            ref = me(c)["id"]
            attrs = {"password": "another-secret-1"}
            r = c.patch(
                f"/api/user_account/{ref}", json={"data": {"type": "user_account", "id": ref, "attributes": attrs}}
            )
            assert r.status_code == 200, r.text
        assert await d.closed() == 1008
        assert d.close_reason == "credentials changed"
        await e.edit(0, "still here")  # other users stay connected
        assert e.close_code is None
        await e.close()

    asyncio.run(main())


def test_membership_change_reaches_open_rooms(env: dict[str, Any]) -> None:
    from support import me

    server, admin, alice, bob = env["server"], env["admin"], env["alice"], env["bob"]
    ref = new_note(server, alice, "team text")
    with server.client(admin) as c:
        r = create(c, "usergroup", name=f"yteam-{uuid.uuid4().hex[:6]}")
        assert r.status_code == 201, r.text
        team = r.json()["data"]["id"]
        link = {"data": [{"type": "usergroup", "id": team}]}
        assert c.post(f"/api/note/{ref}/relationships/usergroup_id", json=link).status_code == 204
        with server.client(bob) as bc:
            bob_ref = me(bc)["id"]
        assert c.post(f"/api/user_account/{bob_ref}/relationships/usergroup_id", json=link).status_code == 204
    url = ws_base(server) + f"/live/note/{ref}/body/yjs?token={bob}"

    async def main() -> None:
        member = await YClient.connect(url)  # readable through the group
        assert member.text == "team text"
        with server.client(admin) as c:
            r = c.request("DELETE", f"/api/user_account/{bob_ref}/relationships/usergroup_id", json=link)
            assert r.status_code == 204
        assert await member.closed() == 1008
        assert member.close_reason == "permission revoked"

    asyncio.run(main())
