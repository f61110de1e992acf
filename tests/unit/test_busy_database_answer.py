"""A read that meets a busy database (a lock that stays taken, a connection pool that stays empty) is a 503
with Retry-After, not a 500: real SQLite errors and a real SQLAlchemy pool, fed to the HTTP error handler."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from starlette.requests import Request

from portside.http.app import on_error


def answer(exc: Exception) -> tuple[int, dict[str, str], dict[str, object]]:
    request = Request({"type": "http", "method": "GET", "path": "/api/x", "headers": []})
    response = asyncio.run(on_error(request, exc))
    return response.status_code, dict(response.headers), json.loads(bytes(response.body))


def locked_error(tmp_path: Path) -> sqlite3.OperationalError:
    path = tmp_path / "db.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    reader = sqlite3.connect(path, timeout=0)
    try:
        with pytest.raises(sqlite3.OperationalError) as caught:
            reader.execute("SELECT * FROM t").fetchall()
        return caught.value
    finally:
        reader.close()
        holder.close()


def test_a_lock_that_stays_taken_is_503(tmp_path: Path) -> None:
    status, headers, doc = answer(locked_error(tmp_path))
    assert status == 503 and headers.get("retry-after") == "1", (status, headers)
    assert "busy" in json.dumps(doc)


def test_an_empty_pool_is_503(tmp_path: Path) -> None:
    engine = sa.create_engine(
        f"sqlite:///{tmp_path / 'p.sqlite'}",
        poolclass=sa.pool.QueuePool,
        pool_size=1,
        max_overflow=0,
        pool_timeout=0.05,
    )
    held = engine.connect()
    try:
        with pytest.raises(sa.exc.TimeoutError) as caught:
            engine.connect()
    finally:
        held.close()
        engine.dispose()
    status, headers, _ = answer(caught.value)
    assert status == 503 and headers.get("retry-after") == "1"


def test_anything_else_stays_a_500_without_details() -> None:
    status, _, doc = answer(RuntimeError("secret internals"))
    assert status == 500 and "secret internals" not in json.dumps(doc)
