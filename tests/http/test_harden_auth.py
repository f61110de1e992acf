"""Issue 11, items 4, 6, 7 and 11: credentials, sign-in, brute force and secrets at rest, over real sockets.

Different client addresses are real: test clients bind to other loopback addresses (127.0.0.x), and a
second server trusts 127.0.0.1 as a reverse proxy so X-Forwarded-For can name the client.
"""

from __future__ import annotations

import asyncio
import os
import stat
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import websockets

from support import PASSWORD, Server, World, me, new_user, setup_world, signup, start_server, stored_config

SIGNIN = "/action/user_account/signin"
SIGNOUT = "/action/user_account/signout"


Accounts = dict[str, tuple[str, str]]
ACCOUNTS = ("stale", "cookie", "tls", "victim", "spray", "backoff", "proxied", "proxied2", "proxied6")


@pytest.fixture(scope="module")
def accounts(server: Server) -> Accounts:
    """Users made while sign-up is still open (before the first administrator): prefix → (email, token)."""
    return {prefix: new_user(server, prefix) for prefix in ACCOUNTS}


@pytest.fixture(scope="module")
def world(server: Server, db_url: str, accounts: Accounts) -> World:
    return setup_world(server, db_url)


@pytest.fixture(scope="module")
def proxied(db_url: str) -> Iterator[Server]:
    """A second server on the same database that trusts 127.0.0.1 (and 10.99.0.0/16) as reverse proxies."""
    srv = start_server(db_url, None, "--trusted-proxies", "127.0.0.1/32, 10.99.0.0/16")
    yield srv
    srv.stop()


def client_from(server: Server, address: str) -> httpx.Client:
    """A client whose connections come from `address` (another loopback address = another client)."""
    return httpx.Client(base_url=server.url, timeout=30, transport=httpx.HTTPTransport(local_address=address))


def attempt(c: httpx.Client, email: str, password: str = "wrong-password", **headers: str) -> httpx.Response:
    return c.post(SIGNIN, json={"attributes": {"email": email, "password": password}}, headers=headers)


def token_from(r: httpx.Response) -> str:
    assert r.status_code == 200, r.text
    stored = [x for x in r.json() if x["ResponseType"] == "client.store.set"]
    value = stored[0]["Attributes"]["value"]
    assert isinstance(value, str)
    return value


def ws_status(url: str, headers: dict[str, str]) -> int:
    async def main() -> int:
        try:
            async with websockets.connect(url, additional_headers=headers, open_timeout=10):
                return 101
        except websockets.InvalidStatus as err:
            return int(err.response.status_code)

    return asyncio.run(main())


# -- item 4: the credential source is decided once; a cookie always gets the Origin check ------------


@pytest.mark.parametrize("path", ["/live", "/yjs/harden-room"])
def test_blank_url_or_header_token_does_not_hide_the_cookie(world: World, path: str) -> None:
    server = world.server
    base = server.url.replace("http://", "ws://") + path
    cookie = {"Cookie": f"token={world.owner}"}
    evil = {**cookie, "Origin": "https://evil.example"}
    # a cross-origin page with the user's cookie is refused however the token slots are left blank
    for suffix, extra in [
        ("", {}),
        ("?token=", {}),
        ("?token=%20%20", {}),
        ("?token=&token=", {}),
        ("", {"Authorization": "Bearer "}),
        ("", {"Authorization": "Bearer    "}),
        ("?token=", {"Authorization": "Bearer"}),
        ("", {"Authorization": "Basic b3duZXI6c2VjcmV0"}),
    ]:
        assert ws_status(base + suffix, {**evil, **extra}) == 403, (suffix, extra)
    # the same cookie from this server's own page, or with no Origin (not a browser), is accepted
    assert ws_status(base + "?token=", {**cookie, "Origin": server.url}) == 101
    assert ws_status(base + "?token=", cookie) == 101
    # a real token in the URL or header is not a cookie: no Origin check (a page had to know the token)
    assert ws_status(base + f"?token={world.owner}", evil) == 101
    assert ws_status(base, {**evil, "Authorization": f"Bearer {world.owner}"}) == 101
    # an origin the administrator allowed
    with world.c(world.admin) as c:
        r = c.put("/_config/backend/live.allowed_origins", content="https://app.example, https://other.example")
        assert r.status_code == 200
    try:
        assert ws_status(base + "?token=", {**cookie, "Origin": "https://app.example"}) == 101
        assert ws_status(base + "?token=", {**cookie, "Origin": "https://app.example.evil"}) == 403
    finally:
        with world.c(world.admin) as c:
            assert c.delete("/_config/backend/live.allowed_origins").status_code == 204


def test_blank_tokens_are_absent_for_http_routes(world: World) -> None:
    with world.c() as c:
        c.cookies.set("token", world.owner)
        owner = me(c)["id"]
        assert c.get("/api/user_account/mine", params={"token": " "}).json()["data"]["id"] == owner
        r = c.get("/api/user_account/mine", headers={"Authorization": "Bearer"})
        assert r.json()["data"]["id"] == owner


# -- item 6: a stale cookie never blocks sign-in; signout clears the cookie; Secure over TLS ----------


def forged(world: World, token: str, **changes: Any) -> str:
    """`token` re-signed with the server's real secret after `changes` (an expired or revoked token)."""
    claims = jwt.decode(token, options={"verify_signature": False})
    claims.update(changes)
    return jwt.encode(claims, stored_config(world.db_url, "jwt.secret"), algorithm="HS256")


def test_signin_ignores_stale_revoked_or_foreign_credentials(world: World, accounts: Accounts) -> None:
    email, token = accounts["stale"]
    ref = me_with(world, token)
    now = int(time.time())
    expired = forged(world, token, iat=now - 100, nbf=now - 100, exp=now - 10)
    revoked = forged(world, token, auth_version=0)
    for bad in (expired, revoked, "garbage", "a.b.c"):
        with world.c(bad) as c:
            assert c.get("/api/user_account/mine").status_code == 401  # really a bad credential
    for cookie in [expired, revoked, "garbage", "a.b.c", world.stranger]:
        with client_from(world.server, "127.0.0.20") as c:
            c.cookies.set("token", cookie)
            r = attempt(c, email, PASSWORD)
            fresh = token_from(r)
            assert any(h.startswith(f"token={fresh};") for h in r.headers.get_list("set-cookie"))
            assert me_with(world, fresh) == ref
    with world.c() as c:  # a stale header does not block it either, and a wrong password still fails
        assert me_with(world, token_from(attempt(c, email, PASSWORD, Authorization=f"Bearer {revoked}"))) == ref
        assert attempt(c, email, "not-the-password", Authorization=f"Bearer {world.admin}").status_code == 401


def me_with(world: World, token: str) -> str:
    with world.c(token) as c:
        ref = me(c)["id"]
        assert isinstance(ref, str)
        return ref


def cookie_attrs(header: str) -> dict[str, str]:
    parts = [p.strip() for p in header.split(";")]
    name, _, value = parts[0].partition("=")
    attrs = {"name": name, "value": value}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        attrs[k.lower()] = v
    return attrs


def test_signout_clears_the_cookie_even_when_it_is_invalid(world: World, accounts: Accounts) -> None:
    for cookie in [world.owner, "garbage", None]:
        with world.c() as c:
            if cookie is not None:
                c.cookies.set("token", cookie)
            r = c.post(SIGNOUT)
            assert r.status_code == 200, r.text
            (header,) = r.headers.get_list("set-cookie")
            attrs = cookie_attrs(header)
            assert attrs["name"] == "token" and attrs["value"] in ("", '""')
            assert attrs["max-age"] == "0" and "expires" in attrs
            assert attrs["path"] == "/" and "httponly" in attrs and attrs["samesite"].lower() == "strict"
            assert "secure" not in attrs  # plain HTTP
    with world.c() as c:  # the signin cookie has the same attributes, so the signout one replaces it
        email, _ = accounts["cookie"]
        attrs = cookie_attrs(attempt(c, email, PASSWORD).headers.get_list("set-cookie")[0])
        assert attrs["path"] == "/" and "httponly" in attrs and attrs["samesite"].lower() == "strict"
        listed = c.get("/actions").json()
        assert "user:signout" in listed


def test_cookie_secure_when_a_trusted_proxy_says_tls(world: World, proxied: Server, accounts: Accounts) -> None:
    email, _ = accounts["tls"]
    with client_from(proxied, "127.0.0.1") as c:  # the trusted proxy terminated TLS
        r = attempt(c, email, PASSWORD, **{"X-Forwarded-Proto": "https"})
        assert "secure" in cookie_attrs(r.headers.get_list("set-cookie")[0])
        r = c.post(SIGNOUT, headers={"X-Forwarded-Proto": "https"})
        assert "secure" in cookie_attrs(r.headers.get_list("set-cookie")[0])
        r = attempt(c, email, PASSWORD, **{"X-Forwarded-Proto": "http"})
        assert "secure" not in cookie_attrs(r.headers.get_list("set-cookie")[0])
    with client_from(proxied, "127.0.0.21") as c:  # anyone else cannot claim TLS
        r = attempt(c, email, PASSWORD, **{"X-Forwarded-Proto": "https"})
        assert "secure" not in cookie_attrs(r.headers.get_list("set-cookie")[0])


# -- item 7: brute-force protection that nobody can turn into a lockout -----------------------------


def test_attacker_elsewhere_cannot_lock_out_the_owner(world: World, accounts: Accounts) -> None:
    victim, _ = accounts["victim"]
    with client_from(world.server, "127.0.0.30") as attacker:
        statuses = [attempt(attacker, victim).status_code for _ in range(20)]
        assert statuses[:10] == [401] * 10 and set(statuses[10:]) == {429}
        r = attempt(attacker, victim, PASSWORD)  # the attacker's address waits even with the right password
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    with client_from(world.server, "127.0.0.31") as owner:
        assert me_with(world, token_from(attempt(owner, victim, PASSWORD)))
        assert me_with(world, token_from(attempt(owner, victim, PASSWORD)))


def test_spraying_is_limited_per_address_only(world: World, accounts: Accounts) -> None:
    target, _ = accounts["spray"]
    with client_from(world.server, "127.0.0.32") as sprayer:
        spray = [attempt(sprayer, f"nobody-{uuid.uuid4().hex[:6]}@example.com").status_code for _ in range(51)]
        assert spray[:50] == [401] * 50 and spray[50] == 429
        r = attempt(sprayer, target, PASSWORD)
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    with client_from(world.server, "127.0.0.33") as other:
        assert token_from(attempt(other, target, PASSWORD))


def test_account_backoff_slows_failing_addresses_only(world: World, accounts: Accounts) -> None:
    victim, _ = accounts["backoff"]
    bots = [f"127.0.1.{i}" for i in range(1, 13)]
    for bot in bots:  # twelve addresses, one wrong guess each: every address is clean when it tries
        with client_from(world.server, bot) as c:
            assert attempt(c, victim).status_code == 401
    with client_from(world.server, bots[-1]) as c:  # 12 failures: an address that just failed must wait
        r = attempt(c, victim, PASSWORD)
        assert r.status_code == 429
        wait = int(r.headers["retry-after"])
        assert 1 <= wait <= 60
    with client_from(world.server, "127.0.1.50") as clean:  # a clean address is not held back
        assert token_from(attempt(clean, victim, PASSWORD))
    time.sleep(wait + 0.2)  # a backoff, not a lockout
    with client_from(world.server, bots[-1]) as c:
        assert token_from(attempt(c, victim, PASSWORD))


def test_forwarded_for_from_a_trusted_proxy_names_the_client(world: World, proxied: Server, accounts: Accounts) -> None:
    victim, _ = accounts["proxied"]
    with client_from(proxied, "127.0.0.1") as proxy:
        attacker = {"X-Forwarded-For": "6.6.6.6, 198.51.100.7, 10.99.0.5"}  # right-most untrusted: 198.51.100.7
        statuses = [attempt(proxy, victim, **attacker).status_code for _ in range(11)]
        assert statuses[:10] == [401] * 10 and statuses[10] == 429
        # a forged left part does not change who the client is
        assert attempt(proxy, victim, PASSWORD, **{"X-Forwarded-For": "1.1.1.1, 198.51.100.7"}).status_code == 429
        # the owner behind the same proxy, from another address, signs in
        assert token_from(attempt(proxy, victim, PASSWORD, **{"X-Forwarded-For": "198.51.100.8"}))
    other, _ = accounts["proxied2"]
    with client_from(proxied, "127.0.0.40") as untrusted:  # not a trusted proxy: its header is ignored
        statuses = [attempt(untrusted, other, **{"X-Forwarded-For": "198.51.100.8"}).status_code for _ in range(11)]
        assert statuses[:10] == [401] * 10 and statuses[10] == 429
    with client_from(proxied, "127.0.0.1") as proxy:  # so 198.51.100.8 was not blamed for those
        assert token_from(attempt(proxy, other, PASSWORD, **{"X-Forwarded-For": "198.51.100.8"}))


def test_ipv6_clients_count_per_64_and_mapped_ipv4_is_ipv4(world: World, proxied: Server, accounts: Accounts) -> None:
    victim, _ = accounts["proxied6"]
    with client_from(proxied, "127.0.0.1") as proxy:
        for i in range(10):  # ten addresses of one /64 are one client
            assert attempt(proxy, victim, **{"X-Forwarded-For": f"2001:db8:1:2::{i + 1:x}"}).status_code == 401
        r = attempt(proxy, victim, PASSWORD, **{"X-Forwarded-For": "2001:db8:1:2:ffff::9"})
        assert r.status_code == 429
        assert token_from(attempt(proxy, victim, PASSWORD, **{"X-Forwarded-For": "2001:db8:1:3::1"}))  # next /64
        for _ in range(10):  # an IPv4-mapped IPv6 address is that IPv4 address
            assert attempt(proxy, victim, **{"X-Forwarded-For": "::ffff:198.51.100.60"}).status_code in (401, 429)
        assert attempt(proxy, victim, PASSWORD, **{"X-Forwarded-For": "198.51.100.60"}).status_code == 429


# -- item 11: secrets at rest and in /_config ---------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_data_dir_and_database_files_are_private(db_url: str) -> None:
    root = Path(tempfile.mkdtemp(prefix="portside-perm-"))
    data = root / "nested" / "data"
    sqlite = db_url.startswith("sqlite")
    srv = start_server("" if sqlite else db_url, data)  # SQLite: the default database file in the data dir
    try:
        if sqlite:  # a write, on its own fresh database
            with srv.client() as c:
                assert signup(c, f"perm-{uuid.uuid4().hex[:6]}@example.com").status_code == 200
        assert mode(data) == 0o700
        if sqlite:
            files = [data / "portside.db", data / "portside.db-wal", data / "portside.db-shm"]
            assert all(f.exists() for f in files)
            assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
        assert not any("accessible by group/others" in line for line in srv.log), srv.log
    finally:
        srv.stop()
    data.chmod(0o755)  # looser than it should be: a warning line at the next start
    if sqlite:
        (data / "portside.db").chmod(0o644)
    srv = start_server("" if sqlite else db_url, data)
    try:
        srv.stop()
        warnings = [line for line in srv.log if "accessible by group/others" in line]
        assert any(f"{data} is" in line and "0755" in line for line in warnings), srv.log
        if sqlite:
            assert any(f"{data / 'portside.db'} is" in line and "0644" in line for line in warnings), srv.log
    finally:
        srv.stop()


def test_config_secrets_are_write_only(world: World) -> None:
    real = stored_config(world.db_url, "jwt.secret")
    with world.c(world.admin) as c:
        written = [("mail.smtp.password", "hunter2-pw"), ("s3.SECRET_KEY", "abc123"), ("hook.api_token", "t0k")]
        for key, value in written:
            assert c.put(f"/_config/backend/{key}", content=value).status_code == 200
            assert stored_config(world.db_url, key) == value  # still writable by administrators
        listing = c.get("/_config").json()
        for key in ("jwt.secret", "encryption.secret", "mail.smtp.password", "s3.SECRET_KEY", "hook.api_token"):
            assert listing[key] == "********", key
            r = c.get(f"/_config/backend/{key}")
            assert r.status_code == 200 and r.text == "********", key
        body = c.get("/_config").text
        assert real not in body and "hunter2-pw" not in body and "abc123" not in body
        assert listing["jwt.token.life.hours"] == "72"  # ordinary keys are shown
        # writing the marker back (a read-modify-write client) or an empty value is refused, nothing changes
        for bad in ("********", '"********"', "", "  "):
            r = c.put("/_config/backend/mail.smtp.password", content=bad)
            assert r.status_code == 400 and r.json()["errors"][0]["status"] == "400"
        assert stored_config(world.db_url, "mail.smtp.password") == "hunter2-pw"
        assert stored_config(world.db_url, "jwt.secret") == real


def test_signin_and_signout_refuse_get(world: World) -> None:
    with world.c() as c:
        r = c.get("/action/user_account/signout")
        assert r.status_code == 405 and "set-cookie" not in r.headers, r.text
        r = c.get("/action/user_account/signin", params={"email": "x@example.com", "password": "secret123"})
        assert r.status_code == 405 and "set-cookie" not in r.headers, r.text


def test_generated_secrets_cannot_be_deleted_or_weakened(world: World) -> None:
    real = stored_config(world.db_url, "jwt.secret")
    with world.c(world.admin) as c:
        for key in ("jwt.secret", "encryption.secret"):
            r = c.delete(f"/_config/backend/{key}")
            assert r.status_code == 400, r.text
            r = c.put(f"/_config/backend/{key}", content="short")
            assert r.status_code == 400, r.text
        assert stored_config(world.db_url, "jwt.secret") == real
        assert c.get("/api/user_account/mine").status_code == 200  # tokens still check out


def test_config_refuses_a_token_in_the_url(world: World) -> None:
    with world.c() as c:
        for path in ("/_config", "/_config/backend/jwt.token.life.hours"):
            r = c.get(path, params={"token": world.admin})
            assert r.status_code == 401 and r.json()["errors"][0]["status"] == "401"
            assert "URL" in r.json()["errors"][0]["detail"]
            r = c.get(path, params={"token": ""}, headers={"Authorization": f"Bearer {world.admin}"})
            assert r.status_code == 401
            assert c.get(path, headers={"Authorization": f"Bearer {world.admin}"}).status_code == 200
        r = c.put("/_config/backend/feed.cache", params={"token": world.admin}, content="true")
        assert r.status_code == 401
        c.cookies.set("token", world.admin)
        assert c.get("/_config").status_code == 200


# runs last: it leaves 127.0.0.1 throttled on this module's server
def test_forged_forwarded_for_is_ignored_without_trusted_proxies(world: World) -> None:
    with client_from(world.server, "127.0.0.1") as c:  # rotating forged addresses do not escape the limit
        spray = [
            attempt(c, f"forged-{i}@example.com", **{"X-Forwarded-For": f"203.0.113.{i}"}).status_code
            for i in range(1, 61)
        ]
        assert 429 in spray
