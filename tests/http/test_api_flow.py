"""The whole flow over a real server, on each database: signup → signin → first admin → schema upload →
CRUD and permission decisions for an owner, a group member, a stranger and a guest."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support import (
    Server,
    World,
    create,
    me,
    read_events,
    schema_upload,
    setup_world,
    signin,
    signup,
    stored_config,
    sweep,
)

OWNER_ALL, GROUP_READ = 16256, 32768
NOTE_SCHEMA = f"""
Tables:
  - TableName: note
    Permission: 561441
    DefaultPermission: {OWNER_ALL | GROUP_READ}
    AccessGroups:
      - Name: users
        Permission: 2080768
    Columns:
      - Name: title
        DataType: varchar(200)
        ColumnType: label
        IsIndexed: true
      - Name: body
        DataType: text
        ColumnType: content
        IsNullable: true
      - Name: slug
        DataType: varchar(100)
        ColumnType: label
        IsUnique: true
        IsNullable: true
      - Name: priority
        DataType: int(11)
        ColumnType: measurement
        DefaultValue: "0"
      - Name: done
        DataType: bool
        ColumnType: truefalse
        DefaultValue: "false"
      - Name: contact
        DataType: varchar(100)
        ColumnType: email
        IsNullable: true
    Validations:
      - ColumnName: title
        Tags: required,max=200
    Conformations:
      - ColumnName: title
        Tags: trim
"""


@pytest.fixture(scope="module")
def world(server: Server, db_url: str) -> Iterator[World]:
    # in the open state (no administrator yet) anyone may sign up
    yield setup_world(server, db_url, NOTE_SCHEMA)


def test_become_admin_only_once(world: World) -> None:
    with world.c(world.owner) as c:
        r = c.post("/action/world/become_an_administrator")
        assert r.status_code == 403
        assert r.json()[0]["ResponseType"] == "client.notify"
    with world.c(world.admin) as c:
        assert c.get("/_config").status_code == 200
    with world.c(world.owner) as c:
        assert c.get("/_config").status_code == 403


def test_signup_closed_for_guests_after_admin(world: World) -> None:
    with world.c() as c:
        r = signup(c, "late@example.com")
        assert r.status_code == 403, r.text
        assert (
            c.get(
                "/api/user_account", params={"query": '[{"column":"email","operator":"is","value":"late@example.com"}]'}
            ).json()["data"]
            == []
        )


def test_signin_response_shape(world: World) -> None:
    with world.c() as c:
        r = c.post(
            "/action/user_account/signin", json={"attributes": {"email": "nobody@example.com", "password": "whatever1"}}
        )
        assert r.status_code == 401
        assert r.json() == [
            {
                "ResponseType": "client.notify",
                "Attributes": {
                    "type": "error",
                    "title": "failed",
                    "message": "Invalid username or password",
                    "code": "login_failed",  # Daptin's three keys unchanged, plus the stable code
                },
            }
        ]


def test_owner_crud_and_visibility(world: World) -> None:
    with world.c(world.owner) as c:
        r = create(c, "note", title="  Buy milk  ", body="2 litres")
        assert r.status_code == 201, r.text
        doc = r.json()["data"]
        ref = doc["id"]
        assert r.headers["location"] == f"/api/note/{ref}"
        assert r.headers["content-type"].startswith("application/vnd.api+json")
        attrs = doc["attributes"]
        assert attrs["title"] == "Buy milk"  # conformation kept on create
        assert attrs["done"] is False and attrs["priority"] == 0
        assert attrs["permission"] == OWNER_ALL | GROUP_READ
        assert attrs["user_account_id"] == me(c)["id"]
        assert "id" not in attrs and "version" not in attrs
        assert doc["relationships"]["user_account_id"]["data"]["id"] == attrs["user_account_id"]
        assert c.get(f"/api/note/{ref}").json()["data"]["attributes"]["body"] == "2 litres"
        r = c.patch(f"/api/note/{ref}", json={"data": {"type": "note", "id": ref, "attributes": {"done": True}}})
        assert r.status_code == 200, r.text
        assert r.json()["data"]["attributes"]["done"] is True
    for token in (world.stranger, world.member, None):
        with world.c(token) as c:
            assert c.get(f"/api/note/{ref}").status_code == 404
            assert ref not in [d["id"] for d in c.get("/api/note").json()["data"]]
            r = c.patch(f"/api/note/{ref}", json={"data": {"type": "note", "id": ref, "attributes": {"done": False}}})
            assert r.status_code in (403, 404)
            assert c.delete(f"/api/note/{ref}").status_code in (403, 404)
    with world.c(world.owner) as c:
        assert c.get(f"/api/note/{ref}").json()["data"]["attributes"]["done"] is True
        assert c.delete(f"/api/note/{ref}").status_code == 200
        assert c.get(f"/api/note/{ref}").status_code == 404


def test_group_share_is_effective_immediately(world: World) -> None:
    with world.c(world.owner) as c:
        ref = create(c, "note", title="shared").json()["data"]["id"]
    with world.c(world.member) as c:
        assert c.get(f"/api/note/{ref}").status_code == 404
    with world.c(world.admin) as c:
        r = c.post(
            f"/api/note/{ref}/relationships/usergroup_id", json={"data": [{"type": "usergroup", "id": world.team}]}
        )
        assert r.status_code == 204, r.text
    with world.c(world.member) as c:
        r = c.get(f"/api/note/{ref}")
        assert r.status_code == 200
        assert r.json()["data"]["attributes"]["title"] == "shared"
        # the member may read but not change it: visible row, missing right → 403
        r = c.patch(f"/api/note/{ref}", json={"data": {"type": "note", "id": ref, "attributes": {"title": "x"}}})
        assert r.status_code == 403
    with world.c(world.stranger) as c:
        assert c.get(f"/api/note/{ref}").status_code == 404
    with world.c(world.admin) as c:
        r = c.request(
            "DELETE",
            f"/api/note/{ref}/relationships/usergroup_id",
            json={"data": [{"type": "usergroup", "id": world.team}]},
        )
        assert r.status_code == 204
    with world.c(world.member) as c:
        assert c.get(f"/api/note/{ref}").status_code == 404


def test_permission_change_effective_next_request(world: World) -> None:
    with world.c(world.owner) as c:
        ref = create(c, "note", title="soon public").json()["data"]["id"]
    with world.c() as g:
        assert g.get(f"/api/note/{ref}").status_code == 404
    with world.c(world.owner) as c:
        r = c.patch(
            f"/api/note/{ref}",
            json={"data": {"type": "note", "id": ref, "attributes": {"permission": OWNER_ALL | 2 | 1}}},
        )
        assert r.status_code == 200, r.text
    with world.c() as g:
        assert g.get(f"/api/note/{ref}").status_code == 200
        assert ref in [d["id"] for d in g.get("/api/note", params={"page[size]": 100}).json()["data"]]


def test_paging_totals_under_permissions(world: World) -> None:
    with world.c(world.stranger) as c:
        public = c.get("/api/note").json()["links"]["total"]  # rows with the guest read bit
        for i in range(5):
            assert create(c, "note", title=f"s{i}", priority=i).status_code == 201
    with world.c(world.owner) as c:
        before = c.get("/api/note").json()["links"]["total"]
        for i in range(23):
            assert create(c, "note", title=f"o{i:02d}", priority=i).status_code == 201
        r = c.get("/api/note", params={"page[size]": 10, "page[number]": 3, "sort": "title"})
        body = r.json()
        total = before + 23
        assert body["links"]["total"] == total and body["meta"]["total"] == total
        assert body["links"]["last_page"] == (total + 9) // 10
        assert len(body["data"]) == 10 if total >= 30 else len(body["data"]) == total - 20
        assert "prev_page_url" in body["links"]
        titles = [
            d["attributes"]["title"]
            for d in c.get("/api/note", params={"page[size]": 100, "sort": "-title"}).json()["data"]
        ]
        assert titles == sorted(titles, reverse=True)
        assert not any(t.startswith("s") and len(t) == 2 for t in titles)  # the stranger's rows stay hidden
    with world.c(world.stranger) as c:
        body = c.get("/api/note", params={"page[size]": 2}).json()
        assert body["links"]["total"] == 5 + public and len(body["data"]) == 2
        assert body["links"]["last_page"] == (5 + public + 1) // 2


def test_query_filters(world: World) -> None:
    with world.c(world.owner) as c:

        def q(filters: str, **extra: Any) -> Any:
            return c.get("/api/note", params={"query": filters, "page[size]": 100, **extra})

        r = q('[{"column":"priority","operator":"more than","value":20}]')
        assert r.status_code == 200
        assert sorted(d["attributes"]["priority"] for d in r.json()["data"]) == [21, 22]
        r = q('[{"column":"title","operator":"begins with","value":"o1"}]')
        assert {d["attributes"]["title"] for d in r.json()["data"]} == {f"o1{i}" for i in range(10)}
        r = q('[{"column":"title","operator":"in","value":["o01","o02","s1"]}]')
        assert {d["attributes"]["title"] for d in r.json()["data"]} == {"o01", "o02"}
        r = q(
            '[{"column":"priority","operator":"is","value":1,"logical_group":"a"},'
            '{"column":"priority","operator":"is","value":2,"logical_group":"a"}]'
        )
        assert {d["attributes"]["priority"] for d in r.json()["data"]} == {1, 2}
        r = q('[{"column":"body","operator":"is empty"}]')
        assert r.status_code == 200 and r.json()["links"]["total"] >= 23
        # hostile input: SQL metacharacters are values, not SQL; nothing breaks, nothing changes
        total = q("[]").json()["links"]["total"]
        r = q("""[{"column":"title","operator":"is","value":"x'; DROP TABLE note; --"}]""")
        assert r.status_code == 200 and r.json()["data"] == []
        assert q("[]").json()["links"]["total"] == total
        for bad, pointer in [
            ('[{"column":"title","operator":"explode","value":1}]', "/query/0/operator"),
            ('[{"column":"nope","operator":"is","value":1}]', "/query/0/column"),
            ('[{"column":"title; drop","operator":"is","value":1}]', "/query/0/column"),
            ("not json", "/query"),
            ('[{"column":"priority","operator":"is","value":{"a":1}}]', "/query/0/value"),
        ]:
            r = q(bad)
            assert r.status_code == 400, (bad, r.text)
            assert r.json()["errors"][0]["source"]["pointer"] == pointer
        assert c.get("/api/note", params={"sort": "nope"}).status_code == 400
        assert c.get("/api/note", params={"page[size]": "abc"}).status_code == 400
        big = c.get("/api/note", params={"page[size]": 100000}).json()
        assert big["links"]["per_page"] == 500  # the maximum page size is enforced
        assert c.get("/api/note", params={"filter": "o2"}).json()["links"]["total"] >= 2


def test_error_statuses(world: World) -> None:
    with world.c(world.owner) as c:
        assert c.post("/api/note", content=b"{not json").status_code == 400
        assert c.post("/api/note", json={"data": None}).status_code == 400
        r = create(c, "note", title="x", priority="many")
        assert r.status_code == 400 and r.json()["errors"][0]["source"]["pointer"] == "/data/attributes/priority"
        r = create(c, "note", title="x", contact="not-an-email")
        assert r.status_code == 400 and r.json()["errors"][0]["source"]["pointer"] == "/data/attributes/contact"
        r = create(c, "note", title="x", nonsense=1)
        assert r.status_code == 400
        r = create(c, "note", body="no title")
        assert r.status_code == 400 and "title" in r.json()["errors"][0]["detail"]
        assert create(c, "note", title="u", slug="unique-1").status_code == 201
        r = create(c, "note", title="u2", slug="unique-1")
        assert r.status_code == 409, r.text
        deep = "[" * 5000 + "]" * 5000
        assert c.post("/api/note", content=deep.encode()).status_code == 400
        huge = b'{"data":{"type":"note","attributes":{"title":"' + b"a" * (10 * 1024 * 1024) + b'"}}}'
        assert c.post("/api/note", content=huge).status_code == 413
        r = c.patch(
            "/api/note/0190c2a4-0000-7000-8000-000000000000",
            json={"data": {"type": "note", "id": "0190c2a4-0000-7000-8000-000000000000", "attributes": {}}},
        )
        assert r.status_code == 404
        some = create(c, "note", title="id mismatch").json()["data"]["id"]
        r = c.patch(f"/api/note/{some}", json={"data": {"type": "note", "id": world.team, "attributes": {}}})
        assert r.status_code == 409
        assert c.get("/api/no_such_table").status_code == 404
        assert c.get("/api/no_such_table").headers["content-type"].startswith("application/vnd.api+json")
    with world.c("not-a-token") as c:
        r = c.get("/api/note")
        assert r.status_code == 401 and r.json()["errors"][0]["status"] == "401"
    with world.c() as c:
        assert c.get("/api/note", params={"token": "garbage"}).status_code == 401
        c.cookies.set("token", "garbage")
        assert c.get("/api/note").status_code == 401


def test_expired_and_revoked_tokens(world: World) -> None:
    import jwt

    with world.c(world.admin) as c:
        assert c.get("/_config/backend/jwt.secret").text == "********"  # write-only through the API
        secret = stored_config(world.db_url, "jwt.secret")
        issuer = c.get("/_config/backend/jwt.token.issuer").text
    claims = jwt.decode(world.owner, options={"verify_signature": False})
    claims.update(exp=int(time.time()) - 10, iat=int(time.time()) - 100, nbf=int(time.time()) - 100)
    expired = jwt.encode(claims, secret, algorithm="HS256")
    assert claims["iss"] == issuer
    with world.c(expired) as c:
        assert c.get("/api/note").status_code == 401
    email, token = new_user_by_admin(world)
    with world.c(token) as c:
        ref = me(c)["id"]
        r = c.patch(
            f"/api/user_account/{ref}",
            json={"data": {"type": "user_account", "id": ref, "attributes": {"password": "another-pass1"}}},
        )
        assert r.status_code == 200, r.text
        assert r.json()["data"]["attributes"]["password"] == ""
        assert c.get("/api/note").status_code == 401  # the old token is revoked
    with world.c() as c:
        assert (
            c.get(
                "/api/user_account/mine", headers={"Authorization": f"Bearer {signin(c, email, 'another-pass1')}"}
            ).status_code
            == 200
        )


def new_user_by_admin(world: World) -> tuple[str, str]:
    import uuid

    email = f"made-{uuid.uuid4().hex[:6]}@example.com"
    with world.c(world.admin) as c:
        r = create(c, "user_account", name="Made", email=email, password="initial-pass1")
        assert r.status_code == 201, r.text
        ref = r.json()["data"]["id"]
        r = c.patch(
            f"/api/user_account/{ref}",
            json={"data": {"type": "user_account", "id": ref, "attributes": {"user_account_id": ref}}},
        )
        assert r.status_code == 200, r.text
        return email, signin(c, email, "initial-pass1")


def test_passwords_never_leave(world: World) -> None:
    with world.c(world.admin) as c:
        body = c.get("/api/user_account", params={"page[size]": 100}).text
        assert "$2b$" not in body and "$2a$" not in body
        assert '"password":""' in body.replace(" ", "")


def test_signin_rate_limited(world: World) -> None:
    with world.c() as c:
        statuses = [
            c.post(
                "/action/user_account/signin",
                json={"attributes": {"email": "victim@example.com", "password": f"wrong-{i}"}},
            ).status_code
            for i in range(12)
        ]
        assert statuses[0] == 401
        assert 429 in statuses
        assert all(s in (401, 429) for s in statuses)


def test_config_live(world: World) -> None:
    with world.c(world.admin) as c:
        assert c.post("/_config/backend/api.max_page_size", content='"7"').status_code == 200
        assert c.get("/_config/backend/api.max_page_size").text == "7"
        assert c.get("/api/note", params={"page[size]": 50}).json()["links"]["per_page"] == 7
        assert c.put("/_config/backend/api.max_page_size", content="500").status_code == 200
        assert c.get("/api/note", params={"page[size]": 50}).json()["links"]["per_page"] == 50
        assert c.get("/_config/backend/no.such.key").status_code == 404
        listing = c.get("/_config").json()
        assert listing["api.max_page_size"] == "500" and listing["jwt.secret"] == "********"
    with world.c(world.owner) as c:
        assert c.get("/_config/backend/api.max_page_size").status_code == 403
        assert c.post("/_config/backend/api.max_page_size", content="1").status_code == 403


def test_openapi_reflects_live_schema(world: World) -> None:
    with world.c() as c:
        doc = c.get("/openapi.json").json()
        assert doc["openapi"].startswith("3.1")
        assert "/api/note" in doc["paths"] and "/action/user_account/signin" in doc["paths"]
        assert "title" in doc["components"]["schemas"]["note_attributes"]["properties"]
        assert "openapi: 3.1.0" in c.get("/openapi.yaml").text


def test_included_relations(world: World) -> None:
    with world.c(world.owner) as c:
        ref = create(c, "note", title="with owner").json()["data"]["id"]
        body = c.get(f"/api/note/{ref}", params={"included_relations": "user_account_id"}).json()
        included = body["included"]
        assert [i["type"] for i in included] == ["user_account"]
        assert included[0]["id"] == body["data"]["attributes"]["user_account_id"]
        assert included[0]["attributes"]["password"] == ""


def test_no_self_promotion(world: World) -> None:
    with world.c(world.admin) as c:
        admins = c.get(
            "/api/usergroup", params={"query": '[{"column":"name","operator":"is","value":"administrators"}]'}
        )
        admin_group = admins.json()["data"][0]["id"]
    with world.c(world.stranger) as c:
        ref = me(c)["id"]
        r = c.post(
            f"/api/user_account/{ref}/relationships/usergroup_id",
            json={"data": [{"type": "usergroup", "id": admin_group}]},
        )
        assert r.status_code in (403, 404)
        r = create(
            c, "user_account_user_account_id_has_usergroup_usergroup_id", user_account_id=ref, usergroup_id=admin_group
        )
        assert r.status_code in (403, 404)
        r = c.patch(
            f"/api/user_account/{ref}",
            json={"data": {"type": "user_account", "id": ref, "attributes": {"auth_version": 99}}},
        )
        assert r.status_code == 403  # administrator-only columns are refused, never silently dropped
        r = c.patch(
            f"/api/user_account/{ref}",
            json={"data": {"type": "user_account", "id": ref, "attributes": {"password": ""}}},
        )
        assert r.status_code == 400  # an empty password is refused
        assert c.get("/_config").status_code == 403  # still not an administrator
        assert c.get("/api/note").status_code == 200  # and the token still works


def test_assets_and_encrypted_columns(world: World) -> None:
    import base64

    from support import read_events

    schema = """
Tables:
  - TableName: vault
    AccessGroups: [{Name: users, Permission: 2080768}]
    DefaultPermission: 16256
    Columns:
      - {Name: label, DataType: varchar(50), ColumnType: label}
      - {Name: pin, ColumnType: encrypted, IsNullable: true}
      - {Name: photo, ColumnType: image.png, IsNullable: true}
"""
    with world.c(world.admin) as c:
        assert schema_upload(c, schema).status_code == 200
        secret = stored_config(world.db_url, "encryption.secret")
    png = base64.b64encode(b"\x89PNG fake").decode()
    with world.c(world.owner) as c:
        r = create(
            c,
            "vault",
            label="v",
            pin="1234",
            photo=[{"name": "a.png", "file": f"data:image/png;base64,{png}", "type": "image/png"}],
        )
        assert r.status_code == 201, r.text
        attrs = r.json()["data"]["attributes"]
        assert attrs["pin"] != "1234"  # stored and returned encrypted, as Daptin does
        from portside.tools.crypto import decrypt

        assert decrypt(secret, attrs["pin"]) == "1234"
        import json

        photo = json.loads(attrs["photo"])
        assert photo[0]["name"] == "a.png" and photo[0]["file"].endswith(png)
        r = create(c, "vault", label="bad", photo="not a list")
        assert r.status_code == 400
        r = create(c, "vault", label="bad", photo=[{"name": "../x", "file": png}])
        assert r.status_code == 400
    events = [e for e in read_events(world.db_url) if e["table"] == "vault"]
    assert events and all("pin" not in e["data"] for e in events)


def test_membership_and_table_gate_changes_are_immediate(world: World) -> None:
    with world.c(world.owner) as c:
        ref = create(c, "note", title="team only").json()["data"]["id"]
    with world.c(world.admin) as c:
        assert (
            c.post(
                f"/api/note/{ref}/relationships/usergroup_id", json={"data": [{"type": "usergroup", "id": world.team}]}
            ).status_code
            == 204
        )
    with world.c(world.member) as c:
        assert c.get(f"/api/note/{ref}").status_code == 200  # warms any identity cache
        member_ref = me(c)["id"]
    with world.c(world.admin) as c:
        r = c.request(
            "DELETE",
            f"/api/user_account/{member_ref}/relationships/usergroup_id",
            json={"data": [{"type": "usergroup", "id": world.team}]},
        )
        assert r.status_code == 204
    with world.c(world.member) as c:
        assert c.get(f"/api/note/{ref}").status_code == 404  # the very next request
    with world.c(world.admin) as c:
        assert (
            c.post(
                f"/api/user_account/{member_ref}/relationships/usergroup_id",
                json={"data": [{"type": "usergroup", "id": world.team}]},
            ).status_code
            == 204
        )
    with world.c(world.member) as c:
        assert c.get(f"/api/note/{ref}").status_code == 200
    # the table gate (the table's world row) is re-read after it changes
    with world.c() as g:
        assert g.get("/api/note").status_code == 200
    with world.c(world.admin) as c:
        q = '[{"column":"table_name","operator":"is","value":"note"}]'
        row = c.get("/api/world", params={"query": q}).json()["data"][0]
        r = c.patch(
            f"/api/world/{row['id']}",
            json={"data": {"type": "world", "id": row["id"], "attributes": {"permission": 0}}},
        )
        assert r.status_code == 200, r.text
    with world.c() as g:
        assert g.get("/api/note").status_code == 403
    with world.c(world.owner) as c:  # members of `users` still pass through the AccessGroups link
        assert c.get("/api/note").status_code == 200
    with world.c(world.admin) as c:
        c.patch(
            f"/api/world/{row['id']}",
            json={"data": {"type": "world", "id": row["id"], "attributes": {"permission": 561441}}},
        )
    with world.c() as g:
        assert g.get("/api/note").status_code == 200


def test_hostile_filter_values_never_500(world: World) -> None:
    from portside.core.query import OPERATORS

    values: list[Any] = [
        "abc",
        "",
        "1e999",
        -1,
        2**70,
        1.5,
        True,
        None,
        ["a", 1],
        "2026-13-45",
        "'; --",
        "\u0000x",
        "%_%",
    ]
    columns = ("title", "priority", "done", "created_at", "user_account_id", "reference_id", "contact")
    cases = [(column, op, v) for column in columns for op in sorted(OPERATORS) for v in values]
    with world.c(world.owner) as c:

        def get(case: tuple[str, str, Any]) -> httpx.Response:
            column, op, v = case
            return c.get("/api/note", params={"query": json.dumps([{"column": column, "operator": op, "value": v}])})

        for (column, op, v), r in sweep(get, cases):
            assert r.status_code in (200, 400), (column, op, v, r.status_code, r.text)


def test_cors_from_live_config(world: World) -> None:
    import json

    app_origin = "https://app.example"
    with world.c() as g:
        r = g.get("/api/note", headers={"Origin": app_origin})
        assert "access-control-allow-origin" not in r.headers  # nothing allowed by default
    with world.c(world.admin) as c:
        conf = {
            "version": "1",
            "allowed_origins": [app_origin],
            "allowed_methods": [],
            "allowed_headers": [],
            "exposed_headers": ["Location"],
            "allow_credentials": True,
            "max_age": 60,
        }
        assert c.post("/_config/backend/cors.config", content=json.dumps(conf)).status_code == 200
    with world.c() as g:
        r = g.options(
            "/api/note",
            headers={
                "Origin": app_origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert r.status_code == 204
        assert r.headers["access-control-allow-origin"] == app_origin
        assert "POST" in r.headers["access-control-allow-methods"]
        assert r.headers["access-control-allow-credentials"] == "true"
        r = g.get("/api/note", headers={"Origin": app_origin})
        assert r.headers["access-control-allow-origin"] == app_origin
        assert r.headers["access-control-expose-headers"] == "Location"
        r = g.get("/api/note", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
        r = g.get("/api/no_such_table", headers={"Origin": app_origin})  # errors carry CORS headers too
        assert r.status_code == 404 and r.headers["access-control-allow-origin"] == app_origin
    with world.c(world.admin) as c:
        assert c.delete("/_config/backend/cors.config").status_code == 204
    with world.c() as g:
        assert "access-control-allow-origin" not in g.get("/api/note", headers={"Origin": app_origin}).headers


def test_long_config_keys_are_stored_and_announced(world: World) -> None:
    """A config key of up to 100 characters works on every database (its change event's reference is
    `backend/<key>`, longer than a UUID)."""
    key = "mail.dkim." + "k" * 76 + ".example.com"
    assert len(key) == 98
    after = read_events(world.db_url)[-1]["offset"]
    with world.c(world.admin) as c:
        r = c.post(f"/_config/backend/{key}", content='"v1"')
        assert r.status_code == 200, r.text
        assert c.get(f"/_config/backend/{key}").text == "v1"
    refs = [e["ref"] for e in read_events(world.db_url, after) if e["table"] == "_config"]
    assert f"backend/{key}" in refs
