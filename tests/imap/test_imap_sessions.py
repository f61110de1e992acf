"""IMAP sessions in the ports kit: application-password logins that end (BYE) when the password is deleted,
sessions that end when the mail account's password changes, IMAP writes as /live change events, and push
to an IDLE session across two nodes (one PostgreSQL database, joined by Redis)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator

import pytest
import websockets

from imap_support import (
    ALICE,
    BOB,
    BOB_PW,
    ImapWorld,
    connect,
    connect_port,
    connect_tls,
    idle,
    idle_done,
    message,
    raw_command,
    running_imap_world,
    untagged_within,
)
from support import REDIS, quiet, recv, start_server

PUSH_WITHIN = 1.0


@pytest.fixture(scope="module")
def world() -> Iterator[ImapWorld]:
    with running_imap_world("sqlite", "--redis-url", REDIS) as w:
        yield w


def app_password(world: ImapWorld, token: str) -> tuple[str, str]:
    with world.server.client(token) as c:
        r = c.post("/action/user_account/create_app_password", json={"attributes": {"name": "mail app"}})
        assert r.status_code == 200, r.text
        attrs = next(x for x in r.json() if x["ResponseType"] == "action.response")["Attributes"]
        return attrs["reference_id"], attrs["secret"]


def wait_bye(m: object, seconds: float = 5) -> bytes:
    line, _ = untagged_within(m, lambda x: x.startswith(b"* BYE"), seconds)  # type: ignore[arg-type]
    return line


def test_application_password_login_ends_when_it_is_deleted(world: ImapWorld) -> None:
    ref, secret = app_password(world, world.owner)
    m = connect_tls(world, ALICE, secret)
    assert m.select("INBOX")[0] == "OK"
    keep = connect_tls(world)  # the account password's session is not affected
    keep.select("INBOX")
    idle(m)
    with world.server.client(world.owner) as c:
        r = c.delete(f"/api/app_password/{ref}")
        assert r.status_code in (200, 204), r.text
    assert b"revoked" in wait_bye(m)
    with pytest.raises(Exception, match="Invalid username or password"):
        connect_tls(world, ALICE, secret)
    assert keep.noop()[0] == "OK"
    keep.logout()


def test_a_changed_mail_account_password_ends_its_sessions(world: ImapWorld) -> None:
    m = connect_tls(world, BOB, BOB_PW)
    m.select("INBOX")
    idle(m)
    with world.server.client(world.admin) as c:
        body = {"data": {"type": "mail_account", "id": world.bob_ref, "attributes": {"password": "new-pw"}}}
        r = c.patch(f"/api/mail_account/{world.bob_ref}", json=body)
        assert r.status_code == 200, r.text
    assert b"credentials changed" in wait_bye(m)
    with pytest.raises(Exception, match="Invalid username or password"):  # the cached login is gone at once
        connect_tls(world, BOB, BOB_PW)
    connect_tls(world, BOB, "new-pw").logout()
    with world.server.client(world.admin) as c:  # back, for the other tests
        body = {"data": {"type": "mail_account", "id": world.bob_ref, "attributes": {"password": BOB_PW}}}
        assert c.patch(f"/api/mail_account/{world.bob_ref}", json=body).status_code == 200


def test_imap_writes_are_live_change_events(world: ImapWorld) -> None:
    async def main() -> None:
        url = world.server.url.replace("http://", "ws://") + f"/live?token={world.owner}"
        async with websockets.connect(url) as ws:
            await recv(ws)
            await ws.send(json.dumps({"id": "s", "method": "subscribe", "attributes": {"topicName": "mail"}}))
            assert (await recv(ws))["ok"] is True
            m = await asyncio.to_thread(connect, world)
            await asyncio.to_thread(m.append, "INBOX", None, None, message("live"))
            await asyncio.to_thread(m.select, "INBOX")
            typ, data = await asyncio.to_thread(m.search, None, "SUBJECT", '"live"')
            assert typ == "OK"
            seq = data[0].split()[-1].decode()  # type: ignore[union-attr]
            await asyncio.to_thread(m.store, seq, "+FLAGS", "(\\Flagged \\Deleted)")
            await asyncio.to_thread(m.expunge)
            await asyncio.to_thread(m.logout)
            frames = [f for f in await quiet(ws, 2.0) if f["type"] == "event"]
            datas = [json.loads(base64.b64decode(f["data"])) for f in frames]
            ref = next(d["reference_id"] for f, d in zip(frames, datas, strict=True) if d.get("subject") == "live")
            kinds = [f["event"] for f, d in zip(frames, datas, strict=True) if d.get("reference_id") == ref]
            assert kinds == ["create", "update", "delete"], kinds
            updated = [json.loads(base64.b64decode(f["data"])) for f in frames if f["event"] == "update"]
            assert any(d.get("flagged") and d.get("deleted") for d in updated), updated

    asyncio.run(main())


def test_session_is_refused_when_the_login_fails_and_continues_after(world: ImapWorld) -> None:
    m = connect_tls(world)
    lines = raw_command(m, b"SELECT INBOX")
    assert lines[-1].startswith(b"R1 OK [READ-WRITE]"), lines
    m.logout()


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[tuple[ImapWorld, str]]:
    """Two Portside nodes on one PostgreSQL database joined by Redis, IMAP on both (config is shared)."""
    with running_imap_world("postgresql", "--redis-url", REDIS) as a:
        b = start_server(a.db_url, None, "--redis-url", REDIS, wait_for=("http", "imap", "imaps"))
        try:
            yield a, b.listeners["imap"]
        finally:
            b.stop()


def test_idle_push_across_two_nodes(two_nodes: tuple[ImapWorld, str]) -> None:
    a, b_url = two_nodes
    watcher = connect(a)
    watcher.select("INBOX")
    count = int(watcher.untagged_responses["EXISTS"][-1])
    port_b = int(b_url.rsplit(":", 1)[1])
    assert port_b != a.port("imap")
    writer = connect_port(port_b)  # a session on node b
    writer.select("INBOX")
    idle(watcher)
    try:
        started = time.monotonic()
        writer.append("INBOX", None, None, message("from node b"))
        line, _ = untagged_within(watcher, lambda x: x.endswith(b" EXISTS\r\n"), 5)
        took = time.monotonic() - started
        assert line == f"* {count + 1} EXISTS\r\n".encode() and took < PUSH_WITHIN, (line, took)
        writer.noop()
        writer.store(str(count + 1), "+FLAGS", "(\\Flagged)")
        line, took = untagged_within(watcher, lambda x: b"FETCH" in x and b"\\Flagged" in x, 5)
        assert took < PUSH_WITHIN, took
        writer.store(str(count + 1), "+FLAGS", "(\\Deleted)")
        writer.expunge()
        line, took = untagged_within(watcher, lambda x: x.endswith(b" EXPUNGE\r\n"), 5)
        assert line == f"* {count + 1} EXPUNGE\r\n".encode() and took < PUSH_WITHIN, (line, took)
    finally:
        idle_done(watcher)
        watcher.logout()
        writer.logout()
