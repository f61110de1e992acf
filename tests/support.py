"""Test support: run real `portside serve` processes and talk to them over real sockets."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import sqlalchemy as sa

LISTEN_RE = re.compile(r"portside: http listening on (http://\S+)")
TLS_LISTEN_RE = re.compile(r"portside: https listening on (https://\S+)")
ANY_LISTEN_RE = re.compile(r"^portside: (\S+) listening on (\S+://\S+)$")
STOPPED_RE = re.compile(r"^portside: (\S+) stopped$")
PG_ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
MYSQL_ADMIN = "mysql+pymysql://root@127.0.0.1:3306/test"
PASSWORD = "secret123"
REDIS = "redis://127.0.0.1:6379/0"
# servers started by the tests hash passwords at bcrypt's minimum cost (a hidden, test-only setting); a test that
# needs the production cost passes env={TEST_BCRYPT_ROUNDS_ENV: None} to start_server
TEST_BCRYPT_ROUNDS_ENV = "PORTSIDE_TEST_BCRYPT_ROUNDS"
TEST_BCRYPT_ROUNDS = "4"

Case = TypeVar("Case")
Result = TypeVar("Result")


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[str]
    data_dir: Path
    log: list[str] = field(default_factory=list)
    database_url: str = ""
    tls_url: str = ""  # with --tls-port: the HTTPS listener's URL
    listeners: dict[str, str] = field(default_factory=dict)  # name -> URL of every listener running now

    def note(self, line: str) -> None:
        """Record one output line; `listening on` and `stopped` lines keep `listeners` current."""
        self.log.append(line)
        m = ANY_LISTEN_RE.match(line.strip())
        if m:
            self.listeners[m.group(1)] = m.group(2)
        m = STOPPED_RE.match(line.strip())
        if m:
            self.listeners.pop(m.group(1), None)

    def wait_line(self, pattern: str, after: int = 0, timeout: float = 30) -> re.Match[str]:
        """The first output line from index `after` on that matches `pattern` (waits for it)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log[after:]:
                m = rx.search(line)
                if m:
                    return m
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n" + "".join(self.log[-30:]))

    def wait_listening(self, name: str, after: int = 0, timeout: float = 30) -> str:
        """The URL of the next `portside: NAME listening on URL` line from index `after` on."""
        return self.wait_line(rf"^portside: {re.escape(name)} listening on (\S+)$", after, timeout).group(1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@dataclass
class World:
    """A server with an administrator, three users (owner, member of `team`, stranger) and a usergroup."""

    server: Server
    db_url: str
    admin: str
    owner: str
    member: str
    stranger: str
    team: str  # usergroup ref

    def c(self, token: str | None = None) -> httpx.Client:
        return self.server.client(token)


def start_server(
    database_url: str,
    data_dir: Path | None = None,
    *extra: str,
    env: dict[str, str | None] | None = None,
    timeout: float | None = None,
    wait_for: tuple[str, ...] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> Server:
    """A `portside serve --port 0` process, returned once the listeners `wait_for` (default: http, and https
    with --tls-port) have printed their `listening on` line (within `timeout` s; default 60, and 180 on
    MariaDB, whose first migration of a fresh database is slow when the machine is loaded)."""
    if timeout is None:
        timeout = 180 if database_url.startswith("mysql") else 60
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="portside-"))
    args = [
        sys.executable,
        "-m",
        "portside.cli.main",
        "serve",
        "--port",
        "0",
        "--data-dir",
        str(data_dir),
        "--log-level",
        "warning",
        *extra,
    ]
    if database_url:
        args += ["--database-url", database_url]
    merged: dict[str, str | None] = {TEST_BCRYPT_ROUNDS_ENV: TEST_BCRYPT_ROUNDS, **os.environ, **(env or {})}
    full_env = {k: v for k, v in merged.items() if v is not None}  # a None value unsets (e.g. the test cost)
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env, preexec_fn=preexec_fn
    )
    assert proc.stdout is not None
    if wait_for is None:
        want_tls = "--tls-port" in extra or "PORTSIDE_TLS_PORT" in (env or {})
        wait_for = ("http", "https") if want_tls else ("http",)
    server = Server("", proc, data_dir, [], database_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        server.note(line)
        if all(name in server.listeners for name in wait_for):
            server.url = server.listeners.get("http", "")
            server.tls_url = server.listeners.get("https", "")
            _drain(server)
            return server
    proc.kill()
    raise RuntimeError("portside did not start:\n" + "".join(server.log))


def _drain(server: Server) -> None:
    def pump() -> None:
        assert server.proc.stdout is not None
        for line in server.proc.stdout:
            server.note(line)

    threading.Thread(target=pump, daemon=True).start()


def fresh_database(kind: str) -> tuple[str, Any]:
    """(async URL, drop callback) for a new empty database of `kind`."""
    name = f"portside_t_{uuid.uuid4().hex[:10]}"
    if kind == "sqlite":
        d = tempfile.mkdtemp(prefix="portside-db-")
        return f"sqlite+aiosqlite:///{d}/portside.db", lambda: None
    servers = {  # admin URL, create, drop, URL the server uses
        "postgresql": (
            PG_ADMIN,
            f'CREATE DATABASE "{name}"',
            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
            f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}",
        ),
        "mysql": (
            MYSQL_ADMIN,
            f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
            f"DROP DATABASE IF EXISTS `{name}`",
            f"mysql+asyncmy://root@127.0.0.1:3306/{name}",
        ),
    }
    if kind in servers:
        admin_url, create_sql, drop_sql, url = servers[kind]
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(sa.text(create_sql))

        def dropping() -> None:
            try:
                with admin.connect() as c:
                    c.execute(sa.text(drop_sql))
                admin.dispose()
            except Exception as e:  # handed to wait_for_drops, which reports it
                _DROP_ERRORS.append(f"{name}: {e!r}")

        def drop() -> None:
            """Drops the database in a thread of its own (the caller, usually a fixture's teardown, goes on
            while the server does the slow part: DROP DATABASE checkpoints on PostgreSQL, ~1-5 s here)."""
            thread = threading.Thread(target=dropping, name=f"drop {name}")  # not a daemon: exit waits for it
            thread.start()
            _DROPS.append(thread)

        return url, drop
    raise ValueError(kind)


_DROPS: list[threading.Thread] = []
_DROP_ERRORS: list[str] = []


def wait_for_drops() -> list[str]:
    """Wait until every database `fresh_database` handed a drop for is dropped; the drops that failed."""
    while _DROPS:
        _DROPS.pop().join()
    return list(_DROP_ERRORS)


# -- API helpers ---------------------------------------------------------------------------------


def signup(c: httpx.Client, email: str, name: str = "User", password: str = PASSWORD) -> httpx.Response:
    return c.post(
        "/action/user_account/signup",
        json={"attributes": {"name": name, "email": email, "password": password, "passwordConfirm": password}},
    )


def signin(c: httpx.Client, email: str, password: str = PASSWORD) -> str:
    r = c.post("/action/user_account/signin", json={"attributes": {"email": email, "password": password}})
    assert r.status_code == 200, r.text
    stored = [x for x in r.json() if x["ResponseType"] == "client.store.set"]
    token = stored[0]["Attributes"]["value"]
    assert isinstance(token, str)
    return token


def new_user(server: Server, prefix: str = "u") -> tuple[str, str]:
    """Sign up and sign in a fresh user; returns (email, token)."""
    email = f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"
    with server.client() as c:
        r = signup(c, email, name=prefix.title())
        assert r.status_code == 200, r.text
        return email, signin(c, email)


def schema_upload(c: httpx.Client, text: str, name: str = "schema.yaml") -> httpx.Response:
    data = base64.b64encode(text.encode()).decode()
    return c.post(
        "/action/world/upload_system_schema",
        json={
            "attributes": {
                "schema_file": [
                    {"name": name, "file": f"data:application/x-yaml;base64,{data}", "type": "application/x-yaml"}
                ]
            }
        },
    )


def create(c: httpx.Client, table: str, **attrs: Any) -> httpx.Response:
    return c.post(f"/api/{table}", json={"data": {"type": table, "attributes": attrs}})


def setup_world(server: Server, db_url: str, schema: str | None = None, *config: tuple[str, str]) -> World:
    """Four users (the first becomes administrator), a `team` usergroup with the member in it, an optional
    schema upload and config keys set by the administrator."""
    _, admin = new_user(server, "admin")
    _, owner = new_user(server, "owner")
    _, member = new_user(server, "member")
    _, stranger = new_user(server, "stranger")
    with server.client(admin) as c:
        r = c.post("/action/world/become_an_administrator")
        assert r.status_code == 200, r.text
        if schema is not None:
            r = schema_upload(c, schema)
            assert r.status_code == 200, r.text
        r = create(c, "usergroup", name="team")
        assert r.status_code == 201, r.text
        team = r.json()["data"]["id"]
        with server.client(member) as mc:
            member_ref = me(mc)["id"]
        r = c.post(
            f"/api/user_account/{member_ref}/relationships/usergroup_id",
            json={"data": [{"type": "usergroup", "id": team}]},
        )
        assert r.status_code == 204, r.text
        for key, value in config:
            r = c.post(f"/_config/backend/{key}", content=value)
            assert r.status_code == 200, r.text
    return World(server, db_url, admin, owner, member, stranger, team)


@contextmanager
def running_world(kind: str = "sqlite", schema: str | None = None) -> Iterator[World]:
    """A server on a fresh `kind` database with `setup_world`'s users; stopped and its database dropped after."""
    url, drop = fresh_database(kind)
    server = start_server(url)
    try:
        yield setup_world(server, url, schema)
    finally:
        server.stop()
        drop()


def me(c: httpx.Client) -> dict[str, Any]:
    r = c.get("/api/user_account/mine")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


def sweep(call: Callable[[Case], Result], cases: Iterable[Case], workers: int = 4) -> list[tuple[Case, Result]]:
    """`call` on every case, `workers` at a time, as (case, result) pairs in the cases' order: for sweeps of
    hundreds of independent read-only requests, which otherwise wait out each round trip in turn. The caller
    asserts on the pairs in order, so the first wrong case is reported as before; an exception propagates."""
    todo = list(cases)
    with ThreadPoolExecutor(workers) as pool:
        return list(zip(todo, pool.map(call, todo), strict=True))


def sync_url(async_url: str) -> str:
    for a, s in (
        ("sqlite+aiosqlite", "sqlite"),
        ("postgresql+asyncpg", "postgresql+psycopg2"),
        ("mysql+asyncmy", "mysql+pymysql"),
    ):
        if async_url.startswith(a):
            return s + async_url[len(a) :]
    return async_url


def stored_config(async_url: str, key: str) -> str:
    """A config value as stored in the database (secrets are not readable through the API)."""
    engine = sa.create_engine(sync_url(async_url))
    try:
        with engine.connect() as c:
            value = c.execute(sa.text("SELECT value FROM _config WHERE name = :k"), {"k": key}).scalar_one()
    finally:
        engine.dispose()
    return str(value)


def read_events(async_url: str, after: int = 0) -> list[dict[str, Any]]:
    """The event log as stored, read over a separate connection."""
    engine = sa.create_engine(sync_url(async_url))
    try:
        with engine.connect() as c:
            rows = c.execute(
                sa.text(
                    'SELECT "offset", table_name, event_type, reference_id, data, grants, actor FROM _event_log '
                    'WHERE "offset" > :a ORDER BY "offset"'.replace('"', "`" if "mysql" in async_url else '"')
                ),
                {"a": after},
            ).all()
    finally:
        engine.dispose()
    return [
        {
            "offset": r[0],
            "table": r[1],
            "type": r[2],
            "ref": r[3],
            "data": json.loads(r[4]),
            "grants": json.loads(r[5]),
            "actor": r[6],
        }
        for r in rows
    ]


# -- WebSocket helpers (JSON frames) -----------------------------------------------------------------


async def recv(ws: Any, timeout: float = 5) -> dict[str, Any]:
    """The next frame, as JSON, within `timeout` seconds (TimeoutError otherwise)."""
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return frame


async def until(ws: Any, done: Callable[[dict[str, Any]], bool], timeout: float = 5) -> list[dict[str, Any]]:
    """Every frame up to and including the first one `done` accepts (TimeoutError if none within `timeout`).

    To check that something did NOT arrive, make a marker arrive after it on the same ordered path (a later
    event of a topic the socket follows: /live delivers a node's events in log order) and look at what came
    before the marker, instead of waiting for silence."""
    got: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        frame = await recv(ws, max(0.01, deadline - asyncio.get_running_loop().time()))
        got.append(frame)
        if done(frame):
            return got


def events(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in frames if f.get("type") == "event"]


def is_event(kind: str | None = None, topic: str | None = None) -> Callable[[dict[str, Any]], bool]:
    """A frame test for `until`: an event frame (of this `event` kind and topic, when given)."""
    return lambda f: (
        f.get("type") == "event"
        and (kind is None or f.get("event") == kind)
        and (topic is None or f.get("topic") == topic)
    )


async def quiet(ws: Any, seconds: float = 0.5) -> list[dict[str, Any]]:
    """Every frame that arrives until the socket stays silent for `seconds` (prefer `until` with a marker)."""
    got = []
    try:
        while True:
            got.append(await recv(ws, seconds))
    except TimeoutError:
        return got
