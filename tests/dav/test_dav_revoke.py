"""Revoking an application password stops DAV logins with it at once, though DAV remembers Basic logins for
30 s: the revocation's change event drops the cached login before the /api DELETE answers. The user's own
password and other application passwords keep working. SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from dav_support import DavUser, running_dav_world
from support import Server, World


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest) -> Iterator[tuple[Server, World, dict[str, DavUser]]]:
    with running_dav_world(request.param) as env:
        yield env


def _app_password(srv: Server, token: str) -> tuple[str, str]:
    """(secret, row reference id) of a new application password."""
    with srv.client(token) as c:
        name = f"phone-{uuid.uuid4().hex[:6]}"
        r = c.post("/action/user_account/create_app_password", json={"attributes": {"name": name}})
        assert r.status_code == 200, r.text
        secret = next(x for x in r.json() if x["ResponseType"] == "action.response")["Attributes"]["secret"]
        rows = c.get("/api/app_password").json()["data"]
        ref = next(row["id"] for row in rows if row["attributes"]["name"] == name)
    assert isinstance(secret, str) and isinstance(ref, str)
    return secret, ref


def _propfind(srv: Server, user: DavUser, secret: str) -> int:
    with httpx.Client(base_url=srv.url, auth=(user.email, secret), timeout=30) as c:
        return c.request("PROPFIND", user.home(), headers={"Depth": "0"}).status_code


def test_revoked_app_password_stops_dav_at_once(env: tuple[Server, World, dict[str, DavUser]]) -> None:
    srv, _, users = env
    member = users["member"]
    revoked, ref = _app_password(srv, member.token)
    kept, _ = _app_password(srv, member.token)
    for secret in (revoked, kept, revoked):  # the second use of `revoked` is answered from the login cache
        assert _propfind(srv, member, secret) == 207
    with srv.client(member.token) as c:
        assert c.delete(f"/api/app_password/{ref}").status_code in (200, 204)
    assert _propfind(srv, member, revoked) == 401  # no 30 s grace
    assert _propfind(srv, member, kept) == 207
    assert _propfind(srv, member, "not-the-password") == 401
