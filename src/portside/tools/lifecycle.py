"""Life cycle of a server process: parts that start in order and stop in reverse, and named listeners.

`Lifecycle` is the task group every service and listener starts in: each successful start registers its
stop; when a later start fails (or the process is told to stop) what already started is stopped in reverse
order, each stop bounded by a deadline. `Listener` is one named, typed server socket (bind — port 0 reports
the real port —, serve, drain, stop by a deadline) and `Listeners` the registry the runtime owns: it
announces `portside: NAME listening on URL`, lists running and failed listeners for `/_ports`, and
replaces or stops one listener without touching the others. A new protocol plugs in by subclassing
`Listener` (a `serve`/`drain` pair) and giving it a name.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import signal
import socket
import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from portside import log

logger = log.get("lifecycle")
T = TypeVar("T")
Stop = Callable[[], Awaitable[None] | None]
TlsMode = Literal["none", "starttls", "implicit"]
State = Literal["running", "failed"]
DEADLINE = 5.0  # seconds one part may take to stop (drain included) before it is forced
OFF = "off"


# -- the task group ------------------------------------------------------------------------------------


class Lifecycle:
    """Parts started in order, stopped in reverse; `close()` is idempotent and never raises."""

    def __init__(self, deadline: float = DEADLINE):
        self.deadline = deadline
        self._stops: list[tuple[str, Stop, bool]] = []

    def push(self, name: str, stop: Stop, *, bounded: bool = True) -> None:
        """Register the stop of something that has just started; `bounded=False` for a stop that keeps its
        own deadlines (the listener registry stops each listener within its own)."""
        self._stops.append((name, stop, bounded))

    async def enter(
        self, name: str, start: Callable[[], Awaitable[T]], stop: Callable[[], Awaitable[None] | None]
    ) -> T:
        result = await start()
        self.push(name, stop)
        return result

    def task(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A background task owned by the group: cancelled and awaited when the group closes."""
        task = asyncio.create_task(coro, name=name)

        async def cancel() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        self.push(name, cancel)
        return task

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self._stops]

    async def close(self) -> None:
        while self._stops:
            name, stop, bounded = self._stops.pop()
            try:
                result = stop()
                if result is not None:
                    await (asyncio.wait_for(result, self.deadline) if bounded else result)
            except TimeoutError:
                logger.warning("%s did not stop within %.0f s", name, self.deadline)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("stopping %s failed", name)

    async def __aenter__(self) -> Lifecycle:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


@contextlib.contextmanager
def stop_signals(on_signal: Callable[[], None]) -> Iterator[None]:
    """SIGTERM and SIGINT call `on_signal` once (graceful stop); a second signal acts as if unhandled.
    Outside the main thread (where signals cannot be handled) nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    sigs = (signal.SIGTERM, signal.SIGINT)

    def handle() -> None:
        for s in sigs:
            loop.remove_signal_handler(s)
        on_signal()

    for s in sigs:
        loop.add_signal_handler(s, handle)
    try:
        yield
    finally:
        for s in sigs:
            loop.remove_signal_handler(s)


# -- sockets -------------------------------------------------------------------------------------------


def bind_tcp(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for `host` (every address it resolves to) on `port`; port 0 picks one free port
    for all of them. Raises OSError, leaving nothing open."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    out: list[socket.socket] = []
    try:
        seen: set[tuple[Any, ...]] = set()
        for family, kind, proto, _, addr in infos:
            if (family, addr) in seen:
                continue
            seen.add((family, addr))
            if out and port == 0:  # the other addresses of the name share the first one's port
                addr = (addr[0], out[0].getsockname()[1], *addr[2:])
            sock = socket.socket(family, kind, proto)
            out.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(addr)
            except OSError as exc:
                if exc.errno != errno.EADDRNOTAVAIL or len(infos) == 1:
                    raise
                out.pop().close()  # e.g. ::1 of `localhost` on a host without IPv6: the other addresses serve
                continue
            sock.listen(1024)
            sock.setblocking(False)
        if not out:
            raise OSError(errno.EADDRNOTAVAIL, f"no address of {host!r} can be bound")
    except BaseException:
        for sock in out:
            sock.close()
        raise
    return out


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def parse_port(value: str | None, default: int | None) -> int | None:
    """A listener port config value: absent or "" = `default`, `off` = no listener, else 0..65535.

    Raises ValueError with a sentence for anything else."""
    text = (value or "").strip().lower()
    if not text:
        return default
    if text == OFF:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 5 and int(text) <= 65535):
        raise ValueError(f"{value!r} is not a port (0-65535), empty or {OFF!r}")
    return int(text)


# -- listeners -----------------------------------------------------------------------------------------


class Listener(ABC):
    """One named server socket. Subclasses implement `serve` (start accepting on `self.sockets`, return once
    accepting) and `drain` (stop accepting, end sessions by `deadline`, a `loop.time()` value)."""

    def __init__(self, name: str, protocol: str, host: str, port: int, tls: TlsMode = "none"):
        self.name, self.protocol, self.host, self.port, self.tls = name, protocol, host, port, tls
        self.sockets: list[socket.socket] = []
        self._bound: int | None = None
        self.on_exit: Callable[[Listener, BaseException | None], None] | None = None  # set by the registry

    @property
    def bound_port(self) -> int | None:
        """The real port once bound (kept after the sockets close, for the log and `/_ports`)."""
        if self._bound is None and self.sockets:
            self._bound = int(self.sockets[0].getsockname()[1])
        return self._bound

    @property
    def url(self) -> str:
        return f"{self.protocol}://{url_host(self.host)}:{self.bound_port or self.port}"

    async def bind(self) -> None:
        """Take the port (before anything is served on it); raises OSError."""
        if not self.sockets and self._bound is None:  # a listener is bound once; a new one takes a new port
            self.sockets = await asyncio.to_thread(bind_tcp, self.host, self.port)

    @abstractmethod
    async def serve(self) -> None: ...

    @abstractmethod
    async def drain(self, deadline: float) -> None: ...

    def close(self) -> None:
        _ = self.bound_port
        for sock in self.sockets:
            sock.close()
        self.sockets = []

    async def stop(self, timeout: float = DEADLINE) -> None:
        """Drain until the deadline, then close whatever is left; idempotent."""
        try:
            await asyncio.wait_for(self.drain(asyncio.get_running_loop().time() + timeout), timeout + 1)
        except TimeoutError:
            logger.warning("%s did not drain within %.0f s", self.name, timeout)
        finally:
            self.close()

    def exited(self, error: BaseException | None) -> None:
        """Subclasses call this when serving ends by itself (not through `stop`)."""
        if self.on_exit is not None:
            self.on_exit(self, error)


@dataclass(frozen=True)
class PortEntry:
    name: str
    protocol: str
    url: str
    tls: TlsMode
    since: dt.datetime
    state: State = "running"
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "protocol": self.protocol,
            "url": self.url,
            "tls": self.tls,
            "since": self.since.isoformat().replace("+00:00", "Z"),
            "state": self.state,
            "error": self.error,
        }


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def announce(line: str) -> None:
    print(line, flush=True)


class Listeners:
    """The runtime's listeners by name, in start order: running ones and the ones that failed to start."""

    def __init__(self, say: Callable[[str], None] = announce, timeout: float = DEADLINE):
        self.say, self.timeout = say, timeout
        self._live: dict[str, Listener] = {}
        self._entries: dict[str, PortEntry] = {}
        self._lock = asyncio.Lock()

    def entries(self) -> list[PortEntry]:
        return list(self._entries.values())

    def get(self, name: str) -> Listener | None:
        return self._live.get(name)

    def entry(self, name: str) -> PortEntry | None:
        return self._entries.get(name)

    async def start(self, listener: Listener, *, fatal: bool = False) -> PortEntry:
        """Bind (if not yet bound) and serve `listener`, replacing a listener of the same name: the new one
        takes its port first, then the old one stops. A failure is logged and listed (`state: failed`) and
        the old one is stopped too; with `fatal` the error is raised instead of listed."""
        async with self._lock:
            old = self._live.pop(listener.name, None)
            try:
                await listener.bind()
                if old is not None:
                    await self._stop(old)
                    old = None
                listener.on_exit = self._exited
                await listener.serve()
            except BaseException as exc:  # cancelled too: neither socket may stay open
                listener.on_exit = None
                await listener.stop(0)
                if old is not None:
                    await self._stop(old)
                if fatal or not isinstance(exc, Exception):
                    self._entries.pop(listener.name, None)
                    raise
                error = str(exc) or type(exc).__name__
                logger.warning("%s cannot listen on %s: %s", listener.name, listener.url, error)
                entry = PortEntry(listener.name, listener.protocol, listener.url, listener.tls, _now(), "failed", error)
                self._entries[listener.name] = entry
                return entry
            self._live[listener.name] = listener
            entry = PortEntry(listener.name, listener.protocol, listener.url, listener.tls, _now())
            self._entries.pop(listener.name, None)  # a replaced listener moves to the end of the list
            self._entries[listener.name] = entry
            self.say(f"portside: {listener.name} listening on {listener.url}")
            return entry

    async def fail(self, listener: Listener, error: str) -> PortEntry:
        """List `listener` as failed without trying it (its configuration is unusable); a running listener of
        that name stops."""
        async with self._lock:
            old = self._live.pop(listener.name, None)
            if old is not None:
                await self._stop(old)
            logger.warning("%s cannot listen: %s", listener.name, error)
            entry = PortEntry(listener.name, listener.protocol, listener.url, listener.tls, _now(), "failed", error)
            self._entries[listener.name] = entry
            return entry

    async def stop(self, name: str) -> None:
        """Stop and forget `name` (running or failed); nothing happens for an unknown name."""
        async with self._lock:
            self._entries.pop(name, None)
            listener = self._live.pop(name, None)
            if listener is not None:
                await self._stop(listener)

    async def stop_all(self) -> None:
        """Every listener, in reverse start order."""
        for name in reversed(list(self._entries)):
            await self.stop(name)

    async def _stop(self, listener: Listener) -> None:
        listener.on_exit = None
        await listener.stop(self.timeout)
        self.say(f"portside: {listener.name} stopped")

    def _exited(self, listener: Listener, error: BaseException | None) -> None:
        """A listener ended on its own: it is listed as failed until it is started or stopped again."""
        if self._live.get(listener.name) is not listener:
            return
        del self._live[listener.name]
        listener.close()
        why = str(error) if error is not None else "stopped serving"
        logger.warning("%s failed: %s", listener.name, why)
        self._entries[listener.name] = PortEntry(
            listener.name, listener.protocol, listener.url, listener.tls, _now(), "failed", why
        )
