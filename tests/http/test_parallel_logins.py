"""Many sessions opened at once with the right password are not taken for concurrent guesses."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from support import Server, fresh_database, new_user, start_server


@pytest.fixture(scope="module")
def pg_server() -> Iterator[Server]:
    """PostgreSQL: sign-ins run side by side there (SQLite's single writer would serialise them anyway)."""
    url, drop = fresh_database("postgresql")
    srv = start_server(url)
    yield srv
    srv.stop()
    drop()


async def test_parallel_correct_signins_all_succeed(pg_server: Server) -> None:
    email, _ = new_user(pg_server, "parallel")
    body = {"attributes": {"email": email, "password": "secret123"}}
    async with httpx.AsyncClient(base_url=pg_server.url, timeout=60) as c:
        replies = await asyncio.gather(*(c.post("/action/user_account/signin", json=body) for _ in range(24)))
    assert [r.status_code for r in replies] == [200] * 24


async def test_parallel_wrong_passwords_are_still_limited(pg_server: Server) -> None:
    email, _ = new_user(pg_server, "guessed")
    async with httpx.AsyncClient(base_url=pg_server.url, timeout=60) as c:
        replies = await asyncio.gather(
            *(
                c.post("/action/user_account/signin", json={"attributes": {"email": email, "password": f"no-{i}"}})
                for i in range(24)
            )
        )
    codes = [r.status_code for r in replies]
    assert codes.count(401) == 10 and codes.count(429) == 14, codes
