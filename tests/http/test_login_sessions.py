"""Issue 12: one login() for every protocol, application passwords, and the session registry.

Real servers on port 0 (all three databases, and a two-node cluster), talked to over HTTP and WebSockets;
login() and the registry are also driven in-process against the same real database.
"""

from __future__ import annotations

import asyncio
import json
import re
import types
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import websockets

from portside.auth.login import login
from portside.auth.permissions import Actor
from portside.auth.sessions import SessionRegistry, app_password_credential
from portside.auth.throttle import LoginThrottle
from portside.core.db import Database
from portside.core.events import Event
from portside.core.model import build
from portside.core.systables import system_doc
from portside.errors import TooManyRequests, Unauthorized
from support import PASSWORD, Server, World, create, me, new_user, read_events, setup_world

SECRET_RE = re.compile(r"ps_[0-9a-f]{32}_[A-Za-z0-9_-]{43}")


USERS = ("apo", "apx", "lg", "lgo", "rg", "pw", "pwb", "del")
_users: dict[str, tuple[str, str]] = {}


@pytest.fixture(scope="module")
def world(server: Server, db_url: str) -> Iterator[World]:
    # sign-up closes once an administrator exists: the users these tests need come first (the first
    # user setup_world makes becomes administrator, so it is made before ours)
    yield _world(server, db_url)


def _world(server: Server, db_url: str) -> World:
    import support

    original = support.new_user
    made: list[tuple[str, str]] = []

    def new_user_then_ours(srv: Server, prefix: str = "u") -> tuple[str, str]:
        made.append(original(srv, prefix))
        if prefix == "admin":
            for name in USERS:
                _users[name] = original(srv, name)
        return made[-1]

    support.new_user = new_user_then_ours
    try:
        return setup_world(server, db_url)
    finally:
        support.new_user = original


def user(prefix: str) -> tuple[str, str]:
    return _users[prefix]


def make_app_password(server: Server, token: str, name: str = "phone") -> tuple[str, str]:
    with server.client(token) as c:
        r = c.post("/action/user_account/create_app_password", json={"attributes": {"name": name}})
        assert r.status_code == 200, r.text
        out = [x for x in r.json() if x["ResponseType"] == "action.response"]
        assert len(out) == 1, r.text
        attrs = out[0]["Attributes"]
        assert attrs["name"] == name and SECRET_RE.fullmatch(attrs["secret"]), attrs
        return attrs["reference_id"], attrs["secret"]


async def imap_login_refused(db_url: str, email: str, secret: str) -> None:
    """An IMAP login with (email, secret) against the server's database is refused."""
    db = Database(db_url)
    try:
        with pytest.raises(Unauthorized):
            await login(
                db,
                build([system_doc()]),
                LoginThrottle(),
                identifier=email,
                secret=secret,
                address="a",
                protocol="imap",
            )
    finally:
        await db.dispose()


def test_app_password_is_shown_once_and_only_to_its_owner(world: World) -> None:
    server = world.server
    owner_email, owner = user("apo")
    _, other = user("apx")
    ref, secret = make_app_password(server, owner)
    digest_hint = "sha256$"
    with server.client(owner) as c:
        rows = c.get("/api/app_password").json()["data"]
        assert [r["id"] for r in rows] == [ref]
        attrs = rows[0]["attributes"]
        assert attrs["name"] == "phone" and "secret_hash" not in attrs and "last_used" in attrs
        one = c.get(f"/api/app_password/{ref}")
        assert one.status_code == 200 and secret not in one.text and digest_hint not in one.text
        # the hash column is never written through the API, the owner never handed to someone else
        body = {"data": {"type": "app_password", "id": ref, "attributes": {"secret_hash": "sha256$00"}}}
        assert c.patch(f"/api/app_password/{ref}", json=body).status_code == 403
        with server.client(other) as oc:
            other_ref = me(oc)["id"]
        body = {
            "data": {
                "type": "app_password",
                "id": ref,
                "attributes": {},
                "relationships": {"user_account_id": {"data": {"type": "user_account", "id": other_ref}}},
            }
        }
        assert c.patch(f"/api/app_password/{ref}", json=body).status_code in (400, 403)
        link = {"data": {"type": "user_account", "id": other_ref}}
        r = c.patch(f"/api/app_password/{ref}/relationships/user_account_id", json=link)
        assert r.status_code in (400, 403, 404), r.text
        # the owner may rename it, but not fake its last use
        body = {"data": {"type": "app_password", "id": ref, "attributes": {"name": "old phone"}}}
        assert c.patch(f"/api/app_password/{ref}", json=body).status_code == 200
        body = {"data": {"type": "app_password", "id": ref, "attributes": {"last_used": "2020-01-01T00:00:00Z"}}}
        assert c.patch(f"/api/app_password/{ref}", json=body).status_code == 403
        assert c.get(f"/api/app_password/{ref}").json()["data"]["attributes"]["last_used"] is None
        # rows come only from the action (no Create on the table for users)
        assert create(c, "app_password", name="raw").status_code == 403
        # HTTP sign-in takes the main password only
        r = c.post("/action/user_account/signin", json={"attributes": {"email": owner_email, "password": secret}})
        assert r.status_code == 401 and r.json()[0]["Attributes"]["message"] == "Invalid username or password"
        # bad names: 400 with a pointer, nothing created
        for bad in ("", " lead", "a\x00b", "x" * 101, 5):
            r = c.post("/action/user_account/create_app_password", json={"attributes": {"name": bad}})
            assert r.status_code == 400, (bad, r.text)
            assert "name" in r.json()[0]["Attributes"]["message"], r.text
        assert len(c.get("/api/app_password").json()["data"]) == 1
    with server.client() as guest:
        r = guest.post("/action/user_account/create_app_password", json={"attributes": {"name": "x"}})
        assert r.status_code in (401, 403)
    with server.client(other) as oc:
        assert all(r["id"] != ref for r in oc.get("/api/app_password").json()["data"])
        assert oc.get(f"/api/app_password/{ref}").status_code in (403, 404)
        assert oc.delete(f"/api/app_password/{ref}").status_code in (403, 404)
    with server.client(owner) as c:
        assert c.get(f"/api/app_password/{ref}").status_code == 200  # still there
        assert c.delete(f"/api/app_password/{ref}").status_code in (200, 204)
        assert c.get("/api/app_password").json()["data"] == []
    # the secret and its hash are in no event and no log line
    events = json.dumps(read_events(world.db_url))
    assert secret not in events and digest_hint not in events
    assert not any(secret in line for line in server.log)


def test_login_accepts_app_passwords_for_protocols_but_not_http_signin(world: World) -> None:
    server = world.server
    email, token = user("lg")
    other_email, other = user("lgo")
    ref, secret = make_app_password(server, token, "mail")
    _, foreign = make_app_password(server, other, "mail")

    async def main() -> None:
        db = Database(world.db_url)
        model = build([system_doc()])
        throttle = LoginThrottle()
        try:
            ok = await login(
                db, model, throttle, identifier=email.upper(), secret=secret, address="198.51.100.7", protocol="imap"
            )
            assert ok.actor.email == email and ok.credential == app_password_credential(ref)
            main = await login(db, model, throttle, identifier=email, secret=PASSWORD, address="a", protocol="smtp")
            assert main.credential == "password" and main.actor.ref == ok.actor.ref
            refused = [
                (email, secret, "http"),  # HTTP sign-in: main password only
                (email, foreign, "imap"),  # somebody else's application password
                (email, secret[:-1] + ("A" if secret[-1] != "A" else "B"), "imap"),
                (other_email, secret, "imap"),
                (f"nobody-{uuid.uuid4().hex[:6]}@example.com", secret, "ftp"),
                (email, "", "dav"),
                (email, None, "dav"),
            ]
            for who, sec, proto in refused:
                with pytest.raises(Unauthorized) as err:
                    await login(db, model, throttle, identifier=who, secret=sec, address="198.51.100.9", protocol=proto)
                assert err.value.detail == "Invalid username or password"
            # the throttle is shared across protocols: switching protocol gives no extra guesses
            throttle = LoginThrottle()
            for i in range(12):
                proto = ("imap", "smtp", "ftp", "dav")[i % 4]
                try:
                    await login(
                        db, model, throttle, identifier=email, secret="wrong", address="203.0.113.5", protocol=proto
                    )
                except Unauthorized:
                    continue
                except TooManyRequests:
                    break
            else:
                raise AssertionError("never throttled")
            assert i == throttle.limits.per_pair  # ten wrong guesses in all, whatever the protocol
            with pytest.raises(TooManyRequests):
                await login(
                    db, model, throttle, identifier=email, secret=secret, address="203.0.113.5", protocol="imap"
                )
            # a clean address is not locked out by that
            await login(db, model, throttle, identifier=email, secret=secret, address="192.0.2.1", protocol="imap")
        finally:
            await db.dispose()

    asyncio.run(main())
    with server.client(token) as c:
        rows = c.get("/api/app_password").json()["data"]
        assert rows[0]["attributes"]["last_used"]  # recorded (at most once a minute)
        assert c.delete(f"/api/app_password/{ref}").status_code in (200, 204)

    asyncio.run(imap_login_refused(world.db_url, email, secret))


def test_registry_ends_app_password_sessions_and_rechecks_users(world: World) -> None:
    """The registry in-process over the real database: an app password's deletion ends exactly the sessions
    that logged in with it; a password change ends all of the user's; a group change re-checks them."""
    server = world.server
    email, token = user("rg")
    ref, secret = make_app_password(server, token, "ftp")

    async def main() -> None:
        db = Database(world.db_url)
        model = build([system_doc()])
        registry = SessionRegistry(db, types.SimpleNamespace(model=model))  # type: ignore[arg-type]
        ended: dict[str, list[str]] = {"imap": [], "ftp": [], "live": []}
        rechecked: list[Actor] = []

        async def recheck(fresh: Actor) -> None:
            rechecked.append(fresh)

        try:
            got = await login(db, model, LoginThrottle(), identifier=email, secret=secret, address="a", protocol="ftp")
            sessions = {
                kind: registry.open(
                    got.actor,
                    kind,
                    got.credential if kind != "live" else "token:x",
                    recheck=recheck,
                    end=lambda reason, kind=kind: ended[kind].append(reason),
                )
                for kind in ended
            }
            with server.client(token) as c:
                assert c.delete(f"/api/app_password/{ref}").status_code in (200, 204)
            registry.react(Event(1, "app_password", "delete", ref, {}, None, None))  # type: ignore[arg-type]
            assert ended == {
                "imap": ["application password revoked"],
                "ftp": ["application password revoked"],
                "live": [],
            }
            assert registry.sessions(user=got.actor.ref) == [sessions["live"]]
            # joining a group: same credentials, new identity -> re-checked, not ended
            with world.c(world.admin) as c:
                r = c.post(
                    f"/api/user_account/{got.actor.ref}/relationships/usergroup_id",
                    json={"data": [{"type": "usergroup", "id": world.team}]},
                )
                assert r.status_code == 204, r.text
            assert got.actor.ref is not None
            await registry.refresh_user(got.actor.ref)
            assert [a.groups for a in rechecked] == [got.actor.groups | {world.team}] and ended["live"] == []
            await registry.refresh_user(got.actor.ref)  # nothing changed: no second re-check
            assert len(rechecked) == 1
            with server.client(token) as c:
                attrs = {"password": "another-secret-2"}
                r = c.patch(
                    f"/api/user_account/{got.actor.ref}",
                    json={"data": {"type": "user_account", "id": got.actor.ref, "attributes": attrs}},
                )
                assert r.status_code == 200, r.text
            await registry.refresh_user(got.actor.ref)
            assert ended["live"] == ["credentials changed"] and registry.sessions() == []
            # a session authenticated just before such a change but registered after its event: re-checked
            registry.react(Event(2, "user_account", "update", got.actor.ref, {}, None, None))  # type: ignore[arg-type]
            late: list[str] = []
            registry.open(got.actor, "imap", "password", recheck=recheck, end=late.append)
            for _ in range(100):
                if late:
                    break
                await asyncio.sleep(0.05)
            assert late == ["credentials changed"] and registry.sessions() == []
        finally:
            await db.dispose()

    asyncio.run(main())


async def closed(ws: Any, timeout: float = 10) -> tuple[int | None, str]:
    """Read until the server closes the socket: (code, reason)."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except websockets.ConnectionClosed as exc:
        rcvd = exc.rcvd
        return (rcvd.code, rcvd.reason) if rcvd is not None else (None, "")
    return None, ""


def change_password(server: Server, token: str, new: str) -> None:
    with server.client(token) as c:
        ref = me(c)["id"]
        attrs = {"password": new}
        r = c.patch(f"/api/user_account/{ref}", json={"data": {"type": "user_account", "id": ref, "attributes": attrs}})
        assert r.status_code == 200, r.text


def open_sockets(server: Server, token: str) -> tuple[str, str]:
    base = server.url.replace("http://", "ws://")
    return f"{base}/live?token={token}&encoding=json", f"{base}/yjs/reg-{uuid.uuid4().hex[:8]}?token={token}"


def test_password_change_ends_live_and_yjs_sessions(world: World) -> None:
    server = world.server
    _, alice = user("pw")
    _, bob = user("pwb")
    a_live, a_yjs = open_sockets(server, alice)
    b_live, _ = open_sockets(server, bob)

    async def main() -> None:
        async with (
            websockets.connect(a_live) as live,
            websockets.connect(a_yjs) as yjs,
            websockets.connect(b_live) as other,
        ):
            await live.recv()  # session frame
            change_password(server, alice, "changed-secret-3")
            assert await closed(live) == (1008, "credentials changed")
            assert await closed(yjs) == (1008, "credentials changed")
            await other.recv()
            await other.send(json.dumps({"method": "ping"}))
            assert json.loads(await asyncio.wait_for(other.recv(), 5))["type"] == "pong"

    asyncio.run(main())


def test_cluster_change_on_one_node_ends_sessions_on_the_other(cluster: tuple[str, Server, Server]) -> None:
    _, a, b = cluster
    _, carol = new_user(a, "cl")
    b_live, b_yjs = open_sockets(b, carol)

    async def main() -> None:
        async with websockets.connect(b_live) as live, websockets.connect(b_yjs) as yjs:
            await live.recv()
            change_password(a, carol, "changed-secret-4")
            assert await closed(live) == (1008, "credentials changed")
            assert await closed(yjs) == (1008, "credentials changed")

    asyncio.run(main())


def test_a_deleted_users_app_passwords_go_with_them(world: World) -> None:
    """Deleting a user passes their rows to the deleting administrator, but never their application passwords:
    the deleted user knows the secret and would sign in as the administrator with it."""
    server = world.server
    _, token = user("del")
    ref, secret = make_app_password(server, token, "imap")
    with server.client(token) as c:
        victim = me(c)["id"]
    with world.c(world.admin) as c:
        admin_email = me(c)["attributes"]["email"]
        assert c.delete(f"/api/user_account/{victim}").status_code in (200, 204)
        assert all(r["id"] != ref for r in c.get("/api/app_password").json()["data"])

    asyncio.run(imap_login_refused(world.db_url, admin_email, secret))


GROUP_SCHEMA = """
Tables:
  - TableName: gdoc
    Permission: 16256
    AccessGroups: [{Name: team, Permission: 2080768}]
    DefaultPermission: 16256
    Columns:
      - {Name: title, DataType: varchar(100), ColumnType: label}
      - {Name: body, DataType: text, ColumnType: file.txt, IsNullable: true}
"""


def test_leaving_the_group_downgrades_live_and_closes_yjs(world: World) -> None:
    """Access through the `team` group only: when the member leaves it, their /live subscription ends
    (`unsubscribed`, the socket stays) and their row-bound Yjs socket closes, each re-checked once."""
    from support import schema_upload

    server = world.server
    with world.c(world.admin) as c:
        assert schema_upload(c, GROUP_SCHEMA, "gdoc.yaml").status_code == 200
        r = create(c, "gdoc", title="t")
        assert r.status_code == 201, r.text
        ref = r.json()["data"]["id"]
        link = {"data": [{"type": "usergroup", "id": world.team}]}
        assert c.post(f"/api/gdoc/{ref}/relationships/usergroup_id", json=link).status_code == 204
    with world.c(world.member) as c:
        member_ref = me(c)["id"]
        assert c.get(f"/api/gdoc/{ref}").status_code == 200  # readable through the group
    base = server.url.replace("http://", "ws://")

    async def main() -> None:
        async with (
            websockets.connect(f"{base}/live?token={world.member}&encoding=json") as live,
            websockets.connect(f"{base}/live/gdoc/{ref}/body/yjs?token={world.member}") as yjs,
        ):
            await live.recv()
            await live.send(json.dumps({"id": "s", "method": "subscribe", "attributes": {"topicName": "gdoc"}}))
            frame = json.loads(await asyncio.wait_for(live.recv(), 5))
            assert frame["ok"] is True, frame
            with world.c(world.admin) as c:
                r = c.request("DELETE", f"/api/user_account/{member_ref}/relationships/usergroup_id", json=link)
                assert r.status_code == 204, r.text
            assert await closed(yjs) == (1008, "permission revoked")
            ended = json.loads(await asyncio.wait_for(live.recv(), 10))
            assert ended["event"] == "unsubscribed" and ended["topic"] == "gdoc", ended
            assert ended["data"]["reason"] == "permission revoked"
            await live.send(json.dumps({"method": "ping"}))
            assert json.loads(await asyncio.wait_for(live.recv(), 5))["type"] == "pong"  # still open

    try:
        asyncio.run(main())
    finally:
        with world.c(world.admin) as c:
            c.post(f"/api/user_account/{member_ref}/relationships/usergroup_id", json=link)
