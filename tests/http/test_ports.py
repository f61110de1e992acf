"""Listeners over real processes and sockets: the `listening on` lines, `GET /_ports`, HTTPS switched live by
config `https.port` (enable, move, disable, a taken port, recovery) while HTTP and a /live WebSocket keep
working, on every node of a cluster, clean shutdown on SIGTERM/SIGINT, and start-up failures that leave
nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from support import Server, World, new_user, setup_world, start_server

LISTENING = r"^portside: https listening on (https://\S+)$"


@pytest.fixture(scope="module")
def world(db_url: str) -> Iterator[World]:
    srv = start_server(db_url, None, "--tls-port", "0")
    try:
        yield setup_world(srv, db_url)
    finally:
        srv.stop()


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None, url
    return port


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ports(w: World) -> list[dict[str, Any]]:
    with w.c(w.admin) as c:
        r = c.get("/_ports")
    assert r.status_code == 200, r.text
    body: list[dict[str, Any]] = r.json()
    return body


def by_name(w: World) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in ports(w)}


def set_key(w: World, key: str, value: str) -> httpx.Response:
    with w.c(w.admin) as c:
        return c.post(f"/_config/backend/{key}", content=value)


def https_ok(url: str) -> bool:
    try:
        with httpx.Client(verify=False, timeout=10) as c:
            return c.get(url + "/ping").text == "pong"
    except httpx.TransportError:
        return False


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except OSError:
        return True
    return False


@contextlib.contextmanager
def live_socket(server: Server, token: str) -> Iterator[ClientConnection]:
    with connect(server.url.replace("http://", "ws://") + f"/live?token={token}", open_timeout=10) as ws:
        assert json.loads(ws.recv(10))["type"] == "session"
        yield ws


def live_ping(ws: ClientConnection) -> None:
    ws.send(json.dumps({"id": "p", "method": "ping"}))
    assert json.loads(ws.recv(10)) == {"type": "pong"}


def wait_state(w: World, name: str, state: str | None, timeout: float = 20) -> dict[str, Any] | None:
    """The /_ports entry of `name` once it is in `state` (None: once it is gone)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = by_name(w).get(name)
        if (entry is None and state is None) or (entry is not None and entry["state"] == state):
            return entry
        time.sleep(0.1)
    raise AssertionError(f"{name} never reached {state}: {ports(w)}")


# -- /_ports and the listening lines -------------------------------------------------------------------------


def test_listening_lines_and_ports(world: World) -> None:
    srv = world.server
    assert set(srv.listeners) == {"http", "https"}
    assert srv.listeners["http"] == srv.url and srv.listeners["https"] == srv.tls_url
    for line in ("portside: http listening on " + srv.url, "portside: https listening on " + srv.tls_url):
        assert line + "\n" in srv.log  # exactly one line each, byte-compatible with the old format
    listed = ports(world)
    assert [p["name"] for p in listed] == ["http", "https"]
    http, https = listed
    assert http == {**http, "protocol": "http", "url": srv.url, "tls": "none", "state": "running", "error": None}
    assert https == {**https, "protocol": "https", "url": srv.tls_url, "tls": "implicit", "state": "running"}
    for p in listed:
        assert set(p) == {"name", "protocol", "url", "tls", "since", "state", "error"}
        since = dt.datetime.fromisoformat(p["since"].replace("Z", "+00:00"))
        assert p["since"].endswith("Z") and since.tzinfo is not None
        assert abs((dt.datetime.now(dt.UTC) - since).total_seconds()) < 3600
    assert not refused(port_of(srv.url)) and https_ok(srv.tls_url)


def test_ports_are_for_administrators(world: World) -> None:
    srv = world.server
    with srv.client() as c:
        r = c.get("/_ports")
        assert r.status_code == 401 and r.json()["errors"][0]["status"] == "401"
        assert c.get("/_ports", headers={"Authorization": "Bearer garbage"}).status_code == 401
        assert c.get("/_ports", params={"token": world.admin}).status_code == 401  # never a token in the URL
    for token in (world.member, world.owner, world.stranger):
        with srv.client(token) as c:
            r = c.get("/_ports")
            assert r.status_code == 403 and r.json()["errors"][0]["status"] == "403", r.text
    with srv.client(world.admin) as c:
        assert c.post("/_ports").status_code == 405
    with httpx.Client(base_url=srv.tls_url, verify=False, timeout=10) as c:  # the same answer over HTTPS
        assert c.get("/_ports").status_code == 401
        assert c.get("/_ports", headers={"Authorization": f"Bearer {world.admin}"}).json() == ports(world)


def test_bad_port_values_are_refused(world: World) -> None:
    before = ports(world)
    for bad in ("abc", "-1", "65536", "1e3", "\uff18\uff14\uff14\uff13", "44 3", "0x10", "on", "99999999999999999999"):
        r = set_key(world, "https.port", bad)
        assert r.status_code == 400, (bad, r.text)
        err = r.json()["errors"][0]
        assert err["status"] == "400" and "https.port" in err["detail"], err
    with world.c(world.admin) as c:
        assert c.get("/_config/backend/https.port").status_code == 404  # nothing was stored
    assert ports(world) == before


# -- HTTPS switched live --------------------------------------------------------------------------------------


def test_https_moves_stops_and_comes_back_live(world: World) -> None:
    srv = world.server
    http_url = srv.url
    first = srv.tls_url
    http_since = by_name(world)["http"]["since"]
    start = len(srv.log)
    with live_socket(srv, world.member) as ws:
        live_ping(ws)
        target = free_port()
        mark = len(srv.log)
        assert set_key(world, "https.port", str(target)).status_code == 200
        moved = srv.wait_listening("https", mark)
        assert port_of(moved) == target and srv.listeners["https"] == moved
        srv.wait_line(r"^portside: https stopped$", mark)
        assert https_ok(moved) and refused(port_of(first))
        assert by_name(world)["https"]["url"] == moved
        live_ping(ws)

        mark = len(srv.log)
        assert set_key(world, "https.port", "off").status_code == 200
        srv.wait_line(r"^portside: https stopped$", mark)
        assert wait_state(world, "https", None) is None
        assert "https" not in srv.listeners and refused(target)
        live_ping(ws)

        mark = len(srv.log)  # "" = back to --tls-port (0: a free port again)
        assert set_key(world, "https.port", "").status_code == 200
        back = srv.wait_listening("https", mark)
        assert https_ok(back) and by_name(world)["https"]["state"] == "running"
        live_ping(ws)
    entry = by_name(world)["http"]
    assert entry["url"] == http_url and entry["since"] == http_since  # HTTP was never touched
    assert srv.listeners["http"] == http_url
    assert [line for line in srv.log[start:] if line.startswith("portside: http ")] == []  # no http stop/restart


def test_setting_the_port_it_runs_on_changes_nothing(world: World) -> None:
    """https runs on a port picked from 0; asking for that very port keeps it (no rebind against itself)."""
    import time

    srv = world.server
    before = by_name(world)["https"]
    mark = len(srv.log)
    assert set_key(world, "https.port", str(port_of(before["url"]))).status_code == 200
    deadline = time.monotonic() + 2  # the switch runs right after the event: it must not change anything
    while time.monotonic() < deadline:
        assert by_name(world)["https"] == before
        time.sleep(0.1)
    assert https_ok(before["url"])
    assert [line for line in srv.log[mark:] if line.startswith("portside: ")] == []
    set_key(world, "https.port", "")


def test_taken_port_fails_and_fixing_the_key_recovers(world: World) -> None:
    srv = world.server
    with live_socket(srv, world.owner) as ws, socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        taken = squatter.getsockname()[1]
        try:
            mark = len(srv.log)
            assert set_key(world, "https.port", str(taken)).status_code == 200
            failed = wait_state(world, "https", "failed")
            assert failed is not None and failed["url"] == f"https://127.0.0.1:{taken}", failed
            assert "in use" in failed["error"].lower(), failed
            srv.wait_line(rf"https cannot listen on https://127\.0\.0\.1:{taken}: .*in use", mark)
            assert "https" not in srv.listeners
            live_ping(ws)  # the rest keeps serving
            with srv.client(world.admin) as c:
                assert c.get("/ping").text == "pong"

            mark = len(srv.log)  # the same value again retries (still taken: still failed, still listed)
            assert set_key(world, "https.port", str(taken)).status_code == 200
            srv.wait_line(rf"https cannot listen on https://127\.0\.0\.1:{taken}", mark)
            assert by_name(world)["https"]["state"] == "failed"

            mark = len(srv.log)
            assert set_key(world, "https.port", "0").status_code == 200
            url = srv.wait_listening("https", mark)
            entry = wait_state(world, "https", "running")
            assert entry is not None and entry["url"] == url and entry["error"] is None
            assert https_ok(url)
            live_ping(ws)
        finally:
            set_key(world, "https.port", "")


def test_https_follows_the_key_on_every_node(cluster: tuple[str, Server, Server]) -> None:
    _, a, b = cluster
    w = setup_world(a, "")
    marks = len(a.log), len(b.log)
    with w.c(w.admin) as c:
        assert c.post("/_config/backend/https.port", content="0").status_code == 200
    for node, mark in zip((a, b), marks, strict=True):
        url = node.wait_listening("https", mark)
        assert https_ok(url)
    marks = len(a.log), len(b.log)
    with w.c(w.admin) as c:
        assert c.delete("/_config/backend/https.port").status_code == 204  # back to --tls-port: none
    for node, mark in zip((a, b), marks, strict=True):
        node.wait_line(r"^portside: https stopped$", mark)
        assert "https" not in node.listeners


# -- stopping -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_in_reverse_order(sig: signal.Signals, tmp_path: Path) -> None:
    srv = start_server("", tmp_path, "--tls-port", "0")
    try:
        _, token = new_user(srv, "sig")
        http_port, https_port = port_of(srv.url), port_of(srv.tls_url)
        with live_socket(srv, token) as ws, httpx.Client(base_url=srv.url, timeout=10) as idle:
            assert idle.get("/ping").text == "pong"  # a kept-alive connection is drained too
            mark = len(srv.log)
            srv.proc.send_signal(sig)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(15)
            assert closed.value.rcvd is not None, "the WebSocket got no close frame"
            assert srv.proc.wait(20) == 0, "".join(srv.log)
        srv.wait_line(r"^portside: http stopped$", mark)
        tail = [line.strip() for line in srv.log[mark:] if line.startswith("portside: ")]
        assert tail == ["portside: https stopped", "portside: http stopped"], tail  # reverse start order
        assert not [line for line in srv.log if "Traceback" in line or "was destroyed" in line], srv.log
        for port in (http_port, https_port):  # both ports are free again
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", port))
                s.listen(1)
    finally:
        srv.stop()


SERVE = [sys.executable, "-m", "portside.cli.main", "serve", "--log-level", "warning"]


def test_taken_http_port_stops_start_up_before_any_work(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        r = subprocess.run(
            [*SERVE, "--port", str(port), "--data-dir", str(tmp_path / "d")], capture_output=True, text=True, timeout=60
        )
    assert r.returncode == 1, r.stderr
    assert f"portside: cannot listen on http://127.0.0.1:{port}:" in r.stderr and "in use" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "d").exists()  # the port is taken before the data directory or database is touched


def _in_process_start(settings: Any) -> tuple[BaseException | None, set[str]]:
    """Start a Portside in this process and return (the error, names of the tasks left over)."""
    from portside.runtime import Portside

    async def main() -> tuple[BaseException | None, set[str]]:
        app = Portside(settings)
        error: BaseException | None = None
        try:
            await app.start()
        except Exception as exc:
            error = exc
        else:
            await app.stop()
        await asyncio.sleep(0.2)
        left = {t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task()}
        return error, left

    return asyncio.run(main())


def test_a_later_start_failure_leaves_no_socket_or_task(db_url: str, tmp_path: Path) -> None:
    """--hostname is checked after the HTTP port is bound (and the database opened): the failure closes it."""
    from portside.errors import StartupError
    from portside.settings import Settings

    threads = set(threading.enumerate())
    port = free_port()
    settings = Settings(port=port, data_dir=str(tmp_path), database_url=db_url, hostname="a b", tls_port=0)
    error, left = _in_process_start(settings)
    assert isinstance(error, StartupError) and "invalid --hostname" in str(error), error
    assert left == set(), left
    with socket.socket() as s:  # no SO_REUSEADDR: only free if nothing listens there any more
        s.bind(("127.0.0.1", port))
        s.listen(1)
    assert {t for t in threading.enumerate() if t.is_alive()} <= threads | {
        t for t in threading.enumerate() if t.daemon and t.name.startswith("asyncio_")
    }

    r = subprocess.run(  # the process says why and ends with 1, without a traceback
        [*SERVE, "--port", str(port), "--data-dir", str(tmp_path / "p"), "--hostname", "a b"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "invalid --hostname" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_https_taken_at_start_is_listed_failed_and_http_serves(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        taken = squatter.getsockname()[1]
        srv = start_server("", tmp_path, "--tls-port", str(taken), wait_for=("http",))
        try:
            w = setup_world(srv, "")
            entry = wait_state(w, "https", "failed")
            assert entry is not None and "in use" in entry["error"].lower(), entry
            assert entry["url"] == f"https://127.0.0.1:{taken}" and entry["tls"] == "implicit"
            assert set(srv.listeners) == {"http"}
            srv.wait_line(rf"https cannot listen on https://127\.0\.0\.1:{taken}")
            with srv.client(w.admin) as c:
                assert c.get("/ping").text == "pong"
        finally:
            srv.stop()


def test_an_unusable_stored_port_is_listed_failed_at_start(tmp_path: Path) -> None:
    """A value that did not come through /_config (an older node, a hand edit) is a failed listener."""
    import sqlalchemy as sa

    srv = start_server("", tmp_path)
    srv.stop()
    engine = sa.create_engine(f"sqlite:///{tmp_path}/portside.db")
    with engine.begin() as c:
        c.execute(
            sa.text(
                "INSERT INTO _config (name, configtype, configstate, configenv, value) "
                "VALUES ('https.port', 'backend', 'enabled', 'release', 'abc')"
            )
        )
    engine.dispose()
    srv = start_server("", tmp_path)
    try:
        w = setup_world(srv, "")
        entry = wait_state(w, "https", "failed")
        assert entry is not None and "https.port" in entry["error"] and "not a port" in entry["error"], entry
        assert set(srv.listeners) == {"http"}
        mark = len(srv.log)
        assert set_key(w, "https.port", "0").status_code == 200  # fixing the key recovers
        assert https_ok(srv.wait_listening("https", mark))
    finally:
        srv.stop()


def test_uvicorn_still_captures_signals_through_the_method_we_override() -> None:
    """Canary: http.listener switches uvicorn's signal capture off by overriding `Server.capture_signals`; if
    uvicorn stops calling it, its handlers would replace the runtime's (and SIGTERM would kill the process)."""
    import inspect

    import uvicorn

    from portside.http.listener import UvicornListener

    assert "self.capture_signals()" in inspect.getsource(uvicorn.Server.serve)
    assert {"started", "should_exit", "force_exit"} <= set(vars(uvicorn.Server(uvicorn.Config(app=None))))
    assert "sockets" in inspect.signature(uvicorn.Server.serve).parameters
    assert UvicornListener.__mro__[1].__name__ == "Listener"
