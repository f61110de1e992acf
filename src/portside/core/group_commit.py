"""Group commit for SQLite: concurrent units of work share one transaction and one durable commit.

SQLite has one writer per database, and a durable commit (`synchronous=FULL`) costs an fsync. Writers of
this process therefore take turns (`turn`), and a turn joins the open *batch*: one connection holding
`BEGIN IMMEDIATE`, in which each unit of work runs inside its own SAVEPOINT. The batch's statements run on
the loop's thread and its COMMIT in a worker thread (`loopsql.py`). A unit of work that raises
rolls back to its savepoint and fails alone (its caller gets its own error, e.g. a unique-constraint 409);
one that succeeds releases its savepoint and waits for the batch's commit. The turn that finds nobody
else waiting commits the batch (so a lone writer commits at once and never waits for a timer), as does the
turn that fills the batch (`max_rows`) or finds it open for `max_wait` seconds. Writers that arrive while
a commit runs queue for the next batch: the batch size follows the load.

After the commit the batch's events go to the after-commit hooks in commit order (one call per batch; as
before, the hooks run after the turn is handed on, so they may write themselves, and two batches' hooks may
interleave: the bus orders per row by offset), then each unit's own `on_commit` callbacks run, and only then
do the units of work return:
a caller that answers after its unit of work has returned answers for a durable, published write. A commit
that fails fails every unit of work of the batch (none of them was answered yet).

Writes outside units of work (`Database.write_turn`, `ddl_lock`, exclusive transactions) take the same turn
and commit the open batch first (`exclusive_turn`).

The write connection outlives its batch: after a clean COMMIT (or the ROLLBACK of an empty batch) it waits,
outside any transaction and holding no lock, for the next batch's `BEGIN IMMEDIATE` (a pool check-out, the
pool's reset ROLLBACK and a check-in per batch were ~5% of a create's CPU). After a failed COMMIT or ROLLBACK
it is closed for good (the transaction may still be open in it) and the next batch opens a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from portside import log
from portside.core.loopsql import LoopConnection

if TYPE_CHECKING:
    from portside.core.db import UnitOfWork

logger = log.get("db")
BATCH_ROWS = 128  # units of work per commit at most
BATCH_WAIT = 0.05  # seconds a batch may stay open while writers keep arriving


@dataclass(eq=False)
class Batch:
    conn: LoopConnection
    opened: float
    done: asyncio.Future[None]
    members: list[UnitOfWork] = field(default_factory=list)
    broken: BaseException | None = None  # the transaction cannot go on (a savepoint could not be undone)


Publish = Callable[["list[UnitOfWork]"], Awaitable[None]]


class GroupCommit:
    """One process's write turns and open batch on one SQLite database."""

    def __init__(
        self, engine: sa.Engine, publish: Publish, max_rows: int = BATCH_ROWS, max_wait: float = BATCH_WAIT
    ) -> None:
        self.engine = engine
        self.publish = publish  # after-commit work for the committed units of work, in commit order
        self.max_rows = max_rows
        self.max_wait = max_wait
        self.lock = asyncio.Lock()  # the write turn (FIFO)
        self._batch: Batch | None = None
        self._idle: LoopConnection | None = None  # the write connection between batches (clean, no transaction)
        self._queued = 0  # units of work waiting for a turn
        self._tasks: set[asyncio.Task[None]] = set()
        self.commits = 0
        self.units = 0

    @asynccontextmanager
    async def unit(self, make: Callable[[AsyncConnection], UnitOfWork]) -> AsyncIterator[UnitOfWork]:
        """A unit of work in the open batch; returns after the batch committed and published."""
        self._queued += 1
        try:
            await self.lock.acquire()
        except BaseException:
            self._queued -= 1
            self._rescue()
            raise
        self._queued -= 1
        try:
            batch = self._batch or await self._open()
        except BaseException:
            self.lock.release()
            raise
        body_failed = False
        try:
            savepoint = await batch.conn.begin_nested()
            uow = make(batch.conn.as_async())
            try:
                yield uow
            except BaseException:
                body_failed = True
                try:
                    await savepoint.rollback()
                except BaseException as undo:  # the transaction is unusable: the whole batch fails
                    batch.broken = undo
                raise
            await savepoint.commit()
            batch.members.append(uow)
        except BaseException as exc:
            if not body_failed and batch.broken is None:  # a SAVEPOINT statement failed: trust nothing
                batch.broken = exc
            # a failed unit returns once its batch is over too: whoever reacts to the error (another process,
            # a retry) never finds this process still holding the write lock
            with contextlib.suppress(Exception):
                if self._leave(batch):
                    await self._end(batch)
                await asyncio.shield(batch.done)
            raise
        if self._leave(batch):
            await self._end(batch)  # in this task: its caller answers before the hub fans the events out
        await asyncio.shield(batch.done)

    def _leave(self, batch: Batch) -> bool:
        """End this turn: True when the caller must end the batch now (nobody else waits, or it is full, old or
        broken), else the turn is handed on with the batch still open."""
        full = len(batch.members) >= self.max_rows or time.monotonic() - batch.opened >= self.max_wait
        if self._queued == 0 or full or batch.broken is not None:
            return True
        self.lock.release()
        return False

    async def _open(self) -> Batch:
        conn, self._idle = self._idle or LoopConnection(self.engine.connect()), None
        try:
            # explicit: a SAVEPOINT outside a transaction would start one that its RELEASE commits
            await conn.begin_immediate()
        except BaseException:
            await conn.close()
            raise
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved even if nobody waits
        self._batch = Batch(conn, time.monotonic(), done)
        return self._batch

    async def _end(self, batch: Batch) -> None:
        """Commit (or roll back a broken) batch, hand the turn on, publish, then let its units of work return.
        A caller cancelled while the COMMIT runs in its thread leaves the rest to `_finish`."""
        error = await self._commit(batch, orphaned=self._finish)  # cancelled: `_finish` takes over
        self.lock.release()
        await self._announce(batch, error)

    async def _finish(self, batch: Batch, error: BaseException | None) -> None:
        self.lock.release()
        await self._announce(batch, error)

    def _commit(
        self, batch: Batch, orphaned: Callable[[Batch, BaseException | None], Awaitable[None]]
    ) -> asyncio.Future[BaseException | None]:
        """End the batch's transaction: the COMMIT (an fsync) in a worker thread, which hands its outcome to the
        loop in one call (`_settle`); a rollback of a broken or empty batch at once. The future resolves to the
        batch's error or None. Should its waiter be cancelled meanwhile, `orphaned(batch, error)` runs instead
        once the COMMIT is back (in a task of its own)."""
        self._batch = None
        loop = asyncio.get_running_loop()
        landed: asyncio.Future[BaseException | None] = loop.create_future()
        if batch.broken is None and batch.members:
            commit = batch.conn.sync_connection.commit

            def work() -> None:  # in the worker thread
                error: BaseException | None = None
                try:
                    commit()
                except BaseException as exc:
                    error = exc
                with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left to tell
                    loop.call_soon_threadsafe(self._settle, landed, batch, error, orphaned)

            loop.run_in_executor(None, work)
            return landed
        error: BaseException | None = batch.broken
        try:
            batch.conn.sync_connection.rollback()
        except BaseException as exc:
            error = error or exc
        self._settle(landed, batch, error, orphaned)
        return landed

    def _settle(
        self,
        landed: asyncio.Future[BaseException | None],
        batch: Batch,
        error: BaseException | None,
        orphaned: Callable[[Batch, BaseException | None], Awaitable[None]],
    ) -> None:
        """The batch's transaction is over (on the loop): keep or drop the connection, tell the waiter."""
        if error is None and batch.members:
            self.commits += 1
            self.units += len(batch.members)
        if error is None and self._idle is None:
            self._idle = batch.conn  # kept for the next batch (the turn is still held: nobody else sets it)
        else:
            self._discard(batch.conn, dirty=error is not None)
        if landed.cancelled():
            self._spawn(orphaned(batch, error))
        else:
            landed.set_result(error)

    def _discard(self, conn: LoopConnection, *, dirty: bool = False) -> None:
        """Hand the connection back to the pool; `dirty` (its COMMIT or ROLLBACK failed: SQLite may still hold
        the transaction open, e.g. after a deferred constraint refused the COMMIT, and the pool's reset does not
        always roll it back) closes the DB-API connection instead, which ends the transaction for sure."""
        try:
            if dirty:
                conn.sync_connection.invalidate()
            conn.sync_connection.close()
        except Exception:
            logger.exception("closing the write connection failed")

    async def _announce(self, batch: Batch, error: BaseException | None) -> None:
        if error is not None:
            batch.done.set_exception(error if isinstance(error, Exception) else RuntimeError(str(error)))
            return
        try:
            if batch.members:
                await self.publish(batch.members)
        finally:
            batch.done.set_result(None)

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _rescue(self) -> None:
        """A writer gave up waiting: if it was the one the open batch was left for, commit the batch now."""
        batch = self._batch
        if batch is not None and self._queued == 0 and not self.lock.locked():
            self._spawn(self._flush(batch))

    async def _flush(self, batch: Batch) -> None:
        await self.lock.acquire()
        if self._batch is batch:
            await self._end(batch)
        else:
            self.lock.release()

    @asynccontextmanager
    async def exclusive_turn(self) -> AsyncIterator[None]:
        """The write turn for work outside units of work: the open batch is committed first."""
        async with self.lock:
            batch = self._batch
            if batch is not None:  # published outside the turn: a hook may want to write
                error = await self._commit(batch, orphaned=self._announce)
                self._spawn(self._announce(batch, error))
            yield

    async def close(self) -> None:
        """Commit whatever is open (at shutdown)."""
        if self._batch is not None:
            await self._flush(self._batch)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        idle, self._idle = self._idle, None
        if idle is not None:
            self._discard(idle)
