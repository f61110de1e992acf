"""The /live session is protocol-neutral: driven here with no WebSocket at all, over a plain in-memory
`Transport` (the interface an edge implements), inside a real running Portside (in-process tier): verbs,
per-subscriber rights, a transport that cannot keep up, the session registry's expel, leaving."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from inprocess import InProcessServer
from portside.auth.identity import actor_from_token
from portside.auth.permissions import Actor
from portside.realtime.live_session import LiveConnection, LiveService, Transport
from portside.tools.wire_errors import POLICY
from support import create, new_user, schema_upload

SCHEMA = """
Tables:
  - TableName: plainrow
    AccessGroups: [{Name: users, Permission: 2080768}]
    DefaultPermission: 16256
    Columns:
      - {Name: title, DataType: varchar(100), ColumnType: label}
"""


class ListTransport:
    """A transport that keeps what it is given; `full` makes it refuse frames like a peer that stopped reading."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.closed: list[tuple[int, str]] = []
        self.full = False

    def send(self, frame: dict[str, Any]) -> bool:
        if self.full:
            return False
        self.frames.append(json.loads(json.dumps({k: v for k, v in frame.items() if not k.startswith("\x00")})))
        return True

    def close(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))


@pytest.fixture(scope="module")
def env(inprocess_server: InProcessServer) -> Iterator[tuple[InProcessServer, str, str]]:
    _, admin = new_user(inprocess_server, "tadmin")  # type: ignore[arg-type]
    _, alice = new_user(inprocess_server, "talice")  # type: ignore[arg-type]
    _, bob = new_user(inprocess_server, "tbob")  # type: ignore[arg-type]
    with inprocess_server.client(admin) as c:
        assert c.post("/action/world/become_an_administrator").status_code == 200
        assert schema_upload(c, SCHEMA).status_code == 200
    yield inprocess_server, alice, bob


def service(srv: InProcessServer) -> LiveService:
    assert srv.app is not None and srv.app.services is not None and srv.app.services.live is not None
    return srv.app.services.live


def who(srv: InProcessServer, token: str) -> Actor:
    svc = srv.app.services  # type: ignore[union-attr]
    assert svc is not None
    return srv.run(actor_from_token(svc.db, svc.actors, svc.model, token, secret=svc.jwt_secret, issuer=svc.jwt_issuer))


def open_session(srv: InProcessServer, token: str) -> tuple[LiveConnection, ListTransport]:
    transport = ListTransport()
    _t: Transport = transport  # the edge's side of the interface, checked by mypy/pyright readers

    actor = who(srv, token)

    async def go() -> LiveConnection:
        conn = service(srv).open(transport, actor)
        conn.greet()
        return conn

    return srv.run(go()), transport


def request(srv: InProcessServer, conn: LiveConnection, method: str, **attrs: Any) -> None:
    srv.run(conn.handle(json.dumps({"id": method, "method": method, "attributes": attrs})))


def on_loop(srv: InProcessServer, fn: Callable[[], Any]) -> Any:
    """Call `fn` on the server's event loop (the hub is not thread-safe)."""

    async def call() -> Any:
        return fn()

    return srv.run(call())


def wait(cond: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def events(t: ListTransport) -> list[dict[str, Any]]:
    return [f for f in t.frames if f["type"] == "event"]


def test_verbs_and_rights_over_a_plain_transport(env: tuple[InProcessServer, str, str]) -> None:
    srv, alice, bob = env
    a, ta = open_session(srv, alice)
    b, tb = open_session(srv, bob)
    try:
        assert ta.frames[0]["type"] == "session" and ta.frames[0]["data"]["sessionId"] == a.session.id
        for conn in (a, b):
            request(srv, conn, "subscribe", topicName="plainrow")
        assert ta.frames[-1] == {"type": "response", "id": "subscribe", "method": "subscribe", "ok": True,
                                 "data": {"topic": "plainrow"}}  # fmt: skip
        with srv.client(alice) as c:
            assert create(c, "plainrow", title="alice-only").status_code == 201
        with srv.client(bob) as c:
            assert create(c, "plainrow", title="bob-marker").status_code == 201
        wait(lambda: len(events(ta)) == 1 and len(events(tb)) == 1)
        assert [f["data"]["title"] for f in events(ta)] == ["alice-only"]
        assert [f["data"]["title"] for f in events(tb)] == ["bob-marker"]  # alice's row never reached bob
        request(srv, a, "subscribe", topicName="nope")
        assert ta.frames[-1]["ok"] is False and ta.frames[-1]["code"] == "not_found"
        srv.run(a.handle(b"\xff not json"))
        assert ta.frames[-1]["error"] == "invalid JSON" and ta.frames[-1]["code"] == "bad_request"
    finally:
        for conn in (a, b):
            on_loop(srv, lambda c=conn: service(srv).leave(c))
    assert a.session not in service(srv).hub.sessions and not a.session.subscriptions


def test_a_transport_that_cannot_keep_up_is_dropped_and_expel_closes(env: tuple[InProcessServer, str, str]) -> None:
    srv, alice, _ = env
    slow, tslow = open_session(srv, alice)
    other, tother = open_session(srv, alice)
    try:
        for conn in (slow, other):
            request(srv, conn, "subscribe", topicName="plainrow")
        tslow.full = True
        with srv.client(alice) as c:
            assert create(c, "plainrow", title="overflow").status_code == 201
        wait(lambda: len(events(tother)) == 1)  # the others keep receiving
        wait(lambda: slow.session.overflowed)
        assert slow.session.subscriptions == {} and events(tslow) == []
        on_loop(srv, lambda: other.expel("credentials changed"))  # what the session registry calls
        assert tother.closed == [(POLICY, "credentials changed")] and other.session.subscriptions == {}
    finally:
        for conn in (slow, other):
            on_loop(srv, lambda c=conn: service(srv).leave(c))


def test_a_request_that_fails_is_refused_and_the_session_goes_on(
    env: tuple[InProcessServer, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database that stays busy (here: the pool wait timing out) gets an `unavailable` refusal, anything
    unexpected an `internal` one without its text; either way the session keeps serving requests."""
    import sqlalchemy.exc

    from portside.realtime import topics

    srv, alice, _ = env
    conn, t = open_session(srv, alice)

    async def busy(*_: Any, **__: Any) -> Any:
        raise sqlalchemy.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached")

    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("secret internals")

    try:
        monkeypatch.setattr(topics, "create", busy)
        request(srv, conn, "create-topicName", name="busytopic")
        refusal = {"ok": False, "error": "the database is busy; try again", "code": "unavailable"}
        assert t.frames[-1] == {"type": "response", "id": "create-topicName", "method": "create-topicName", **refusal}
        monkeypatch.setattr(topics, "create", broken)
        request(srv, conn, "create-topicName", name="busytopic")
        assert t.frames[-1]["code"] == "internal" and "secret" not in json.dumps(t.frames[-1]), t.frames[-1]
        monkeypatch.undo()
        request(srv, conn, "ping")
        assert t.frames[-1] == {"type": "pong"}
        request(srv, conn, "subscribe", topicName="plainrow")
        assert t.frames[-1]["ok"] is True, t.frames[-1]
    finally:
        on_loop(srv, lambda: service(srv).leave(conn))
