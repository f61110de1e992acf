"""The Yjs update writer: group commit of every room's accepted updates into `_yjs_document`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from portside import log
from portside.core import yjs_store
from portside.core.db import Database
from portside.tools import metrics

logger = log.get("yjs")

Stored = Callable[[BaseException | None], None]  # told once the update is committed (None) or failed


class UpdateWriter:
    """Group commit: updates submitted from every room meanwhile go into one transaction; each submitter is
    told once its row is committed (its relay happens then). Submitting never waits: a reader hands an update
    over and goes on reading, so the updates read in one turn of the event loop are committed together in the
    next. When more than MAX_PENDING updates wait (a database slower than the input), `backlogged` is true and
    readers should pause until `when_drained` calls them back. `after_batch` hooks run after each batch's
    callbacks (the room manager's output flusher writes out the frames the batch relayed).
    """

    MAX_PENDING = 10_000

    def __init__(self, db: Database, batch: int = 1000):
        self.appender = yjs_store.Appender(db)
        self.batch = batch
        self.pending: list[tuple[str, bytes, Stored]] = []
        self.after_batch: list[Callable[[], None]] = []
        self._wake = asyncio.Event()
        self._resumers: list[Callable[[], None]] = []
        self.task: asyncio.Task[None] | None = None
        self._checkpoint: asyncio.Task[None] | None = None
        self.commits = 0

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self._run(), name="portside-yjs-writer")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
            self.task = None
        while self.pending:  # what was accepted is stored before the process goes
            await self._commit(self._take())
        await self._fold()
        if self._checkpoint is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._checkpoint
        self.appender.close()

    def submit(self, room: str, data: bytes, done: Stored) -> None:
        self.pending.append((room, data, done))
        self._wake.set()

    def holds(self, room: str) -> bool:
        """Whether updates of `room` still wait for their commit."""
        return any(item[0] == room for item in self.pending)

    def discard(self, room: str) -> None:
        """Forget the waiting updates of a room whose document is being dropped; their submitters are told
        they were not stored (a `store` waiter must not wait forever)."""
        dropped = [item for item in self.pending if item[0] == room]
        if not dropped:
            return
        self.pending = [item for item in self.pending if item[0] != room]
        gone = RuntimeError(f"the document of {room} was dropped")
        for _, _, done in dropped:
            try:
                done(gone)
            except Exception:
                logger.exception("telling a dropped yjs update's submitter failed")

    @property
    def backlogged(self) -> bool:
        return len(self.pending) > self.MAX_PENDING

    def when_drained(self, resume: Callable[[], None]) -> None:
        """Call `resume` once the backlog is down to half of MAX_PENDING (now, if it already is)."""
        if len(self.pending) <= self.MAX_PENDING // 2:
            resume()
        else:
            self._resumers.append(resume)

    async def drained(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def resume() -> None:
            if not fut.done():
                fut.set_result(None)

        self.when_drained(resume)
        await fut

    async def store(self, room: str, data: bytes) -> None:
        """Store one update and wait for its commit."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def done(exc: BaseException | None) -> None:
            if not fut.done():
                fut.set_result(None) if exc is None else fut.set_exception(exc)

        self.submit(room, data, done)
        await fut

    def _take(self) -> list[tuple[str, bytes, Stored]]:
        items = self.pending[: self.batch]
        del self.pending[: self.batch]
        return items

    async def _run(self) -> None:
        while True:
            if not self.pending:
                self._wake.clear()
                await self._wake.wait()
            await self._commit(self._take())
            for hook in self.after_batch:
                try:
                    hook()
                except Exception:
                    logger.exception("yjs after-batch hook failed")
            if self._resumers and len(self.pending) <= self.MAX_PENDING // 2:
                resumers, self._resumers = self._resumers, []
                for resume in resumers:
                    resume()
            if self.appender.fold_due:  # after the relays: a fold is a few milliseconds the batch need not wait
                await self._fold()
            if self.appender.checkpoint_due and (self._checkpoint is None or self._checkpoint.done()):
                self._checkpoint = asyncio.create_task(self._run_checkpoint(), name="portside-yjs-checkpoint")

    async def _commit(self, items: list[tuple[str, bytes, Stored]]) -> None:
        outcome: BaseException | None = None
        try:
            await self.appender.append([(room, data) for room, data, _ in items])
            self.commits += 1
            metrics.write_batch("yjs", len(items))
        except Exception as exc:
            logger.exception("storing %d yjs updates failed", len(items))
            outcome = exc
        for _, _, done in items:
            try:
                done(outcome)
            except Exception:  # one failing relay must not keep the others from theirs
                logger.exception("relaying a stored yjs update failed")

    async def _fold(self) -> None:
        try:
            await self.appender.fold()
        except Exception:  # the rows stay in the journal, where readers find them; the next fold takes them
            logger.exception("folding the yjs journal failed")

    async def _run_checkpoint(self) -> None:
        """In the background: the writer goes on appending while the log is copied."""
        try:
            await self.appender.checkpoint()
        except Exception:
            logger.exception("checkpoint of the write-ahead log failed")
