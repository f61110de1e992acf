"""One error vocabulary on every wire: each kind's status and `code` over real HTTP (JSON:API and Daptin's action
shape) on every database, WebSocket close codes from the one mapping, database errors classified by driver code
(never by message text) through the Database class on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
import websockets

from portside.errors import Kind
from portside.tools.wire_errors import ws_close_code
from support import PASSWORD, Server, World, create, schema_upload, setup_world, signin, stored_config
from yclient import YClient

SCHEMA = """
Tables:
  - TableName: gadget
    Permission: 2097151
    DefaultPermission: 2097151
    Columns:
      - Name: serial
        DataType: varchar(20)
        ColumnType: label
        IsUnique: true
      - Name: count
        DataType: int(11)
        ColumnType: measurement
        IsNullable: true
      - Name: body
        DataType: text
        ColumnType: file.txt
        IsNullable: true
Actions:
  - Name: scripted
    OnType: gadget
    InstanceOptional: true
    OutFields:
      - Type: client.notify
        Method: ACTIONRESPONSE
        Attributes: {message: "!process.env.HOME"}
"""


@pytest.fixture(scope="module")
def world(server: Server, db_url: str) -> Iterator[World]:
    yield setup_world(server, db_url, SCHEMA)


def jsonapi(r: httpx.Response, kind: Kind) -> dict[str, Any]:
    """The one JSON:API error of a response, checked against `kind`'s status and code."""
    assert r.status_code == kind.status, (kind, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/vnd.api+json"), r.headers
    errors = r.json()["errors"]
    assert len(errors) == 1, errors
    err: dict[str, Any] = errors[0]
    assert err["status"] == str(kind.status) and err["code"] == kind.value, (kind, err)
    assert err["title"] and err["detail"], err
    return err


def action(r: httpx.Response, kind: Kind) -> dict[str, Any]:
    """Daptin's action error shape (one client.notify) with the kind's status and code added."""
    assert r.status_code == kind.status, (kind, r.status_code, r.text)
    body = r.json()
    assert isinstance(body, list) and len(body) == 1 and body[0]["ResponseType"] == "client.notify", body
    attrs: dict[str, Any] = body[0]["Attributes"]
    assert attrs["type"] == "error" and attrs["title"] and attrs["message"], attrs
    assert attrs["code"] == kind.value, (kind, attrs)
    return attrs


def forged(world: World, token: str, **changes: Any) -> str:
    claims = jwt.decode(token, options={"verify_signature": False})
    claims.update(changes)
    return jwt.encode(claims, stored_config(world.db_url, "jwt.secret"), algorithm="HS256")


def made_user(world: World) -> tuple[str, str]:
    """A user created by the administrator (sign-up is closed once an administrator exists): (email, token)."""
    email = f"made-{uuid.uuid4().hex[:8]}@example.com"
    with world.c(world.admin) as c:
        r = create(c, "user_account", name="Made", email=email, password=PASSWORD)
        assert r.status_code == 201, r.text
        ref = r.json()["data"]["id"]
        attrs = {"user_account_id": ref}
        r = c.patch(f"/api/user_account/{ref}", json={"data": {"type": "user_account", "id": ref, "attributes": attrs}})
        assert r.status_code == 200, r.text
        return email, signin(c, email)


def gadget(c: httpx.Client, **attrs: Any) -> httpx.Response:
    return create(c, "gadget", **attrs)


def count(c: httpx.Client) -> int:
    r = c.get("/api/gadget", params={"page[size]": 1})
    assert r.status_code == 200, r.text
    return int(r.json()["meta"]["total"])


def test_client_errors_carry_their_kind_on_the_jsonapi_wire(world: World) -> None:
    serial = f"s-{uuid.uuid4().hex[:8]}"
    with world.c(world.owner) as c:
        r = gadget(c, serial=serial, count=1)
        assert r.status_code == 201, r.text
        ref = r.json()["data"]["id"]
        before = count(c)
        # 400 bad_request: not JSON at all
        jsonapi(
            c.post("/api/gadget", content=b"{not json", headers={"content-type": "application/json"}), Kind.BAD_REQUEST
        )
        # 400 validation_failed, with the attribute at fault
        for bad in ({"count": "abc"}, {"count": 2**80}, {"count": [1]}, {"serial": "x" * 500}):
            err = jsonapi(gadget(c, **{"serial": f"v-{uuid.uuid4().hex[:8]}", **bad}), Kind.VALIDATION_FAILED)
            assert err["source"]["pointer"] == f"/data/attributes/{next(iter(bad))}", err
        # 409 unique_violation: decided by the database's own error code, on every database
        jsonapi(gadget(c, serial=serial, count=2), Kind.UNIQUE_VIOLATION)
        other = gadget(c, serial=f"o-{uuid.uuid4().hex[:8]}")
        assert other.status_code == 201, other.text
        oref = other.json()["data"]["id"]
        r = c.patch(
            f"/api/gadget/{oref}", json={"data": {"type": "gadget", "id": oref, "attributes": {"serial": serial}}}
        )
        jsonapi(r, Kind.UNIQUE_VIOLATION)
        # 409 conflict: the document contradicts the endpoint
        r = c.patch(f"/api/gadget/{ref}", json={"data": {"type": "gadget", "id": oref, "attributes": {"count": 3}}})
        jsonapi(r, Kind.CONFLICT)
        # 404: the table, the row, or nothing at all
        jsonapi(c.get("/api/no_such_table"), Kind.TABLE_NOT_FOUND)
        jsonapi(c.get(f"/api/gadget/{uuid.uuid4()}"), Kind.ROW_NOT_FOUND)
        jsonapi(c.get("/no/such/path"), Kind.NOT_FOUND)
        # 405 from the router
        jsonapi(c.delete("/ping"), Kind.METHOD_NOT_ALLOWED)
        # 413: a body over the limit
        big = b'{"data": "' + b"x" * (5 * 1024 * 1024) + b'"}'
        jsonapi(
            c.post("/api/gadget", content=big, headers={"content-type": "application/json"}), Kind.PAYLOAD_TOO_LARGE
        )
        # 403: configuration is for administrators
        jsonapi(c.get("/_config/backend/jwt.token.issuer"), Kind.FORBIDDEN)
        assert count(c) == before + 1  # only `other` was written
        assert c.get(f"/api/gadget/{oref}").json()["data"]["attributes"]["serial"] != serial


def test_token_errors_say_which(world: World) -> None:
    now = int(time.time())
    expired = forged(world, world.member, exp=now - 10, iat=now - 100, nbf=now - 100)
    claims = jwt.decode(world.member, options={"verify_signature": False})
    revoked = forged(world, world.member, auth_version=int(claims.get("auth_version", 0)) + 1)
    for token, kind in (
        ("garbage", Kind.UNAUTHORIZED),
        (expired, Kind.TOKEN_EXPIRED),
        (revoked, Kind.TOKEN_REVOKED),
    ):
        with world.c(token) as c:
            jsonapi(c.get("/api/gadget"), kind)
            action(c.post("/action/gadget/scripted", json={"attributes": {}}), kind)


def test_action_errors_keep_daptins_shape_and_add_the_code(world: World) -> None:
    with world.c(world.owner) as c:
        action(c.post("/action/gadget/scripted", json={"attributes": {}}), Kind.UNSUPPORTED_EXPRESSION)
        action(c.post("/action/no_such_table/x", json={"attributes": {}}), Kind.TABLE_NOT_FOUND)
        action(c.post("/action/gadget/no_such_action", json={"attributes": {}}), Kind.NOT_FOUND)
        action(c.get("/action/user_account/signin"), Kind.METHOD_NOT_ALLOWED)
        attrs = action(c.post("/action/world/upload_system_schema", json={"attributes": {}}), Kind.FORBIDDEN)
        assert attrs["title"] == "Forbidden"
    with world.c(world.admin) as c:
        action(schema_upload(c, "Tables: 5\n"), Kind.SCHEMA_INVALID)
    email, _ = made_user(world)
    with world.c(world.admin) as c:  # the email column is unique in the database: 409 unique_violation
        jsonapi(create(c, "user_account", name="Again", email=email, password=PASSWORD), Kind.UNIQUE_VIOLATION)
    with world.c() as c:
        action(c.post("/action/user_account/signup", json={"attributes": {}}), Kind.FORBIDDEN)  # closed
        r = c.post("/action/user_account/signin", json={"attributes": {"email": email, "password": "wrong-password"}})
        attrs = action(r, Kind.LOGIN_FAILED)
        assert attrs["title"] == "failed" and attrs["message"] == "Invalid username or password"  # Daptin's words


def test_upstream_failure_is_502_upstream_failed(world: World) -> None:
    host = f"u-{uuid.uuid4().hex[:6]}.test"
    with world.c(world.admin) as c:
        r = c.post("/_config/backend/acme.directory_url", content="http://127.0.0.1:9/directory")
        assert r.status_code == 200, r.text
        r = create(c, "certificate", hostname=host)
        assert r.status_code == 201, r.text
        ref = r.json()["data"]["id"]
        r = c.post("/action/certificate/generate_acme_certificate", json={"attributes": {"certificate_id": ref}})
        action(r, Kind.UPSTREAM_FAILED)


def test_rate_limited_sign_in_is_429_rate_limited_with_retry_after(world: World) -> None:
    victim, _ = made_user(world)
    with world.c() as c:
        for _ in range(10):
            r = c.post("/action/user_account/signin", json={"attributes": {"email": victim, "password": "nope-nope"}})
            action(r, Kind.LOGIN_FAILED)
        r = c.post("/action/user_account/signin", json={"attributes": {"email": victim, "password": PASSWORD}})
        attrs = action(r, Kind.RATE_LIMITED)
        assert attrs["title"] == "failed" and int(r.headers["retry-after"]) > 0


# -- WebSocket close codes ----------------------------------------------------------------------------------


def ws_url(server: Server, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


def test_websocket_closes_use_the_one_mapping(world: World) -> None:
    server = world.server
    room = f"/yjs/err-{uuid.uuid4().hex[:8]}?token={world.owner}"

    async def main() -> None:
        a = await YClient.connect(ws_url(server, room))
        await a.ws.send("text is not a y-websocket message")
        assert await a.closed() == ws_close_code(Kind.UNSUPPORTED_MEDIA_TYPE) == 1003
        b = await YClient.connect(ws_url(server, room))
        await b.ws.send(b"\x00\x02\x05ab")  # a truncated update
        assert await b.closed() == ws_close_code(Kind.BAD_REQUEST) == 1007
        # a /live session whose credentials change is ended with the policy code
        _, token = made_user(world)
        async with websockets.connect(ws_url(server, f"/live?token={token}")) as ws:
            await ws.send('{"id":"1","method":"ping"}')
            await asyncio.wait_for(ws.recv(), 10)
            with server.client(token) as c:
                me = c.get("/api/user_account/mine").json()["data"]["id"]
                r = c.patch(
                    f"/api/user_account/{me}",
                    json={"data": {"type": "user_account", "id": me, "attributes": {"password": "another-secret9"}}},
                )
                assert r.status_code == 200, r.text
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == ws_close_code(Kind.TOKEN_REVOKED) == 1008

    asyncio.run(main())


# -- database errors, classified by the driver's error code ---------------------------------------------------


def test_database_errors_are_classified_by_driver_code(db_url: str) -> None:
    import sqlite3

    import sqlalchemy as sa

    from portside.core.db import Database
    from portside.core.db_errors import Fault, classify

    suffix = uuid.uuid4().hex[:6]
    parent, child = f"errx_parent_{suffix}", f"errx_child_{suffix}"

    async def fault(db: Database, sql: str, **params: Any) -> Fault | None:
        try:
            async with db.transaction() as uow:
                await uow.conn.execute(sa.text(sql), params)
        except Exception as exc:  # the driver's exception, wrapped or not
            return classify(exc)
        raise AssertionError(f"no error: {sql}")

    async def main() -> None:
        db = Database(db_url)
        try:
            async with db.transaction() as uow:
                await uow.conn.execute(
                    sa.text(f"CREATE TABLE {parent} (id INTEGER PRIMARY KEY, u VARCHAR(10) UNIQUE, n INTEGER NOT NULL)")
                )
                await uow.conn.execute(
                    sa.text(f"CREATE TABLE {child} (id INTEGER PRIMARY KEY, p INTEGER REFERENCES {parent}(id))")
                )
                await uow.conn.execute(sa.text(f"INSERT INTO {parent} (id, u, n) VALUES (1, 'a', 1)"))
            assert await fault(db, f"INSERT INTO {parent} (id, u, n) VALUES (2, 'a', 1)") is Fault.UNIQUE
            assert await fault(db, f"INSERT INTO {parent} (id, u, n) VALUES (1, 'b', 1)") is Fault.UNIQUE
            assert await fault(db, f"INSERT INTO {child} (id, p) VALUES (1, 99)") is Fault.FOREIGN_KEY
            assert await fault(db, f"INSERT INTO {parent} (id, u, n) VALUES (3, 'c', NULL)") is Fault.NOT_NULL
            big = f"INSERT INTO {parent} (id, u, n) VALUES (4, 'd', :v)"
            assert await fault(db, big, v=2**70) is Fault.OUT_OF_RANGE
            if db.dialect != "sqlite":  # SQLite stores any length in VARCHAR(10) and any 64-bit integer
                assert await fault(db, big, v=2**40) is Fault.OUT_OF_RANGE
                assert await fault(db, f"INSERT INTO {parent} (id, u, n) VALUES (5, :v, 1)", v="x" * 50) in (
                    Fault.OUT_OF_RANGE,
                )
            assert await fault(db, "SELECT * FROM errx_no_such_table") is None  # not a fault: an internal error
            await locked(db)
            async with db.transaction() as uow:
                await uow.conn.execute(sa.text(f"DROP TABLE {child}"))
                await uow.conn.execute(sa.text(f"DROP TABLE {parent}"))
        finally:
            await db.dispose()

    async def locked(db: Database) -> None:
        """A row or database lock held by another connection: `lock` (try again)."""
        if db.dialect == "sqlite":
            path = db.sqlite_file
            assert path is not None
            holder = sqlite3.connect(path, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
            other = sqlite3.connect(path, isolation_level=None, timeout=0)
            try:
                with pytest.raises(sqlite3.OperationalError) as caught:
                    other.execute("BEGIN IMMEDIATE")
                assert classify(caught.value) is Fault.LOCKED
            finally:
                holder.execute("ROLLBACK")
                holder.close()
                other.close()
            return
        setting = (
            "SET LOCAL lock_timeout = '200ms'"
            if db.dialect == "postgresql"
            else ("SET SESSION innodb_lock_wait_timeout = 1")
        )
        async with db.engine.connect() as holder:
            await holder.begin()
            await holder.execute(sa.text(f"SELECT n FROM {parent} WHERE id = 1 FOR UPDATE"))
            async with db.engine.connect() as other:
                await other.begin()
                await other.execute(sa.text(setting))
                try:
                    await other.execute(sa.text(f"UPDATE {parent} SET n = 2 WHERE id = 1"))
                except Exception as exc:
                    assert classify(exc) is Fault.LOCKED, exc
                else:
                    raise AssertionError("the update did not wait for the lock")
                await other.rollback()
            await holder.rollback()

    asyncio.run(main())


def test_a_busy_database_is_503_unavailable_with_retry_after() -> None:
    """A row lock held elsewhere past PostgreSQL's lock_timeout (SQLSTATE 55P03) is `unavailable`, not bad input."""
    import sqlalchemy as sa

    from support import PG_ADMIN, fresh_database, new_user, start_server, sync_url

    url, drop = fresh_database("postgresql")
    name = url.rsplit("/", 1)[1]
    admin_engine = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as c:
        c.execute(sa.text(f"ALTER DATABASE \"{name}\" SET lock_timeout = '300ms'"))
    admin_engine.dispose()
    srv = start_server(url)
    holder = sa.create_engine(sync_url(url))
    try:
        _, admin = new_user(srv, "busy")
        with srv.client(admin) as c:
            assert c.post("/action/world/become_an_administrator").status_code == 200
            assert schema_upload(c, SCHEMA).status_code == 200
            r = gadget(c, serial="locked-1", count=1)
            assert r.status_code == 201, r.text
            ref = r.json()["data"]["id"]
            with holder.connect() as conn, conn.begin():
                conn.execute(sa.text("SELECT id FROM gadget WHERE serial = 'locked-1' FOR UPDATE"))
                body = {"data": {"type": "gadget", "id": ref, "attributes": {"count": 2}}}
                r = c.patch(f"/api/gadget/{ref}", json=body)
                jsonapi(r, Kind.UNAVAILABLE)
                assert r.headers["retry-after"] == "1"
            r = c.patch(f"/api/gadget/{ref}", json=body)  # the lock is gone: the same write works
            assert r.status_code == 200 and r.json()["data"]["attributes"]["count"] == 2, r.text
    finally:
        holder.dispose()
        srv.stop()
        drop()
