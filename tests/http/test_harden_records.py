"""Issue 11 items 2, 3, 8, 10 over real servers on each database: one first administrator under concurrency,
deleting users (rows pass to the administrator, ids never reused), join rows keep every value sent, and
which columns of system tables a non-administrator may set."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from support import (
    PASSWORD,
    Server,
    World,
    create,
    fresh_database,
    me,
    new_user,
    setup_world,
    signin,
    signup,
    start_server,
    sync_url,
)

MEMBERSHIP = "user_account_user_account_id_has_usergroup_usergroup_id"
WATCHERS = "note_note_id_has_user_account_user_account_id"  # its user_account_id is not an owner column
SCHEMA = """
Tables:
  - TableName: note
    DefaultPermission: 16256
    AccessGroups: [{Name: users, Permission: 2080768}]
    Columns:
      - {Name: title, DataType: varchar(100), ColumnType: label}
      - {Name: secret_note, DataType: varchar(100), ColumnType: label, IsNullable: true, ExcludeFromApi: true}
Relations:
  - {Subject: note, Relation: has_many, Object: user_account}
  - {Subject: note, Relation: belongs_to, Object: user_account, ObjectName: assignee}
"""


def sql(db_url: str, text: str, **params: Any) -> list[Any]:
    engine = sa.create_engine(sync_url(db_url))
    try:
        with engine.connect() as c:
            return list(c.execute(sa.text(text), params).all())
    finally:
        engine.dispose()


def admin_members(db_url: str) -> int:
    rows = sql(
        db_url,
        f"SELECT COUNT(*) FROM {MEMBERSHIP} m JOIN usergroup g ON g.id = m.usergroup_id "
        "WHERE g.name = 'administrators'",
    )
    return int(rows[0][0])


def patch(c: httpx.Client, table: str, ref: str, **attrs: Any) -> httpx.Response:
    return c.patch(f"/api/{table}/{ref}", json={"data": {"type": table, "id": ref, "attributes": attrs}})


def pointer(r: httpx.Response) -> str:
    return str(r.json()["errors"][0].get("source", {}).get("pointer", ""))


# -- item 2: the first administrator, decided once --------------------------------------------------


def race_for_admin(servers: list[Server], users: int) -> list[int]:
    tokens = [(servers[i % len(servers)], new_user(servers[i % len(servers)], "racer")[1]) for i in range(users)]
    barrier = threading.Barrier(users)
    statuses: list[int] = []
    lock = threading.Lock()

    def fire(server: Server, token: str) -> None:
        with server.client(token) as c:
            barrier.wait()
            code = c.post("/action/world/become_an_administrator").status_code
        with lock:
            statuses.append(code)

    threads = [threading.Thread(target=fire, args=pair) for pair in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return statuses


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mysql"])
def test_concurrent_become_admin_makes_one_administrator(kind: str) -> None:
    url, drop = fresh_database(kind)
    server = start_server(url)
    try:
        statuses = race_for_admin([server], 8)
        assert sorted(statuses) == [200] + [403] * 7, statuses
        assert admin_members(url) == 1
    finally:
        server.stop()
        drop()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mysql"])
def test_concurrent_become_admin_across_two_nodes(kind: str) -> None:
    url, drop = fresh_database(kind)
    a = start_server(url)
    b = start_server(url)
    try:
        statuses = race_for_admin([a, b], 8)
        assert sorted(statuses) == [200] + [403] * 7, statuses
        assert admin_members(url) == 1
    finally:
        a.stop()
        b.stop()
        drop()


# -- a world per database for items 3, 8, 10 ---------------------------------------------------------


@pytest.fixture(scope="module")
def world(server: Server, db_url: str) -> Iterator[World]:
    yield setup_world(server, db_url, SCHEMA)


def add_user(w: World, prefix: str) -> tuple[str, str]:
    """A new user made by the administrator (sign-up is closed once an administrator exists): (email, token)."""
    email = f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"
    with w.c(w.admin) as c:
        r = create(c, "user_account", name=prefix.title(), email=email, password=PASSWORD)
        assert r.status_code == 201, r.text
    with w.c() as g:
        return email, signin(g, email)


def ref_of(token: str, server: Server) -> str:
    with server.client(token) as c:
        return str(me(c)["id"])


def admin_group(w: World) -> str:
    with w.c(w.admin) as c:
        q = '[{"column":"name","operator":"is","value":"administrators"}]'
        return str(c.get("/api/usergroup", params={"query": q}).json()["data"][0]["id"])


# -- item 10: what a non-administrator may set -----------------------------------------------------


def test_user_cannot_set_identity_columns_of_own_row(world: World) -> None:
    me_ref = ref_of(world.owner, world.server)
    others = ref_of(world.stranger, world.server)
    with world.c(world.owner) as c:
        before = c.get(f"/api/user_account/{me_ref}").json()["data"]["attributes"]
        for attrs in (
            {"permission": 2097151},
            {"confirmed": True},
            {"auth_version": 99},
            {"user_account_id": others},
            {"name": "Renamed", "permission": 2097151},
        ):
            r = patch(c, "user_account", me_ref, **attrs)
            assert r.status_code == 403, (attrs, r.text)
            assert pointer(r) == f"/data/attributes/{next(a for a in attrs if a != 'name')}"
        after = c.get(f"/api/user_account/{me_ref}").json()["data"]["attributes"]
        assert after == before  # nothing changed, the name of the mixed request included
        assert c.get("/api/note").status_code == 200  # the token still works (auth_version unchanged)
    with world.c() as g:  # the row is not open to guests
        r = patch(g, "user_account", me_ref, name="guest was here")
        assert r.status_code in (403, 404)
    with world.c(world.admin) as c:  # administrators still can
        r = patch(c, "user_account", me_ref, confirmed=True)
        assert r.status_code == 200, r.text
        assert r.json()["data"]["attributes"]["confirmed"] is True


def test_user_cannot_join_groups(world: World) -> None:
    me_ref = ref_of(world.stranger, world.server)
    with world.c(world.admin) as c:  # a group anyone may refer to (as groups made before the first admin are)
        open_group = create(c, "usergroup", name=f"open-{uuid.uuid4().hex[:6]}").json()["data"]["id"]
        assert patch(c, "usergroup", open_group, permission=2097151).status_code == 200
    for group in (open_group, world.team, admin_group(world)):
        with world.c(world.stranger) as c:
            ident = [{"type": "usergroup", "id": group}]
            r = c.post(f"/api/user_account/{me_ref}/relationships/usergroup_id", json={"data": ident})
            assert r.status_code == 403, r.text
            r = c.patch(f"/api/user_account/{me_ref}/relationships/usergroup_id", json={"data": ident})
            assert r.status_code == 403, r.text
            body = {
                "type": "user_account",
                "id": me_ref,
                "attributes": {},
                "relationships": {"usergroup_id": {"data": ident}},
            }
            r = c.patch(f"/api/user_account/{me_ref}", json={"data": body})
            assert r.status_code == 403, (group, r.text)
            r = create(c, MEMBERSHIP, user_account_id=me_ref, usergroup_id=group)
            assert r.status_code == 403, r.text
    rows = sql(
        world.db_url,
        "SELECT COUNT(*) FROM user_account u JOIN " + MEMBERSHIP + " m ON m.user_account_id = u.id "
        "WHERE u.reference_id = :r",
        r=me_ref,
    )
    assert rows[0][0] == 1  # only `users`
    with world.c(world.member) as c:  # leaving a group is an administrator's decision too
        member_ref = me(c)["id"]
        r = c.request(
            "DELETE",
            f"/api/user_account/{member_ref}/relationships/usergroup_id",
            json={"data": [{"type": "usergroup", "id": world.team}]},
        )
        assert r.status_code == 403
    with world.c(world.admin) as c:
        r = c.post(
            f"/api/user_account/{me_ref}/relationships/usergroup_id",
            json={"data": [{"type": "usergroup", "id": world.team}]},
        )
        assert r.status_code == 204, r.text
        r = c.request(
            "DELETE",
            f"/api/user_account/{me_ref}/relationships/usergroup_id",
            json={"data": [{"type": "usergroup", "id": world.team}]},
        )
        assert r.status_code == 204, r.text


def test_empty_passwords_are_refused(world: World) -> None:
    email, token = add_user(world, "pw")
    me_ref = ref_of(token, world.server)
    with world.c(token) as c:
        for value in (None, "", "   ", 12345678):
            r = patch(c, "user_account", me_ref, password=value)
            assert r.status_code == 400, (value, r.text)
            assert pointer(r) == "/data/attributes/password"
        assert c.get("/api/note").status_code == 200  # nothing changed: the token still works
    with world.c() as g:
        signin(g, email)  # the password still signs in
    with world.c(world.admin) as c:  # administrators cannot blank a password either
        assert patch(c, "user_account", me_ref, password="").status_code == 400
        r = c.post(
            "/api/user_account",
            json={
                "data": {
                    "type": "user_account",
                    "attributes": {"name": "X", "email": "x@example.com", "password": None},
                }
            },
        )
        assert r.status_code == 400


def test_signup_with_blank_password_is_refused() -> None:
    url, drop = fresh_database("sqlite")
    server = start_server(url)
    try:
        with server.client() as c:
            for value in ("        ", "\t\t\t\t\t\t\t\t", ""):
                r = c.post(
                    "/action/user_account/signup",
                    json={
                        "attributes": {
                            "name": "B",
                            "email": "b@example.com",
                            "password": value,
                            "passwordConfirm": value,
                        }
                    },
                )
                assert r.status_code == 400, (value, r.text)
                assert r.json()[0]["ResponseType"] == "client.notify"
            assert signup(c, "b@example.com").status_code == 200
    finally:
        server.stop()
        drop()


def test_hidden_columns_are_administrator_only(world: World) -> None:
    with world.c(world.owner) as c:
        r = create(c, "note", title="t", secret_note="x")
        assert r.status_code == 403 and pointer(r) == "/data/attributes/secret_note"
    with world.c(world.admin) as c:
        r = create(c, "note", title="t", secret_note="x")
        assert r.status_code == 201, r.text
        ref = r.json()["data"]["id"]
    assert sql(world.db_url, "SELECT secret_note FROM note WHERE reference_id = :r", r=ref) == [("x",)]


# -- item 8: a 2xx never drops a value ------------------------------------------------------------


def test_admin_creates_membership_with_both_columns(world: World) -> None:
    _, token = add_user(world, "joiner")
    joiner = ref_of(token, world.server)
    with world.c(world.owner) as c:
        note = create(c, "note", title="team note").json()["data"]["id"]
    with world.c(world.admin) as c:
        r = c.post(
            f"/api/note/{note}/relationships/usergroup_id", json={"data": [{"type": "usergroup", "id": world.team}]}
        )
        assert r.status_code == 204
        r = create(c, MEMBERSHIP, user_account_id=joiner, usergroup_id=world.team)
        assert r.status_code == 201, r.text
        attrs = r.json()["data"]["attributes"]
        assert attrs["user_account_id"] == joiner and attrs["usergroup_id"] == world.team
    with world.c(token) as c:
        assert c.get(f"/api/note/{note}").status_code == 200  # the membership is real


def test_user_join_table_keeps_user_account_id(world: World) -> None:
    watcher = ref_of(world.member, world.server)
    with world.c(world.admin) as c:
        note = create(c, "note", title="watched").json()["data"]["id"]
        r = create(c, WATCHERS, note_id=note, user_account_id=watcher)
        assert r.status_code == 201, r.text
        attrs = r.json()["data"]["attributes"]
        assert attrs["note_id"] == note and attrs["user_account_id"] == watcher
        q = f'[{{"column":"note_id","operator":"is","value":"{note}"}}]'
        listed = c.get(f"/api/{WATCHERS}", params={"query": q}).json()["data"]
        assert [x["attributes"]["user_account_id"] for x in listed] == [watcher]


def test_attributes_are_applied_or_refused(world: World) -> None:
    with world.c(world.owner) as c:
        r = create(c, "note", title="x", bogus=1)
        assert r.status_code == 400 and pointer(r) == "/data/attributes/bogus"
        for name, value in (
            ("created_at", "2020-01-01T00:00:00Z"),
            ("updated_at", "2020-01-01T00:00:00Z"),
            ("id", 5),
            ("version", 3),
        ):
            r = create(c, "note", title="x", **{name: value})
            assert r.status_code == 400 and pointer(r) == f"/data/attributes/{name}", (name, r.text)
        chosen = str(uuid.uuid4())
        r = create(c, "note", title="x", reference_id=chosen, permission=16256 | 2)
        assert r.status_code == 201, r.text
        assert r.json()["data"]["id"] == chosen
        assert r.json()["data"]["attributes"]["permission"] == 16256 | 2  # applied, not dropped
        row = r.json()["data"]
        echo = {k: v for k, v in row["attributes"].items() if k not in ("title",)}
        r = patch(c, "note", chosen, **echo, title="y")  # echoing read-only values back is fine
        assert r.status_code == 200, r.text
        assert r.json()["data"]["attributes"]["title"] == "y"
        for name, value in (
            ("reference_id", str(uuid.uuid4())),
            ("created_at", "2020-01-01T00:00:00Z"),
            ("id", 1),
            ("version", 9),
        ):
            r = patch(c, "note", chosen, **{name: value})
            assert r.status_code == 400 and pointer(r) == f"/data/attributes/{name}", (name, r.text)
        assignee = ref_of(world.owner, world.server)
        r = c.post(
            "/api/note",
            json={
                "data": {
                    "type": "note",
                    "attributes": {"title": "rel"},
                    "relationships": {"assignee": {"data": {"type": "user_account", "id": assignee}}},
                }
            },
        )
        assert r.status_code == 201, r.text
        assert r.json()["data"]["attributes"]["assignee"] == assignee  # a to-one relationship is applied
        r = create(c, "note", title="mine", user_account_id=assignee)
        assert r.status_code == 201 and r.json()["data"]["attributes"]["user_account_id"] == assignee
        r = create(c, "note", title="theirs", user_account_id=ref_of(world.member, world.server))
        assert r.status_code == 403


# -- item 3: deleting a user --------------------------------------------------------------------


def test_deleting_a_user_passes_rows_to_the_administrator(world: World) -> None:
    admin_ref = ref_of(world.admin, world.server)
    email, token = add_user(world, "leaver")  # the newest user: SQLite used to hand its id on
    leaver = ref_of(token, world.server)
    with world.c(world.admin) as c:
        r = c.post(
            f"/api/user_account/{leaver}/relationships/usergroup_id",
            json={"data": [{"type": "usergroup", "id": world.team}]},
        )
        assert r.status_code == 204
    with world.c(token) as c:
        r = create(c, "note", title="private")
        assert r.status_code == 201, r.text
        private = r.json()["data"]["id"]
    with world.c(world.admin) as c:
        assigned = create(c, "note", title="assigned", assignee=leaver).json()["data"]["id"]
        watched = create(c, "note", title="w").json()["data"]["id"]
        assert create(c, WATCHERS, note_id=watched, user_account_id=leaver).status_code == 201
    old_id = sql(world.db_url, "SELECT id FROM user_account WHERE reference_id = :r", r=leaver)[0][0]
    with world.c(world.stranger) as c:
        assert c.delete(f"/api/user_account/{leaver}").status_code == 403
    with world.c(world.admin) as c:
        assert c.delete(f"/api/user_account/{admin_ref}").status_code == 409  # not your own account
        r = c.delete(f"/api/user_account/{leaver}")
        assert r.status_code == 200, r.text
        assert c.get(f"/api/user_account/{leaver}").status_code == 404
        assert c.get(f"/api/note/{private}").json()["data"]["attributes"]["user_account_id"] == admin_ref
        assert c.get(f"/api/note/{assigned}").json()["data"]["attributes"]["assignee"] is None
        # a new user gets a new id and none of the old rows
        r = c.post(
            "/api/user_account",
            json={
                "data": {
                    "type": "user_account",
                    "attributes": {"name": "N", "email": f"n{old_id}-{email}", "password": PASSWORD},
                }
            },
        )
        assert r.status_code == 201, r.text
    for table in ("note", MEMBERSHIP, WATCHERS):
        assert sql(world.db_url, f"SELECT COUNT(*) FROM {table} WHERE user_account_id = :i", i=old_id)[0][0] == 0
    assert sql(world.db_url, "SELECT COUNT(*) FROM note WHERE assignee = :i", i=old_id)[0][0] == 0
    new_id = sql(world.db_url, "SELECT id FROM user_account WHERE reference_id = :r", r=r.json()["data"]["id"])[0][0]
    assert new_id > old_id
    with world.c() as g:
        newcomer = signin(g, f"n{old_id}-{email}")
    with world.c(newcomer) as c:
        assert c.get(f"/api/note/{private}").status_code == 404
        assert me(c)["attributes"]["user_account_id"] == me(c)["id"]  # a user owns their own row


def test_ids_are_never_reused(world: World) -> None:
    with world.c(world.admin) as c:
        for table, attrs in (("note", {"title": "last"}), ("usergroup", {"name": f"g-{uuid.uuid4().hex[:6]}"})):
            r = create(c, table, **attrs)
            assert r.status_code == 201, r.text
            ref = r.json()["data"]["id"]
            old = sql(world.db_url, f"SELECT id FROM {table} WHERE reference_id = :r", r=ref)[0][0]
            assert c.delete(f"/api/{table}/{ref}").status_code == 200
            attrs = {k: (v + "2" if k == "name" else v) for k, v in attrs.items()}
            again = create(c, table, **attrs).json()["data"]["id"]
            new = sql(world.db_url, f"SELECT id FROM {table} WHERE reference_id = :r", r=again)[0][0]
            assert new > old, (table, old, new)


def test_references_are_enforced_by_the_database(world: World) -> None:
    from support import schema_upload

    with world.c(world.admin) as c:  # a column added to an existing table gets its foreign key too
        added = "Relations:\n  - {Subject: note, Relation: belongs_to, Object: user_account, ObjectName: reviewer}\n"
        r = schema_upload(c, added)
        assert r.status_code == 200, r.text
    with world.c(world.owner) as c:
        assert create(c, "note", title="owned").status_code == 201
    engine = sa.create_engine(sync_url(world.db_url))
    if world.db_url.startswith("sqlite"):
        sa.event.listen(engine, "connect", lambda c, _r: c.execute("PRAGMA foreign_keys=ON"))
    try:
        for stmt in (
            "INSERT INTO note (reference_id, title, user_account_id) VALUES (:r, 't', 987654321)",
            f"INSERT INTO {MEMBERSHIP} (reference_id, user_account_id, usergroup_id) VALUES (:r, 987654321, 987654321)",
            "INSERT INTO note (reference_id, title, reviewer) VALUES (:r, 't', 987654321)",
        ):
            with pytest.raises(sa.exc.IntegrityError), engine.begin() as c:
                c.execute(sa.text(stmt), {"r": str(uuid.uuid4())})
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as c:  # a user who still owns rows
            c.execute(sa.text("DELETE FROM user_account WHERE id = (SELECT MAX(user_account_id) FROM note)"))
    finally:
        engine.dispose()


def test_relation_columns_may_not_take_standard_names(world: World) -> None:
    from support import schema_upload

    with world.c(world.admin) as c:
        for name in ("permission", "reference_id", "created_at"):
            bad = f"Relations:\n  - {{Subject: note, Relation: belongs_to, Object: usergroup, ObjectName: {name}}}\n"
            r = schema_upload(c, bad)
            assert r.status_code == 400, (name, r.text)
        bad = "Relations:\n  - {Subject: note, Relation: belongs_to, Object: usergroup, ObjectName: user_account_id}\n"
        assert schema_upload(c, bad).status_code == 400
        for name in ("permission", "reference_id", "user_account_id", "version"):
            column = f"{{Name: {name}, DataType: varchar(10), ColumnType: label}}"
            bad = f"Tables:\n  - TableName: note\n    Columns:\n      - {column}\n"
            r = schema_upload(c, bad)
            assert r.status_code == 400, (name, r.text)
        assert c.get("/api/note").status_code == 200  # the table is as it was
