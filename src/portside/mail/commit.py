"""Group commit: deliveries of many SMTP sessions written by one writer task, several per transaction.

Each caller hands in its write and waits for ITS outcome: `write`/`submit` return only after the
transaction holding the write has committed (so a `250` still means stored durably), and raise what the
write raised when it failed. The writer takes every write queued so far (up to `MAX_BATCH`) into one
transaction: one BEGIN/COMMIT and one write-lock turn for all of them. A write is either a coroutine
function taking the unit of work (`write`), or an item (`submit`) that the writer's `merge` function stores
together with the other items of the batch (one multi-row statement for all of them instead of several per
item). When a batch fails, its writes are retried one transaction each, so one bad message never fails the
others and a failed write leaves nothing behind (its transaction rolled back).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from portside import log
from portside.core.db import Database, UnitOfWork
from portside.tools import metrics

logger = log.get("mail.commit")
MAX_BATCH = 64
Write = Callable[[UnitOfWork], Awaitable[None]]
T = TypeVar("T")


@dataclass
class _Job:
    write: Write | None  # None: `item` goes through the writer's merge function
    item: Any = None
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommit(Generic[T]):
    def __init__(
        self,
        db: Database,
        max_batch: int = MAX_BATCH,
        merge: Callable[[UnitOfWork, list[T]], Awaitable[None]] | None = None,
    ):
        self.db = db
        self.max_batch = max(1, max_batch)
        self.merge = merge
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self.largest_batch = 0  # the most writes one transaction was tried with (stats, tests)

    async def write(self, write: Write) -> None:
        """Run `write` in a transaction shared with other queued writes; return once it is committed."""
        await self._queued(_Job(write))

    async def submit(self, item: T) -> None:
        """Store `item` through `merge`, with the other items of its batch; return once it is committed."""
        if self.merge is None:
            raise RuntimeError("this GroupCommit has no merge function")
        await self._queued(_Job(None, item))

    async def _queued(self, job: _Job) -> None:
        if self._queue is None or self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._writer(self._queue), name="mail-commit")
        self._queue.put_nowait(job)
        # the write goes on even when this caller is cancelled (a client gone before its 250)
        await asyncio.shield(job.done)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _writer(self, queue: asyncio.Queue[_Job]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            self.largest_batch = max(self.largest_batch, len(batch))
            metrics.write_batch("mail", len(batch))
            try:
                await self._run(batch)
            except asyncio.CancelledError:
                for job in batch:
                    if not job.done.done():
                        job.done.set_exception(RuntimeError("mail writer stopped"))
                raise

    async def _apply(self, uow: UnitOfWork, jobs: list[_Job]) -> None:
        items = [job.item for job in jobs if job.write is None]
        for job in jobs:
            if job.write is not None:
                await job.write(uow)
        if items:
            assert self.merge is not None
            await self.merge(uow, items)

    async def _run(self, batch: list[_Job]) -> None:
        if len(batch) > 1:
            try:
                async with self.db.transaction() as uow:
                    await self._apply(uow, batch)
            except Exception:
                logger.info("a batch of %d deliveries failed; writing them one by one", len(batch))
            else:
                for job in batch:
                    if not job.done.done():
                        job.done.set_result(None)
                return
        for job in batch:
            try:
                async with self.db.transaction() as uow:
                    await self._apply(uow, [job])
            except Exception as exc:
                if not job.done.done():
                    job.done.set_exception(exc)
            else:
                if not job.done.done():
                    job.done.set_result(None)
