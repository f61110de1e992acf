"""The hidden test-only bcrypt cost: test servers hash at cost 4, a server without the variable at the
production cost, and any other value refuses to start (it can only ever make hashing cheaper)."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
import sqlalchemy as sa

from support import TEST_BCRYPT_ROUNDS_ENV, fresh_database, signin, signup, start_server, sync_url


def stored_hash(db_url: str, email: str) -> str:
    engine = sa.create_engine(sync_url(db_url))
    try:
        with engine.connect() as c:
            value = c.execute(sa.text("SELECT password FROM user_account WHERE email = :e"), {"e": email}).scalar()
    finally:
        engine.dispose()
    assert isinstance(value, str)
    return value


@pytest.mark.parametrize(("value", "prefix"), [("4", "$2b$04$"), (None, "$2b$11$")])
def test_test_servers_hash_cheaply_and_others_at_the_production_cost(value: str | None, prefix: str) -> None:
    url, drop = fresh_database("sqlite")
    server = start_server(url, env={TEST_BCRYPT_ROUNDS_ENV: value})
    try:
        email = f"b-{uuid.uuid4().hex[:8]}@example.com"
        with server.client() as c:
            assert signup(c, email).status_code == 200
            assert signin(c, email)  # the cheap hash verifies like any other
        assert stored_hash(url, email).startswith(prefix)
        said = any("test setting: bcrypt cost" in line for line in server.log)
        assert said is (value is not None)  # the cheap cost is never silent
    finally:
        server.stop()
        drop()


@pytest.mark.parametrize("value", ["3", "11", "12", "", "four", "4.0", "-4", "\u0664"])
def test_any_other_value_refuses_to_start(value: str) -> None:
    url, drop = fresh_database("sqlite")
    try:
        with pytest.raises(RuntimeError) as err:
            start_server(url, env={TEST_BCRYPT_ROUNDS_ENV: value}, timeout=30)
        assert TEST_BCRYPT_ROUNDS_ENV in str(err.value)
    finally:
        drop()


def test_the_setting_is_not_a_documented_flag() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "portside.cli.main", "serve", "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "--port" in out.stdout
    assert "bcrypt" not in out.stdout.lower() and TEST_BCRYPT_ROUNDS_ENV not in out.stdout
