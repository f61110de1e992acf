"""A small pool of worker processes for the CPU-heavy part of receiving mail (`analysis.analyse`).

The SMTP server runs in one process and one event loop; checking (SPF, DKIM, DMARC), parsing and encoding
a message there holds the loop's interpreter for every session. The pool moves that work to `size` worker
processes (`python -m portside.mail.worker`, spawned fresh: nothing of the server's state is copied), each
connected by a socket pair: the loop writes a job (the message bytes and the envelope) and reads back a
small result, without blocking. Jobs go to the worker with the fewest pending ones.

- Start-up: `start()` spawns the workers without waiting for them to finish importing (jobs sent meanwhile
  wait in the socket). The SMTP listeners start the pool with the first listener and close it with the last.
- A worker that dies (or does not answer within `JOB_TIMEOUT`, then it is killed) fails the jobs it held
  with `WorkerFailed` (the SMTP edge answers `451 4.3.0`) and is replaced for the next job.
- `close()` closes the sockets (a worker exits when its socket ends), waits for the processes and kills the
  ones that do not exit: no worker outlives the pool. A worker also exits when the server dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path
from typing import cast

from portside import log
from portside.mail.analysis import Analysis, Job, analyse

logger = log.get("mail.workers")
JOB_TIMEOUT = 120.0  # seconds: every check bounds its DNS time well below this
EXIT_WAIT = 5.0
RETRY_AFTER = 5.0  # seconds after a worker could not be started
HEAD = 12


class WorkerFailed(Exception):
    """The worker running a job died, hung or could not run it."""


def default_size() -> int:
    return min(2, os.cpu_count() or 1)


class _Worker(asyncio.Protocol):
    """The loop's end of one worker process."""

    def __init__(self, proc: subprocess.Popen[bytes]):
        self.proc = proc
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, asyncio.Future[Analysis]] = {}
        self.buffer = bytearray()
        self.alive = True
        self.ids = itertools.count(1)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not its subclasses

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        while len(buf) >= HEAD:
            size = int.from_bytes(buf[:4], "big")
            if len(buf) < HEAD + size:
                break
            job_id = int.from_bytes(buf[4:HEAD], "big")
            payload = bytes(buf[HEAD : HEAD + size])
            del buf[: HEAD + size]
            fut = self.pending.pop(job_id, None)
            if fut is None or fut.done():  # its caller gave up (client gone, timeout)
                continue
            try:
                ok, value = pickle.loads(payload)
            except Exception as exc:
                fut.set_exception(WorkerFailed(f"unreadable answer: {exc}"))
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(WorkerFailed(str(value)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(WorkerFailed(f"mail worker {self.pid} ended"))

    def submit(self, job: Job) -> asyncio.Future[Analysis]:
        fut: asyncio.Future[Analysis] = asyncio.get_running_loop().create_future()
        if not self.alive or self.transport is None:
            fut.set_exception(WorkerFailed("mail worker not running"))
            return fut
        job_id = next(self.ids)
        data = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        self.pending[job_id] = fut
        self.transport.write(len(data).to_bytes(4, "big") + job_id.to_bytes(8, "big") + data)
        return fut

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        if self.transport is not None:
            self.transport.close()


class WorkerPool:
    def __init__(self, size: int | None = None):
        self.size = default_size() if size is None else max(0, size)
        self._workers: list[_Worker | None] = []
        self._starting: dict[int, asyncio.Task[_Worker | None]] = {}
        self._reaping: dict[int, asyncio.Future[None]] = {}  # pid -> collecting that ended worker process
        self.running = False
        self.users = 0  # listeners holding the pool open (`acquire` / `release`)
        self._retry_at = 0.0  # after a failed start, no new one before this loop time

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self._workers if w is not None and w.alive]

    async def acquire(self) -> None:
        """A listener starts: the first one starts the workers."""
        self.users += 1
        await self.start()

    async def release(self) -> None:
        """A listener stopped: the last one closes the pool."""
        self.users = max(0, self.users - 1)
        if self.users == 0:
            await self.close()

    async def start(self) -> None:
        if self.running or self.size == 0:
            return
        self.running = True
        self._workers = [None] * self.size
        for slot in range(self.size):
            self._workers[slot] = await self._spawn()

    async def _spawn(self) -> _Worker | None:
        loop = asyncio.get_running_loop()
        if loop.time() < self._retry_at:
            return None
        ours, theirs = socket.socketpair()
        proc: subprocess.Popen[bytes] | None = None
        try:
            proc = await asyncio.to_thread(_popen, theirs.fileno())
            theirs.close()
            _, worker = await loop.create_unix_connection(lambda: _Worker(proc), sock=ours)
            return worker
        except Exception:
            logger.exception("starting a mail worker failed; checking in threads meanwhile")
            ours.close()
            theirs.close()
            if proc is not None:  # it ends at once: its socket is closed
                self._reap(proc)
            self._retry_at = loop.time() + RETRY_AFTER
            return None

    async def _worker(self) -> _Worker | None:
        """The live worker with the fewest pending jobs (a dead one is replaced first)."""
        best: _Worker | None = None
        for slot in range(len(self._workers)):
            w = self._workers[slot]
            if w is None or not w.alive:
                if w is not None:
                    self._reap(w.proc)
                w = await self._respawn(slot)
                if not self.running:  # closed meanwhile
                    return None
                self._workers[slot] = w
            if w is not None and (best is None or len(w.pending) < len(best.pending)):
                best = w
        return best

    async def _respawn(self, slot: int) -> _Worker | None:
        task = self._starting.get(slot)
        if task is None:  # sessions arriving together share one new worker
            task = self._starting[slot] = asyncio.ensure_future(self._spawn())
            task.add_done_callback(lambda _t: self._starting.pop(slot, None))
        worker = await asyncio.shield(task)
        if not self.running and worker is not None:
            worker.kill()
            return None
        return worker

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.pid not in self._reaping:
            task = self._reaping[proc.pid] = asyncio.ensure_future(asyncio.to_thread(_collect, proc))
            task.add_done_callback(lambda _t: self._reaping.pop(proc.pid, None))

    async def run(self, job: Job) -> Analysis:
        """`analyse(job)` in a worker (in a thread while no worker can be started); raises WorkerFailed when
        the worker holding it died or hung."""
        worker = await self._worker() if self.running else None
        if worker is None:
            return await asyncio.to_thread(analyse, job)
        fut = worker.submit(job)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), JOB_TIMEOUT)
        except TimeoutError:
            logger.warning("mail worker %d took over %.0f s for one message: replaced", worker.pid, JOB_TIMEOUT)
            worker.kill()
            raise WorkerFailed("mail worker timed out") from None

    async def close(self) -> None:
        """Stop every worker (their pending jobs fail) and wait for the processes to exit."""
        self.running = False
        for task in list(self._starting.values()):
            with contextlib.suppress(Exception):
                extra = await task
                if extra is not None:
                    self._workers.append(extra)
        workers = [w for w in self._workers if w is not None]
        self._workers = []
        for w in workers:
            if w.transport is not None:
                w.transport.close()  # end of stream: the worker finishes and exits
        if workers:
            await asyncio.to_thread(_wait_all, [w.proc for w in workers])
        reaping, self._reaping = list(self._reaping.values()), {}
        await asyncio.gather(*reaping, return_exceptions=True)

    async def retire(self) -> None:
        """Close once the jobs already given to the workers are done (no new ones come: replaced by a new pool)."""
        held = [f for w in self._workers if w is not None for f in w.pending.values()]
        if held:
            await asyncio.wait(held, timeout=JOB_TIMEOUT)
        await self.close()


def _popen(fd: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    # the worker imports portside from where this process did (a source tree on PYTHONPATH or site-packages)
    root = str(Path(__file__).resolve().parent.parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", "portside.mail.worker", str(fd)],
        pass_fds=(fd,),
        stdin=subprocess.DEVNULL,
        env=env,
    )


def _collect(proc: subprocess.Popen[bytes]) -> None:
    """Collect a worker process that ended (or kill one whose socket ended while it lives on)."""
    try:
        proc.wait(EXIT_WAIT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            proc.kill()
        proc.wait()


def _wait_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        try:
            proc.wait(EXIT_WAIT)
        except subprocess.TimeoutExpired:
            logger.warning("mail worker %d did not exit: killed", proc.pid)
            proc.kill()
            proc.wait()
