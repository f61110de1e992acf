"""Failed sign-ins are limited per (account, client address) and, more loosely, per client address (429,
Retry-After). That other addresses are not locked out is in test_harden_auth.py."""

from __future__ import annotations

import pytest

from inprocess import InProcessServer
from support import new_user, signin


@pytest.fixture(scope="module")
def srv(inprocess_server: InProcessServer) -> InProcessServer:
    return inprocess_server  # pure HTTP: the fast in-process tier (tests/inprocess.py)


def attempt(c: object, email: str, password: str = "wrong-password") -> int:
    r = c.post("/action/user_account/signin", json={"attributes": {"email": email, "password": password}})  # type: ignore[attr-defined]
    return int(r.status_code)


def test_account_limit_then_client_limit(srv: InProcessServer) -> None:
    victim, _ = new_user(srv, "victim")
    with srv.client() as c:
        statuses = [attempt(c, victim) for _ in range(11)]
        assert statuses[:10] == [401] * 10 and statuses[10] == 429
        r = c.post("/action/user_account/signin", json={"attributes": {"email": victim, "password": "secret123"}})
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0  # the right password waits (this address)
        # another account from the same address is not locked by that
        other, _ = new_user(srv, "other")
        assert attempt(c, other) == 401
        assert signin(c, other)  # and signs in fine
        # spraying many accounts trips the per-address limit
        spray = [attempt(c, f"nobody{i}@example.com") for i in range(60)]
        assert 429 in spray and spray[0] == 401
        assert attempt(c, other, "secret123") == 429
