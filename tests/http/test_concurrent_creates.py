"""Concurrent creates over HTTP (on SQLite they share commits: core/group_commit.py): every 201 is a committed
row with its own id and event, a unique violation among them gets its own 409, and a server killed with -9
right after answering 201s has every one of those rows on disk."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa

from support import Server, World, create, fresh_database, read_events, setup_world, start_server, sync_url

SCHEMA = """
Tables:
  - TableName: ticket
    Permission: 561441
    DefaultPermission: 16256
    AccessGroups:
      - {Name: users, Permission: 2080768}
    Columns:
      - {Name: title, DataType: varchar(200), ColumnType: label}
      - {Name: code, DataType: varchar(100), ColumnType: label, IsUnique: true, IsNullable: true}
"""
N = 50


@pytest.fixture(scope="module")
def world(server: Server, db_url: str) -> Iterator[World]:
    yield setup_world(server, db_url, SCHEMA)


async def _post_all(url: str, token: str, bodies: list[dict[str, str]]) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=N)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as c:
        return await asyncio.gather(
            *(c.post("/api/ticket", json={"data": {"type": "ticket", "attributes": b}}) for b in bodies)
        )


def test_fifty_concurrent_creates_one_unique_violation(world: World) -> None:
    with world.c(world.owner) as c:
        assert create(c, "ticket", title="first", code="dup").status_code == 201
    after = max((e["offset"] for e in read_events(world.db_url)), default=0)
    bodies = [{"title": f"t{i}", "code": f"c{i}"} for i in range(N)]
    bodies[23]["code"] = "dup"
    answers = asyncio.run(_post_all(world.server.url, world.owner, bodies))
    statuses = [r.status_code for r in answers]
    assert statuses[23] == 409 and answers[23].json()["errors"][0]["code"] == "unique_violation", answers[23].text
    assert statuses.count(201) == N - 1, statuses
    ids = [r.json()["data"]["id"] for r in answers if r.status_code == 201]
    assert len(set(ids)) == N - 1
    for r in answers:
        if r.status_code == 201:
            doc = r.json()["data"]
            assert r.headers["Location"] == f"/api/ticket/{doc['id']}"
            assert doc["attributes"]["code"] != "dup"
    with world.c(world.owner) as c:
        listed = c.get("/api/ticket", params={"page[size]": 100}).json()["data"]
        assert {d["id"] for d in listed} >= set(ids)
        assert [d["attributes"]["title"] for d in listed].count("t23") == 0  # the refused row is not there
    created = [e for e in read_events(world.db_url, after) if e["table"] == "ticket"]
    assert sorted(e["ref"] for e in created) == sorted(ids)  # one create event per 201, none for the 409
    assert {e["type"] for e in created} == {"create"}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mysql"])
def test_kill_minus_nine_after_201_loses_nothing(kind: str) -> None:
    """SQLite's creates share group commits, PostgreSQL's run through core/pgdirect.py on asyncpg, MariaDB's
    through SQLAlchemy: on each, a 201 is only sent after the commit."""
    url, drop = fresh_database(kind)
    server = start_server(url)
    try:
        w = setup_world(server, url, SCHEMA)

        async def race() -> list[str]:
            headers = {"Authorization": f"Bearer {w.owner}"}
            answered: list[str] = []
            async with httpx.AsyncClient(
                base_url=server.url, headers=headers, timeout=60, limits=httpx.Limits(max_connections=N)
            ) as c:

                async def one(i: int) -> None:
                    body = {"data": {"type": "ticket", "attributes": {"title": f"k{i}"}}}
                    r = await c.post("/api/ticket", json=body)
                    assert r.status_code == 201, r.text
                    answered.append(r.json()["data"]["id"])
                    if len(answered) == N // 2:  # half answered, the rest still in flight: kill now
                        os.kill(server.proc.pid, signal.SIGKILL)

                await asyncio.gather(*(one(i) for i in range(N)), return_exceptions=True)
            return answered

        answered = asyncio.run(race())
        server.proc.wait(10)
        assert len(answered) >= N // 2
        if kind == "sqlite":
            path = url.split("///", 1)[1]
            with sqlite3.connect(path) as conn:  # recovers the write-ahead log like the next start would
                stored = {r[0] for r in conn.execute("SELECT reference_id FROM ticket")}
        else:
            engine = sa.create_engine(sync_url(url))
            try:
                with engine.connect() as conn:
                    stored = {r[0] for r in conn.execute(sa.text("SELECT reference_id FROM ticket"))}
            finally:
                engine.dispose()
        logged = {e["ref"] for e in read_events(url) if e["table"] == "ticket"}
        missing = set(answered) - stored
        assert not missing, f"{len(missing)} rows answered 201 but lost"
        assert set(answered) <= logged
    finally:
        server.stop()
        drop()
