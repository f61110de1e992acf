"""tools.lifecycle: rollback and reverse-order stop of the task group, and the listener registry with a small
echo listener on real sockets (bind, serve, replace, fail, drain by a deadline)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from portside.tools.lifecycle import Lifecycle, Listener, Listeners, bind_tcp, parse_port


class Echo(Listener):
    """A line echo server; `hold` makes every session wait forever (to test the drain deadline)."""

    def __init__(self, name: str, port: int = 0, hold: bool = False):
        super().__init__(name, "echo", "127.0.0.1", port)
        self.hold = hold
        self.servers: list[asyncio.Server] = []
        self.sessions: set[asyncio.Task[Any]] = set()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.sessions.add(task)
        try:
            while line := await reader.readline():
                if self.hold:
                    await asyncio.Event().wait()
                writer.write(line)
                await writer.drain()
        except asyncio.CancelledError:
            pass  # drained past the deadline
        finally:
            self.sessions.discard(task)
            writer.close()

    async def serve(self) -> None:
        for sock in self.sockets:
            self.servers.append(await asyncio.start_server(self._session, sock=sock))

    async def drain(self, deadline: float) -> None:
        for server in self.servers:
            server.close()
        loop = asyncio.get_running_loop()
        while self.sessions and loop.time() < deadline:  # noqa: ASYNC110 - a test double
            await asyncio.sleep(0.02)
        for task in list(self.sessions):
            task.cancel()


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(main())  # type: ignore[arg-type]


def free(port: int | None, reuse: bool = False) -> bool:
    """Nothing bound there (with `reuse`: nothing listening; closed sessions may linger in TIME_WAIT)."""
    assert port is not None
    with socket.socket() as s:
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def echo(port: int, text: bytes = b"hi\n") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(text)
    got = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    return got


# -- Lifecycle ------------------------------------------------------------------------------------------------


def test_failed_start_stops_what_started_in_reverse_order() -> None:
    done: list[str] = []

    def starter(name: str, fail: bool = False) -> Callable[[], Awaitable[str]]:
        async def start() -> str:
            if fail:
                raise RuntimeError(f"{name} cannot start")
            done.append(f"start {name}")
            return name

        return start

    def stopper(name: str) -> Callable[[], Awaitable[None]]:
        async def stop() -> None:
            done.append(f"stop {name}")

        return stop

    async def main() -> None:
        with pytest.raises(RuntimeError, match="c cannot start"):
            async with Lifecycle() as life:
                assert await life.enter("a", starter("a"), stopper("a")) == "a"
                await life.enter("b", starter("b"), stopper("b"))
                life.push("sync", lambda: done.append("stop sync"))  # a plain function works as a stop too
                await life.enter("c", starter("c", fail=True), stopper("c"))
        assert done == ["start a", "start b", "stop sync", "stop b", "stop a"]
        assert life.names == []
        await life.close()  # idempotent
        assert done[-1] == "stop a" and len(done) == 5

    run(main)


def test_a_failing_or_hanging_stop_does_not_keep_the_others_running() -> None:
    done: list[str] = []

    async def boom() -> None:
        raise OSError("disk gone")

    async def hang() -> None:
        await asyncio.Event().wait()

    async def ok() -> None:
        done.append("first stopped")

    async def main() -> None:
        life = Lifecycle(deadline=0.3)
        life.push("first", ok)
        life.push("hang", hang)
        life.push("boom", boom)
        t0 = time.monotonic()
        await life.close()
        assert done == ["first stopped"] and time.monotonic() - t0 < 3

    run(main)


def test_tasks_of_the_group_are_cancelled_and_awaited() -> None:
    async def main() -> None:
        life = Lifecycle()
        ticks: list[int] = []

        async def forever() -> None:
            while True:
                ticks.append(1)
                await asyncio.sleep(0.01)

        task = life.task(forever(), "ticker")
        await asyncio.sleep(0.05)
        await life.close()
        assert task.cancelled() and ticks
        assert {t for t in asyncio.all_tasks() if t is not asyncio.current_task()} == set()

    run(main)


# -- parse_port / bind_tcp -----------------------------------------------------------------------------------


def test_parse_port() -> None:
    assert parse_port(None, 8443) == 8443 and parse_port("", None) is None and parse_port("  ", 1) == 1
    assert parse_port("off", 8443) is None and parse_port(" OFF ", 1) is None
    assert parse_port("0", None) == 0 and parse_port("65535", None) == 65535 and parse_port(" 443 ", None) == 443
    for bad in ("-1", "65536", "1e3", "0x10", "\uff18\uff14", "4 4", "+5", "5_0", "on", "no", "1.0", "9" * 30):
        with pytest.raises(ValueError, match="not a port"):
            parse_port(bad, None)


def test_bind_tcp_reports_the_real_port_and_leaves_nothing_on_failure() -> None:
    socks = bind_tcp("127.0.0.1", 0)
    port = socks[0].getsockname()[1]
    try:
        assert port != 0 and not free(port)
        with pytest.raises(OSError):
            bind_tcp("127.0.0.1", port)
    finally:
        for s in socks:
            s.close()
    assert free(port)


def test_bind_tcp_gives_every_address_of_a_name_one_port() -> None:
    socks = bind_tcp("localhost", 0)
    try:
        assert socks and len({s.getsockname()[1] for s in socks}) == 1
    finally:
        for s in socks:
            s.close()
    with pytest.raises(OSError):
        bind_tcp("no-such-host.invalid", 0)


# -- Listeners ------------------------------------------------------------------------------------------------


def test_start_announce_list_and_stop() -> None:
    said: list[str] = []

    async def main() -> None:
        reg = Listeners(said.append)
        a = Echo("alpha")
        entry = await reg.start(a)
        port = a.bound_port
        assert port and entry.url == f"echo://127.0.0.1:{port}" and entry.state == "running"
        assert said == [f"portside: alpha listening on echo://127.0.0.1:{port}"]
        assert await echo(port) == b"hi\n"
        assert [e.as_json()["name"] for e in reg.entries()] == ["alpha"]
        assert reg.entries()[0].as_json()["since"].endswith("Z")
        await reg.stop("alpha")
        assert said[-1] == "portside: alpha stopped" and reg.entries() == [] and free(port)
        await reg.stop("alpha")  # unknown now: nothing happens
        assert len(said) == 2

    run(main)


def test_bind_failure_is_listed_and_the_others_keep_serving() -> None:
    said: list[str] = []

    async def main() -> None:
        reg = Listeners(said.append)
        a = Echo("alpha")
        await reg.start(a)
        assert a.bound_port is not None
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", 0))
            squatter.listen(1)
            taken = squatter.getsockname()[1]
            entry = await reg.start(Echo("beta", taken))
            assert entry.state == "failed" and entry.url == f"echo://127.0.0.1:{taken}"
            assert entry.error is not None and "in use" in entry.error.lower()
            assert [(e.name, e.state) for e in reg.entries()] == [("alpha", "running"), ("beta", "failed")]
            assert reg.get("beta") is None and not any("beta listening" in line for line in said)
            assert await echo(a.bound_port) == b"hi\n"
            with pytest.raises(OSError):  # fatal: raised, not listed
                await reg.start(Echo("gamma", taken), fatal=True)
            assert reg.entry("gamma") is None
        entry = await reg.start(Echo("beta", 0))  # recovery: the failed entry is replaced
        assert entry.state == "running" and [e.state for e in reg.entries()] == ["running", "running"]
        await reg.stop_all()

    run(main)


def test_replacing_binds_the_new_port_before_stopping_the_old() -> None:
    said: list[str] = []

    async def main() -> None:
        reg = Listeners(said.append)
        old, other = Echo("alpha"), Echo("omega")
        await reg.start(old)
        await reg.start(other)
        old_port = old.bound_port
        assert old_port is not None and other.bound_port is not None
        new = Echo("alpha")
        await reg.start(new)
        assert new.bound_port is not None and new.bound_port != old_port
        assert said[2:] == ["portside: alpha stopped", f"portside: alpha listening on {new.url}"]
        assert free(old_port) and await echo(new.bound_port) == b"hi\n"
        assert await echo(other.bound_port) == b"hi\n"  # the other listener was not touched
        assert [e.name for e in reg.entries()] == ["omega", "alpha"]
        said.clear()
        await reg.stop_all()  # reverse start order
        assert said == ["portside: alpha stopped", "portside: omega stopped"]

    run(main)


def test_stop_drains_by_the_deadline() -> None:
    async def main() -> None:
        reg = Listeners(lambda _line: None, timeout=0.5)
        slow = Echo("slow", hold=True)
        await reg.start(slow)
        assert slow.bound_port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", slow.bound_port)
        writer.write(b"wait\n")
        await asyncio.sleep(0.1)
        assert slow.sessions
        t0 = time.monotonic()
        await reg.stop("slow")
        assert time.monotonic() - t0 < 3
        await asyncio.sleep(0.05)
        assert not slow.sessions and free(slow.bound_port, reuse=True)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the session was closed
        writer.close()

    run(main)


def test_a_listener_that_ends_by_itself_is_listed_failed() -> None:
    async def main() -> None:
        reg = Listeners(lambda _line: None)
        a = Echo("alpha")
        await reg.start(a)
        a.exited(RuntimeError("accept loop crashed"))
        entry = reg.entry("alpha")
        assert entry is not None and entry.state == "failed" and entry.error == "accept loop crashed"
        assert reg.get("alpha") is None
        await reg.stop("alpha")
        assert reg.entries() == []

    run(main)
