"""ACME HTTP-01 on a cluster: pending challenges are rows of `_acme_challenge`, so whichever node the CA's
validation request reaches answers it, not only the node running the order (two `portside serve` processes on
one PostgreSQL database, joined by Redis; Pebble as the CA)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import secrets
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa

from pebble_support import free_port, running_pebble
from portside.certs import acme_client, challenge_store
from portside.core.db import Database
from support import Server, World, create, fresh_database, setup_world, sync_url

PATH = "/.well-known/acme-challenge/"


@pytest.fixture(scope="module")
def nodes(cluster: tuple[str, Server, Server]) -> tuple[World, Server]:
    """(node A with an administrator and users, node B on the same database)."""
    url, a, b = cluster
    return setup_world(a, url), b


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def new_token() -> str:
    return b64(secrets.token_bytes(32))  # 43 characters, as CAs send


def key_authorization(token: str) -> str:
    return f"{token}.{b64(hashlib.sha256(token.encode()).digest())}"


def port_of(server: Server) -> int:
    port = urlsplit(server.url).port
    assert port is not None
    return port


def rows(url: str) -> list[Any]:
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.connect() as c:
            return list(c.execute(sa.text("SELECT token, key_authorization, expires_at FROM _acme_challenge")))
    finally:
        engine.dispose()


def insert(url: str, token: str, value: str, expires_in: float) -> None:
    """A challenge row as another node would write it."""
    expires = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=expires_in)
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.begin() as c:
            c.execute(
                sa.text("INSERT INTO _acme_challenge (token, key_authorization, expires_at) VALUES (:t, :v, :e)"),
                {"t": token, "v": value, "e": expires},
            )
    finally:
        engine.dispose()


def act(c: httpx.Client, name: str, ref: str) -> httpx.Response:
    return c.post(f"/action/certificate/{name}", json={"attributes": {"certificate_id": ref}})


def configure(c: httpx.Client, pebble: dict[str, str]) -> None:
    for key, value in (("acme.directory_url", pebble["directory"]), ("acme.ca_file", pebble["ca_file"])):
        r = c.post(f"/_config/backend/{key}", content=value)
        assert r.status_code == 200, r.text


def test_an_order_run_by_one_node_is_validated_through_the_other(nodes: tuple[World, Server]) -> None:
    """Pebble validates on node B's HTTP port while node A runs the order: B answers from the database."""
    w, b = nodes
    host = f"acme-{uuid.uuid4().hex[:6]}.example.org"
    with running_pebble(port_of(b)) as pebble, w.c(w.admin) as c:
        configure(c, pebble)
        r = create(c, "certificate", hostname=host)
        assert r.status_code == 201, r.text
        ref = r.json()["data"]["id"]
        r = act(c, "generate_acme_certificate", ref)
        log = Path(pebble["log"]).read_text()
        assert r.status_code == 200, (r.text, log[-3000:])
        assert f"{host}:{port_of(b)}{PATH}" in log  # the CA's request went to node B
    with b.client(w.admin) as bc:
        r = bc.get(f"/api/certificate/{ref}")
        assert r.status_code == 200 and r.json()["data"]["attributes"]["issuer"] == "acme", r.text
    assert rows(w.db_url) == []  # withdrawn when the order ended


def test_a_failed_order_withdraws_its_challenge(nodes: tuple[World, Server]) -> None:
    """Validation against a port nobody listens on fails the order: a clean 502, and no row stays behind."""
    w, _ = nodes
    host = f"fail-{uuid.uuid4().hex[:6]}.example.org"
    nobody = free_port()
    with running_pebble(nobody) as pebble, w.c(w.admin) as c:
        configure(c, pebble)
        r = create(c, "certificate", hostname=host)
        assert r.status_code == 201, r.text
        r = act(c, "generate_acme_certificate", r.json()["data"]["id"])
        assert r.status_code == 502 and "could not validate" in r.text, r.text
        assert f"{host}:{nobody}{PATH}" in Path(pebble["log"]).read_text()  # the CA did try
    assert rows(w.db_url) == []


def test_only_exact_unexpired_well_formed_tokens_are_served(nodes: tuple[World, Server]) -> None:
    w, b = nodes
    good, expired = new_token(), new_token()
    insert(w.db_url, good, key_authorization(good), 120)
    insert(w.db_url, expired, key_authorization(expired), -1)
    short = "abcDEF123_-"  # base64url, but fewer than 128 bits: never looked up even with a row
    insert(w.db_url, short, key_authorization(short), 120)
    dotted = "A" * 30 + "..x"  # a row no CA could have sent
    insert(w.db_url, dotted, key_authorization(dotted), 120)
    for server in (w.server, b):
        with server.client() as c:
            r = c.get(PATH + good)
            assert r.status_code == 200 and r.text == key_authorization(good), r.text
            assert r.headers["content-type"] == "application/octet-stream"
            for token in (
                expired,
                good.swapcase(),  # exact matches only
                good[:-1],
                good + "A",
                new_token(),  # unknown
                short,
                dotted,
                "A" * 129,  # too long
                "unknown-token",
                "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                "..%2f..%2fetc%2fpasswd",
                "..%5c..%5cwindows",
                good + "%00",
                good + "%20",
            ):
                r = c.get(PATH + token)
                assert r.status_code == 404, (token, r.status_code, r.text)
                assert good not in r.text and "root:" not in r.text
            r = c.post(PATH + good)
            assert r.status_code == 405, r.text


@pytest.mark.parametrize("kind", ["postgresql", "mysql", "sqlite"])
async def test_the_store_across_two_nodes_and_its_expiry(kind: str) -> None:
    """The store itself, two Database objects on one database standing for two nodes."""
    url, drop = fresh_database(kind)
    a, b = Database(url), Database(url)
    try:
        await challenge_store.create_table(a)
        await challenge_store.create_table(b)  # a second node starting: nothing to do
        sa_store, sb = challenge_store.ChallengeStore(a), challenge_store.ChallengeStore(b)
        token = new_token()
        await sa_store.put(token, key_authorization(token))
        assert await sb.get(token) == key_authorization(token)
        assert await sb.get(token.swapcase()) is None
        # tokens differing in case are two challenges (MariaDB: the table's collation is binary, though the
        # test database defaults to a case-insensitive one)
        await sa_store.put(token.swapcase(), key_authorization(token.swapcase()))
        assert await sb.get(token) == key_authorization(token)
        assert await sb.get(token.swapcase()) == key_authorization(token.swapcase())
        await sa_store.drop(token.swapcase())
        assert await sb.get(token) == key_authorization(token)
        await sa_store.drop(token)
        assert await sb.get(token) is None and await sa_store.get(token) is None
        # expiry: the writing node's memory and every node's query both stop answering
        brief = new_token()
        await sa_store.put(brief, key_authorization(brief), ttl=0.5)
        assert await sa_store.get(brief) == key_authorization(brief)
        await asyncio.sleep(0.8)
        assert await sa_store.get(brief) is None and await sb.get(brief) is None
        # the next write purges expired rows (this node's or another's)
        later = new_token()
        await sb.put(later, key_authorization(later))
        assert [r.token for r in rows(url)] == [later]
        # bad input is refused and changes nothing
        for bad_token, bad_value in (
            ("short", key_authorization("short")),
            ("../" + later, key_authorization(later)),
            (new_token(), key_authorization(later)),  # the value names another token
            (later, later + ".has spaces"),
            (later, later + "." + "x" * 300),
        ):
            with pytest.raises(ValueError):
                await sa_store.put(bad_token, bad_value)
        assert [(r.token, r.key_authorization) for r in rows(url)] == [(later, key_authorization(later))]
        # the worker thread's view: a malformed token from the CA is a clean AcmeError
        publisher = acme_client.Publisher(sa_store, asyncio.get_running_loop())
        with pytest.raises(acme_client.AcmeError, match="malformed"):
            await asyncio.to_thread(publisher.put, "x/../y", "x/../y.z")
        fresh = new_token()
        await asyncio.to_thread(publisher.put, fresh, key_authorization(fresh))
        assert await sb.get(fresh) == key_authorization(fresh)
        await asyncio.to_thread(publisher.drop, fresh)
        assert await sb.get(fresh) is None
    finally:
        await a.dispose()
        await b.dispose()
        drop()
