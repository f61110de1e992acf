"""The certificate service: `certificate` rows -> TLS contexts chosen by SNI, kept in step with the rows.

- `ensure(hostname)`: the row's certificate; without a usable one a self-signed certificate is generated
  and stored (private key encrypted with `encryption.secret`).
- `server_context()`: the listener's SSLContext. Its SNI callback picks the context of the row whose
  hostname equals the server name, else the listener's configured host name's (never a new row for a
  name a client made up). Contexts are built off the event loop and swapped in whole.
- `on_events` / `refresh`: any change to `certificate` (this node's or another's) rebuilds the contexts
  whose row changed; the next handshake uses them, no restart.
- renewal: a task checks every `certs.renew_check_seconds` (3600) and renews certificates with fewer than
  `certs.renew_before_days` (30) left: ACME ones through ACME again, self-signed ones by regeneration.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from portside import log
from portside.certs import acme_client
from portside.certs import x509 as certx
from portside.certs.challenge_store import ChallengeStore
from portside.core import db_errors, records
from portside.core.catalog import Catalog
from portside.core.config import ConfigStore
from portside.core.db import Database, UnitOfWork
from portside.core.db_errors import Fault
from portside.core.events import Event
from portside.tools import crypto

logger = log.get("certs")
TABLE = "certificate"
MAX_ROWS = 10_000
ACCOUNT_KEY = "acme.account_key"
ACME_LOCK_TIMEOUT = 300


class CertificateService:
    def __init__(self, db: Database, catalog: Catalog, config: ConfigStore, fallback: str):
        self.db, self.catalog, self.config = db, catalog, config
        self.fallback = certx.normalize_hostname(fallback)
        self.challenges = ChallengeStore(db)  # pending HTTP-01 challenges, served by every node
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._materials: dict[str, certx.Material] = {}
        self._stamps: dict[str, tuple[Any, ...]] = {}
        self._reload_lock = asyncio.Lock()
        self._dirty = False
        self._task: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._acme_lock = asyncio.Lock()

    # -- TLS ---------------------------------------------------------------------------------------

    def server_context(self, default: str | None = None) -> ssl.SSLContext:
        """A context choosing the certificate by SNI; without SNI (or an unknown name) `default`'s, else the
        fallback host name's (a mail listener passes its own host name)."""
        ctx = certx.base_context()
        if default is None:
            ctx.sni_callback = self._sni
        else:
            ctx.sni_callback = lambda obj, name, c: self._sni(obj, name, c, default)
        return ctx

    def _sni(
        self, sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext, default: str | None = None
    ) -> int | None:
        name = (server_name or "").lower().rstrip(".")
        chosen = (
            self._contexts.get(name) or (default and self._contexts.get(default)) or self._contexts.get(self.fallback)
        )
        if chosen is None:
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        sslobj.context = chosen
        return None

    def material(self, hostname: str) -> certx.Material | None:
        """The certificate currently served for `hostname` (exact row match; None without one)."""
        return self._materials.get(hostname)

    # -- life cycle --------------------------------------------------------------------------------

    async def start(self, *, ensure_fallback: bool) -> None:
        """Load the rows (and, for a TLS listener, make sure its host name has a certificate), start renewal."""
        if ensure_fallback:
            await self.ensure(self.fallback)
        await self.reload()
        self._renewer = asyncio.create_task(self._renew_loop(), name="portside-cert-renewal")

    async def stop(self) -> None:
        for task in (self._renewer, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._renewer = self._task = None

    # -- change events -----------------------------------------------------------------------------

    def on_events(self, events: Sequence[Event]) -> None:
        """Another node's (or an unawaited) change: rebuild in the background, coalescing bursts."""
        if not any(e.table == TABLE for e in events):
            return
        self._dirty = True
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._reload_loop(), name="portside-cert-reload")

    async def refresh(self, events: Sequence[Event]) -> None:
        """This node's committed change: rebuilt before the write's response, so the next handshake sees it."""
        if any(e.table == TABLE for e in events):
            try:
                await self.reload()
            except Exception:  # the write is committed: never fail its response; the bus retries the reload
                logger.exception("certificate reload failed")
                self.on_events(events)

    async def _reload_loop(self) -> None:
        while self._dirty:
            self._dirty = False
            try:
                await self.reload()
            except Exception:
                logger.exception("certificate reload failed")

    # -- rows --------------------------------------------------------------------------------------

    @property
    def _secret(self) -> str:
        return self.config.get("encryption.secret") or ""

    def _columns(self) -> list[Any]:
        t = self.catalog.model.table(TABLE).sa
        return [t.c.id, t.c.hostname, t.c.issuer, t.c.certificate_pem, t.c.root_certificate, t.c.private_key_pem]

    def _decode(self, row: Any) -> certx.Material:
        host = certx.normalize_hostname(row.hostname)
        if not row.certificate_pem or not row.private_key_pem:
            raise certx.CertError("no certificate yet")
        try:
            key = crypto.decrypt(self._secret, row.private_key_pem or "")
        except ValueError:
            raise certx.CertError("private key cannot be decrypted") from None
        return certx.material(host, row.certificate_pem or "", row.root_certificate or "", key)

    async def reload(self) -> None:
        async with self._reload_lock:
            async with self.db.engine.connect() as conn:
                rows = (await conn.execute(sa.select(*self._columns()).limit(MAX_ROWS))).all()
            contexts = dict(self._contexts)
            materials = dict(self._materials)
            stamps: dict[str, tuple[Any, ...]] = {}
            for row in rows:
                stamp = (row.certificate_pem, row.root_certificate, row.private_key_pem)
                try:
                    host = certx.normalize_hostname(row.hostname)
                except certx.CertError:
                    continue  # e.g. imported rows with a name no client could ask for
                stamps[host] = stamp
                if self._stamps.get(host) == stamp and host in contexts:
                    continue
                try:
                    m = self._decode(row)
                    contexts[host] = await asyncio.to_thread(certx.context_for, m)
                    materials[host] = m
                except certx.CertError as exc:
                    if row.certificate_pem:  # an empty row is only waiting for its certificate
                        logger.warning("certificate row %s is not usable: %s", host, exc)
                    if host != self.fallback:  # its names fall back; the fallback keeps its last good certificate
                        contexts.pop(host, None)
                        materials.pop(host, None)
            for gone in set(contexts) - set(stamps):
                if gone != self.fallback:  # the fallback stays served until a new one exists
                    contexts.pop(gone, None)
                    materials.pop(gone, None)
            self._contexts, self._materials, self._stamps = contexts, materials, stamps

    async def _row(self, conn: Any, hostname: str) -> Any:
        t = self.catalog.model.table(TABLE).sa
        return (await conn.execute(sa.select(*self._columns()).where(t.c.hostname == hostname))).first()

    async def ensure(self, hostname: str, uow: UnitOfWork | None = None, *, regenerate: bool = False) -> certx.Material:
        """The usable certificate of `hostname`'s row, generating and storing a self-signed one when the
        row is missing or unusable (or `regenerate`)."""
        host = certx.normalize_hostname(hostname)
        if uow is None:
            for attempt in range(2):
                try:
                    async with self.db.transaction() as own:
                        return await self.ensure(host, own, regenerate=regenerate)
                except sa.exc.IntegrityError as exc:  # another node inserted the same hostname first
                    if attempt or db_errors.classify(exc) is not Fault.UNIQUE:
                        raise
            raise AssertionError("unreachable")
        row = await self._row(uow.conn, host)
        if row is not None and not regenerate:
            try:
                return self._decode(row)
            except certx.CertError as exc:
                logger.info("certificate for %s replaced by a self-signed one: %s", host, exc)
        m = await asyncio.to_thread(certx.self_signed, host)
        await self.save(uow, m, "self", row_id=None if row is None else int(row.id))
        return m

    async def save(self, uow: UnitOfWork, m: certx.Material, issuer: str, *, row_id: int | None) -> None:
        """Insert or update the row of `m.hostname` (one change event; the key stored encrypted)."""
        model = self.catalog.model
        tm = model.table(TABLE)
        values = {
            "issuer": issuer,
            "generated_at": records.now(),
            "certificate_pem": m.cert_pem,
            "root_certificate": m.chain_pem or m.cert_pem,
            "public_key_pem": certx.public_key_pem(m.cert_pem),
            "private_key_pem": crypto.encrypt(self._secret, m.key_pem),
        }
        if row_id is None:
            row_id = await self._insert(uow, m.hostname, values)
            await records.emit_row(uow, model, tm, row_id, "create", None)
        else:
            await records.update(uow, model, tm, row_id, values, actor=None)

    async def _insert(self, uow: UnitOfWork, hostname: str, values: dict[str, Any]) -> int:
        model = self.catalog.model
        tm = model.table(TABLE)
        link = 0 if tm.group_join is None else self.catalog.default_permission(model.table(tm.group_join).decl)
        groups = [(g.name, g.permission or link) for g in tm.decl.default_groups]
        return await records.insert_row(
            uow,
            model,
            tm,
            {"hostname": hostname, **values},
            permission=self.catalog.default_permission(tm.decl),
            actor=None,
            groups=groups,
        )

    # -- ACME --------------------------------------------------------------------------------------

    async def _account_key(self) -> str:
        stored = self.config.get(ACCOUNT_KEY)
        if not stored:
            fresh = await asyncio.to_thread(lambda: certx.key_to_pem(certx.new_key()))
            stored = await self.config.setdefault(ACCOUNT_KEY, crypto.encrypt(self._secret, fresh))
        try:
            return crypto.decrypt(self._secret, stored)
        except ValueError:
            raise acme_client.AcmeError("the stored ACME account key cannot be decrypted") from None

    async def issue_acme(self, hostname: str, email: str = "") -> certx.Material:
        """Order a certificate for `hostname` from `acme.directory_url` (Let's Encrypt by default) and store it.
        Runs the protocol in a thread; no database transaction is held while the CA validates."""
        host = certx.normalize_hostname(hostname)
        cfg = acme_client.AcmeConfig(
            directory_url=self.config.get("acme.directory_url") or acme_client.LETS_ENCRYPT,
            ca_file=self.config.get("acme.ca_file") or "",
            account_key_pem=await self._account_key(),
            email=email,
        )
        try:
            async with asyncio.timeout(ACME_LOCK_TIMEOUT), self._acme_lock:  # one order at a time per node
                publisher = acme_client.Publisher(self.challenges, asyncio.get_running_loop())
                m = await asyncio.to_thread(acme_client.issue, cfg, host, publisher)
        except TimeoutError:
            raise acme_client.AcmeError(f"the ACME order for {host} did not finish in time") from None
        for attempt in range(2):
            try:
                async with self.db.transaction() as uow:
                    row = await self._row(uow.conn, host)
                    await self.save(uow, m, "acme", row_id=None if row is None else int(row.id))
                break
            except sa.exc.IntegrityError as exc:
                if attempt or db_errors.classify(exc) is not Fault.UNIQUE:
                    raise
        return m

    # -- renewal -----------------------------------------------------------------------------------

    async def renew_due(self, now: dt.datetime | None = None) -> list[str]:
        """Renew every certificate the renewal rule says is due; returns the host names renewed."""
        now = now or dt.datetime.now(dt.UTC)
        days = self.config.get_int("certs.renew_before_days", 30)
        renewed: list[str] = []
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(sa.select(*self._columns()).limit(MAX_ROWS))).all()
        for row in rows:
            try:
                m = self._decode(row)
            except certx.CertError:
                continue
            if not certx.needs_renewal(m.not_after, now, days):
                continue
            try:
                if row.issuer == "acme":
                    await self.issue_acme(m.hostname)
                else:
                    await self.ensure(m.hostname, regenerate=True)
                renewed.append(m.hostname)
            except (acme_client.AcmeError, certx.CertError) as exc:
                logger.warning("renewing the certificate of %s failed: %s", m.hostname, exc)
        return renewed

    async def _renew_loop(self) -> None:
        last = time.monotonic()
        while True:  # the interval is live config: checked each second
            await asyncio.sleep(1)
            if time.monotonic() - last < max(1, self.config.get_int("certs.renew_check_seconds", 3600)):
                continue
            last = time.monotonic()
            try:
                if await self.renew_due():
                    await self.reload()
            except Exception:
                logger.exception("certificate renewal failed")
