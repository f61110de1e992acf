"""The outbox courier: delivers waiting outbox rows as soon as they are committed, on every node.

It sleeps until woken (a committed `outbox` create event, this node's through the after-commit hook and
other nodes' through the bus: `on_events`) or until the earliest retry or lease expiry is due (at most
`IDLE_CHECK` seconds), then claims due rows in batches (leases, see mail.outbox), groups them by recipient
domain and mail server, delivers the groups concurrently (`mail.delivery_concurrency` connections, default
10, each sending up to `PER_CONNECTION` messages) with no transaction open, and records every outcome in one
transaction: sent, retry later (4xx and connection trouble, backoff), or failed (5xx, or the last retry),
the sender then getting a DSN (RFC 3464) in their INBOX.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from portside import log
from portside.core import records
from portside.core.config import CONFIG_TABLE, ConfigStore
from portside.core.db import Database, UnitOfWork
from portside.core.events import Event
from portside.mail import boxes, delivery, dsn, outbox
from portside.mail.outbox import Claimed, Policy
from portside.mail.store import MailStore
from portside.mail.values import Target
from portside.tools import metrics

logger = log.get("mail.courier")
BATCH = 250
ROUNDS = 2
PER_CONNECTION = 50
IDLE_CHECK = 30.0
DEFAULT_CONCURRENCY = 10


@dataclass
class Summary:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0

    def add(self, other: Summary) -> None:
        self.claimed += other.claimed
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed


class Courier:
    def __init__(self, db: Database, store: MailStore, config: ConfigStore, hostname: str):
        self.db, self.store, self.config = db, store, config
        self.hostname = hostname
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._rounds = asyncio.Semaphore(ROUNDS)  # rounds at once: one delivers while the next claims

    # -- life cycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="portside-mail-courier")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    def wake(self) -> None:
        self._wake.set()

    def on_events(self, events: Sequence[Event]) -> None:
        """New outbox rows, and config changes (retry timing, routes), wake the courier."""
        if any((e.table == outbox.TABLE and e.type == "create") or e.table == CONFIG_TABLE for e in events):
            self._wake.set()

    async def on_commit(self, events: list[Event]) -> None:
        self.on_events(events)

    # -- work --------------------------------------------------------------------------------------

    def _settings(self) -> delivery.Settings:
        c = self.config
        return delivery.Settings(
            resolver=c.get("mail.dns_resolver") or "",
            port=c.get_int("mail.delivery_port", delivery.DEFAULT_PORT),
            smarthost=(c.get("mail.smarthost") or "").strip(),
            username=c.get("mail.smarthost_username") or "",
            password=c.get("mail.smarthost_password") or "",
            ca_file=(c.get("mail.delivery_ca_file") or "").strip(),
        )

    async def run_once(self, limit: int = BATCH) -> Summary:
        """Claim and deliver one batch of due rows (the `process_outbox` action calls this too)."""
        async with self._rounds:
            policy = Policy.of(self.config)
            claimed = await outbox.claim(self.db, self.store.model, policy, limit)
            if not claimed:
                return Summary()
            settings = self._settings()
            concurrency = max(1, min(self.config.get_int("mail.delivery_concurrency", DEFAULT_CONCURRENCY), 100))
            groups: dict[tuple[str, str], list[Claimed]] = defaultdict(list)
            unreadable: list[Claimed] = []
            for row in claimed:
                if row.raw is None or "@" not in row.recipient:
                    unreadable.append(row)
                else:
                    groups[(row.ehlo or self.hostname, row.domain)].append(row)
            gate = asyncio.Semaphore(concurrency)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + max(policy.ttl * 0.8, 1.0)

            domains = sorted({domain for _, domain in groups})
            found = await asyncio.gather(*(delivery.route(settings, d) for d in domains))  # one lookup each
            routes = dict(zip(domains, found, strict=True))

            async def one(ehlo: str, domain: str, rows: list[Claimed]) -> list[delivery.Result]:
                batch = [delivery.Message(r.id, r.sender, r.recipient, r.raw or b"") for r in rows]
                done: dict[int, delivery.Result] = {}

                async def run() -> list[delivery.Result]:
                    async with gate:
                        return await delivery.deliver(settings, ehlo, domain, batch, routes[domain], done)

                try:  # the whole round ends well inside the lease: no row is delivered after it expired
                    return await asyncio.wait_for(run(), max(deadline - loop.time(), 0.1))
                except TimeoutError:  # what the server accepted before stays delivered
                    late = delivery.Result(0, False, False, "delivery timed out")
                    return [done.get(m.key) or dataclasses.replace(late, key=m.key) for m in batch]

            jobs = []
            for (ehlo, domain), rows in groups.items():
                for start in range(0, len(rows), PER_CONNECTION):
                    jobs.append(one(ehlo, domain, rows[start : start + PER_CONNECTION]))
            results = [r for chunk in await asyncio.gather(*jobs) for r in chunk]
            results += [
                delivery.Result(r.id, False, True, "554 5.6.0 stored message cannot be read") for r in unreadable
            ]
            return await self._settle(policy, {r.id: r for r in claimed}, results)

    async def _settle(self, policy: Policy, rows: dict[int, Claimed], results: list[delivery.Result]) -> Summary:
        summary = Summary(claimed=len(rows))
        model = self.store.model
        async with self.db.transaction() as uow:
            delivered = [res.key for res in results if res.ok]
            if delivered:
                await outbox.mark_sent(uow, model, delivered)
                summary.sent = len(delivered)
            for res in results:
                row = rows[res.key]
                if res.ok:
                    continue
                final = await outbox.mark_failure(uow, model, policy, row, res.error, permanent=res.permanent)
                if not final:
                    summary.retried += 1
                    continue
                summary.failed += 1
                await self._bounce(uow, row, res)
        metrics.mail_deliveries(sent=summary.sent, retried=summary.retried, failed=summary.failed)
        return summary

    async def _bounce(self, uow: UnitOfWork, row: Claimed, res: delivery.Result) -> None:
        """A DSN into the sender's INBOX, when the sender has an account here."""
        model = self.store.model
        account = await boxes.account_by_address(uow.conn, model, row.sender)
        if account is None:
            logger.info("outbox row %s failed; sender %s has no local account for the bounce", row.ref, row.sender)
            return
        inbox = await boxes.mailbox_by_name(uow.conn, model, account.id, boxes.INBOX)
        if inbox is None:
            await boxes.ensure_standard(uow, model, account.id)
            inbox = await boxes.mailbox_by_name(uow.conn, model, account.id, boxes.INBOX)
        if inbox is None:
            return
        raw = dsn.bounce(
            reporting_mta=row.ehlo or self.hostname,
            sender=row.sender,
            recipient=row.recipient,
            error=res.error,
            permanent=res.permanent,
            original=row.raw or b"",
        )
        await self.store.deliver(uow, [Target(inbox, (), row.sender)], raw)

    async def _loop(self) -> None:
        while True:
            self._wake.clear()  # a wake-up from here on (a commit during this round) is not lost
            try:
                await self._drain()
                wait = await self._idle_time()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("outbox delivery round failed")
                wait = 5.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _drain(self) -> None:
        """Rounds until nothing is due, `ROUNDS` at a time (leases keep their rows apart)."""

        async def worker(first: int) -> None:
            limit = first
            while (await self.run_once(limit)).claimed:
                limit = BATCH

        # a small first round gets the first messages out at once; the other round takes a full batch
        await asyncio.gather(worker(PER_CONNECTION), *(worker(BATCH) for _ in range(ROUNDS - 1)))

    async def _idle_time(self) -> float:
        due = await outbox.next_due(self.db, self.store.model, Policy.of(self.config))
        if due is None:
            return IDLE_CHECK
        seconds = (due - records.now()).total_seconds() + 0.01
        return min(max(seconds, 0.05), IDLE_CHECK)
