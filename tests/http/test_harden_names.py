"""Issue 11, item 1: identifiers that guard access compare exactly as the code compares them (NFC, then code
point by code point) on every database and collation: emails used for login, config keys, topic names,
usergroup names. Real servers on SQLite, PostgreSQL and MariaDB (databases created `utf8mb4_unicode_ci`,
plus `utf8mb4_general_ci` and an existing database whose tables were created case-insensitive)."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import websockets

from support import MYSQL_ADMIN, PASSWORD, Server, World, create, me, setup_world, signup, start_server, sync_url

NOPAD_BIN = ("utf8mb4_nopad_bin", "utf8mb4_0900_bin")


@pytest.fixture(scope="module")
def world(server: Server, db_url: str) -> Iterator[World]:
    yield setup_world(server, db_url)


def signin_status(c: httpx.Client, email: str, password: str) -> tuple[int, str | None]:
    r = c.post("/action/user_account/signin", json={"attributes": {"email": email, "password": password}})
    if r.status_code != 200:
        return r.status_code, None
    token = next(x for x in r.json() if x["ResponseType"] == "client.store.set")["Attributes"]["value"]
    return 200, str(token)


def ref_of(server: Server, token: str) -> str:
    with server.client(token) as c:
        return str(me(c)["id"])


def test_email_variants_never_reach_another_account(world: World) -> None:
    """The whole address is lower-cased (after NFC, trimmed): `ANN@…` is ann's account and a second sign-up
    is a 409. Accented, full-width and invisible variants are not: they are distinct accounts or refused."""
    tag = uuid.uuid4().hex[:8]
    ann, accented = f"ann-{tag}@example.com", f"\u00e4nn-{tag}@example.com"
    with world.c(world.admin) as c:  # sign-up is closed for guests once an administrator exists
        assert signup(c, ann, password="ann-password").status_code == 200
        r = signup(c, accented, password="other-password")  # unicode_ci calls these equal: 409 before
        assert r.status_code == 200, r.text
        assert signup(c, f"  ANN-{tag}@Example.COM ", password="x-password").status_code == 409
        assert signup(c, f"a\u0308nn-{tag}@example.com", password="x-password").status_code == 409  # NFD of accented
        status, ann_token = signin_status(c, f" Ann-{tag}@EXAMPLE.com", "ann-password")
        assert status == 200 and ann_token is not None
        status, acc_token = signin_status(c, accented, "other-password")
        assert status == 200 and acc_token is not None
        assert ref_of(world.server, ann_token) != ref_of(world.server, acc_token)
        for variant in (accented, f"ann-{tag}@example.co", f"anne-{tag}@example.com"):
            assert signin_status(c, variant, "ann-password")[0] == 401, variant
        for lookalike in (
            f"\uff41nn-{tag}@example.com",  # full-width a
            f"ann-{tag}@ex\uff41mple.com",  # full-width a in the domain
            f"ann-{tag}\u200b@example.com",  # zero-width space
            f"ann-{tag}@example.com\u0000",
        ):
            assert signin_status(c, lookalike, "ann-password")[0] == 400, lookalike
            assert signup(c, lookalike, password="x-password").status_code == 400, lookalike


def test_config_keys_do_not_alias(world: World) -> None:
    tag = uuid.uuid4().hex[:6]
    key = f"harden.key{tag}"
    with world.c(world.admin) as c:
        assert c.post(f"/_config/backend/{key}", content="one").status_code == 200
        for variant, value in (
            (key.upper(), "two"),
            (f"harden.k\u00e9y{tag}", "three"),
            (f"harden.ke\uff59{tag}", "4"),
        ):
            assert c.post(f"/_config/backend/{urllib.parse.quote(variant)}", content=value).status_code == 200
        assert c.get(f"/_config/backend/{key}").text == "one"
        assert c.get(f"/_config/backend/{key.upper()}").text == "two"
        for bad in (key + " ", " " + key, key + "%00", key + "%E2%80%8B"):
            r = c.post(f"/_config/backend/{bad}", content="evil")
            assert r.status_code == 400, (bad, r.text)
        assert c.get(f"/_config/backend/{key}").text == "one"
        listed = c.get("/_config").json()
        assert listed[key] == "one" and listed[key.upper()] == "two"


def test_topic_lookalikes_do_not_alias(world: World) -> None:
    """A stranger's `News-x` taken first must not make the owner's `news-x` 'already exist', nor give the
    stranger the owner's topic; full-width look-alikes of a table name are reserved like the table."""
    tag = uuid.uuid4().hex[:6]
    url = world.server.url.replace("http://", "ws://") + "/live?encoding=json&token="

    async def call(ws: Any, method: str, **attrs: Any) -> dict[str, Any]:
        await ws.send(json.dumps({"id": method, "method": method, "attributes": attrs}))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["type"] == "response":
                return dict(frame)

    async def main() -> None:
        async with websockets.connect(url + world.owner) as o, websockets.connect(url + world.stranger) as s:
            await o.recv()
            await s.recv()
            for name in (f"News-{tag}", f"n\u00e9ws-{tag}", f"\uff4eews-{tag}"):
                assert (await call(s, "create-topicName", name=name))["ok"] is True, name
            r = await call(o, "create-topicName", name=f"news-{tag}")
            assert r["ok"] is True, r
            r = await call(s, "subscribe", topicName=f"news-{tag}")
            assert r["ok"] is False and "permission denied" in r["error"]
            r = await call(s, "new-message", topicName=f"news-{tag}", message={"x": 1})
            assert r["ok"] is False
            for reserved in ("USER_ACCOUNT", "\uff55ser_account", "user_accoun\uff54"):
                r = await call(s, "create-topicName", name=reserved)
                assert r["ok"] is False and r["error"] == "cannot create topic with reserved name", reserved
            r = await call(s, "create-topicName", name=f"news-{tag} ")
            assert r["ok"] is False

    asyncio.run(main())


def test_administrators_lookalike_groups_grant_nothing(world: World) -> None:
    with world.c(world.admin) as c:
        for name in (
            "Administrators",
            "administrators ",
            "administrators".translate({c: c + 0xFEE0 for c in range(0x61, 0x7B)}),
            "ADMINISTRATORS",
            "admini\u00adstrators",  # soft hyphen (invisible)
            "\u0430dministr\u0430tors",  # Cyrillic a
        ):
            r = create(c, "usergroup", name=name)
            assert r.status_code == 400, (name, r.text)
            assert r.json()["errors"][0]["source"]["pointer"] == "/data/attributes/name"
        r = create(c, "usergroup", name="administratorz")  # a plain group of its own
        assert r.status_code == 201, r.text
        group = r.json()["data"]["id"]
        stranger = ref_of(world.server, world.stranger)
        r = c.post(
            f"/api/user_account/{stranger}/relationships/usergroup_id",
            json={"data": [{"type": "usergroup", "id": group}]},
        )
        assert r.status_code == 204, r.text
        r = c.get("/api/usergroup", params={"query": '[{"column":"name","operator":"is","value":"administrators"}]'})
        assert [g["attributes"]["name"] for g in r.json()["data"]] == ["administrators"]
    with world.c(world.stranger) as c:
        assert c.get("/_config").status_code == 403
        assert c.post("/action/world/become_an_administrator").status_code in (403, 401)


def test_database_compares_exactly(world: World) -> None:
    """Every text column Portside created is binary and NO PAD (MariaDB), SQLite uses no NOCASE, and in
    PostgreSQL no column has a collation of its own."""
    engine = sa.create_engine(sync_url(world.db_url))
    try:
        with engine.connect() as c:
            if world.db_url.startswith("mysql"):
                rows = c.execute(
                    sa.text(
                        "SELECT TABLE_NAME, COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
                        "WHERE TABLE_SCHEMA = DATABASE() AND COLLATION_NAME IS NOT NULL"
                    )
                ).all()
                assert rows and all(r[2] in NOPAD_BIN for r in rows), [r for r in rows if r[2] not in NOPAD_BIN]
                assert c.execute(sa.text("SELECT COUNT(*) FROM _config WHERE name = 'jwt.secret '")).scalar() == 0
            elif world.db_url.startswith("sqlite"):
                ddl = " ".join(r[0] or "" for r in c.execute(sa.text("SELECT sql FROM sqlite_master")))
                assert "nocase" not in ddl.lower()
            else:
                rows = c.execute(
                    sa.text(
                        "SELECT table_name, column_name FROM information_schema.columns "
                        "WHERE table_schema = 'public' AND collation_name IS NOT NULL"
                    )
                ).all()
                assert rows == []
    finally:
        engine.dispose()


# -- MariaDB databases created case-insensitive --------------------------------------------------


def mysql_database(collation: str | None) -> tuple[str, str, sa.Engine]:
    name = f"portside_t_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(MYSQL_ADMIN, isolation_level="AUTOCOMMIT")
    tail = f" CHARACTER SET utf8mb4 COLLATE {collation}" if collation else ""
    with admin.connect() as c:
        c.execute(sa.text(f"CREATE DATABASE `{name}`{tail}"))
    return name, f"mysql+asyncmy://root@127.0.0.1:3306/{name}", admin


def collations(admin: sa.Engine, db: str, *tables: str) -> set[str]:
    with admin.connect() as c:
        rows = c.execute(
            sa.text(
                "SELECT COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = :d "
                "AND COLLATION_NAME IS NOT NULL AND TABLE_NAME IN :t"
            ).bindparams(sa.bindparam("t", expanding=True)),
            {"d": db, "t": list(tables)},
        ).scalars()
        return set(rows)


@pytest.mark.parametrize("collation", ["utf8mb4_general_ci", "utf8mb4_unicode_520_ci", None])
def test_mariadb_database_with_insensitive_default(collation: str | None) -> None:
    """A database created with another insensitive collation (or the server's default) still compares
    exactly: emails that `_ci` would merge are two accounts."""
    name, url, admin = mysql_database(collation)
    server = start_server(url)
    try:
        assert collations(admin, name, "user_account", "_yjs_document", "_config", "usergroup") <= set(NOPAD_BIN)
        acme = collations(admin, name, "_acme_challenge")  # ACME tokens match exactly (certs/challenge_store.py)
        assert acme and acme <= set(NOPAD_BIN), acme
        with server.client() as c:
            assert signup(c, "bob@example.com", password="bob-password").status_code == 200
            assert signup(c, "b\u00f6b@example.com", password=PASSWORD).status_code == 200
            assert signin_status(c, "b\u00f6b@example.com", "bob-password")[0] == 401
    finally:
        server.stop()
        with admin.connect() as c:
            c.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


def test_existing_case_insensitive_tables_are_fixed_at_start() -> None:
    """Tables created before this change (`utf8mb4_unicode_ci`, as Portside used to) are converted at start."""
    name, url, admin = mysql_database("utf8mb4_unicode_ci")
    server = start_server(url)
    try:
        with server.client() as c:
            assert signup(c, "carl@example.com", password="carl-password").status_code == 200
        server.stop()
        tables = ("user_account", "usergroup", "_yjs_document", "_config", "live_topic", "_event_log")
        with admin.connect() as c:
            for table in tables:
                convert = "CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                c.execute(sa.text(f"ALTER TABLE `{name}`.`{table}` {convert}"))
        assert collations(admin, name, *tables) == {"utf8mb4_unicode_ci"}
        server = start_server(url)
        assert collations(admin, name, *tables) <= set(NOPAD_BIN)
        with server.client() as c:
            assert signup(c, "c\u00e4rl@example.com", password=PASSWORD).status_code == 200
            assert signin_status(c, "carl@example.com", "carl-password")[0] == 200
            assert signin_status(c, "CARL@example.com ", "carl-password")[0] == 200
            assert signin_status(c, "c\u00e4rl@example.com", "carl-password")[0] == 401
    finally:
        server.stop()
        with admin.connect() as c:
            c.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()
