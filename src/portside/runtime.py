"""Composition: build every service from settings, wire after-commit events to the bus, run listeners.

`Portside` is an async context manager (and has start()/stop()); `started` is set once every listener
is accepting connections and `ports` holds the real ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import secrets
from pathlib import Path
from typing import Any

import uvicorn

from portside import log
from portside.actions.builtin import builtin_doc
from portside.actions.certs import certs_doc
from portside.actions.crud import Crud
from portside.actions.live_access import LiveAccess
from portside.actions.services import Services
from portside.actions.yjs_binding import ColumnWatch, YjsRows
from portside.certs import x509 as certx
from portside.certs.service import CertificateService
from portside.core import events
from portside.core.catalog import Catalog
from portside.core.config import CONFIG_TABLE, ConfigStore
from portside.core.db import Database
from portside.core.events import Event
from portside.core.migrate import migrate_base
from portside.core.model import MEMBERSHIP
from portside.core.schema import SCHEMA_GLOBS
from portside.core.systables import system_doc
from portside.errors import StartupError
from portside.feeds.service import FeedService
from portside.feeds.websub import WebSubHub
from portside.http.app import build_app
from portside.http.wire import CaptureRawSend, ws_protocol
from portside.realtime.bus import make_bus
from portside.realtime.hub import LiveHub
from portside.realtime.yjs_relay import RedisRelay
from portside.realtime.yjs_rooms import RoomManager
from portside.settings import Settings
from portside.tools import private_files
from portside.tools.ids import uuid7_str

logger = log.get("runtime")
RELOAD_TABLES = frozenset({"world", "action"})


class Portside:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.started = asyncio.Event()
        self.ports: dict[str, int] = {}
        self.services: Services | None = None
        self.feeds: FeedService | None = None
        self.websub: WebSubHub | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._server: uvicorn.Server | None = None
        self._tls_server: uvicorn.Server | None = None
        self._app: Any = None
        self._yjs_relay: RedisRelay | None = None
        self._reload_dirty = False
        self._reload_task: asyncio.Task[None] | None = None
        self._schema_stamp: tuple[tuple[str, float], ...] = ()

    async def __aenter__(self) -> Portside:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def _secrets(self, config: ConfigStore) -> None:
        await config.setdefault("jwt.secret", secrets.token_urlsafe(32))
        await config.setdefault("jwt.token.issuer", "portside-" + uuid7_str()[-6:])
        await config.setdefault("jwt.token.life.hours", "72")
        await config.setdefault("encryption.secret", uuid7_str().replace("-", ""))

    @staticmethod
    def _warn_loose(data: Path, db: Database) -> None:
        """One warning line per data directory or database file that others may read."""
        paths = [data]
        if db.sqlite_file is not None:
            paths += private_files.sqlite_files(Path(db.sqlite_file))
        for path in paths:
            problem = private_files.loose(path)
            if problem is not None:
                logger.warning("%s", problem)

    async def start(self) -> None:
        s = self.settings
        data = Path(s.data_dir)
        await asyncio.to_thread(private_files.private_dir, data)
        db = Database(s.db_url)
        if db.sqlite_file is not None:
            await asyncio.to_thread(private_files.private_file, Path(db.sqlite_file))
        config = ConfigStore(db)
        catalog = Catalog(db, config, [system_doc(), builtin_doc(), certs_doc()], data, s.schema)
        await migrate_base(db)
        await asyncio.to_thread(self._warn_loose, data, db)
        await config.load()
        # one bus channel per database, so clusters sharing a Redis never see each other's events
        cluster = await config.setdefault("cluster.id", uuid7_str())
        bus = make_bus(db, s.redis_url, f"portside:events:{cluster}")
        db.after_commit.append(bus.publish)
        await bus.start()
        await catalog.start()
        await config.load()
        await self._secrets(config)
        crud = Crud(db, catalog, config)
        access = LiveAccess(db, catalog, crud)  # /live sessions are re-checked through it when rights change
        svc = Services(s, db, config, catalog, crud, bus, hub=LiveHub(bus, access.refresh_actor, access.may_subscribe))
        self.services = svc
        await self._start_certs(svc)
        assert svc.hub is not None
        await svc.hub.start()
        feeds = self.feeds = FeedService(svc)
        websub = self.websub = WebSubHub(svc, feeds)
        await websub.start()
        await self._start_yjs(svc, cluster)

        async def invalidate(committed: list[Event]) -> None:  # this node's writes, before the response
            svc.invalidate(committed)
            feeds.on_events(committed)
            websub.on_events(committed, local=True)
            if svc.certs is not None:
                await svc.certs.refresh(committed)  # the next TLS handshake already sees a changed certificate

        db.after_commit.insert(0, invalidate)
        self._schema_stamp = self._stamp()
        self._tasks.append(asyncio.create_task(self._watch_events(), name="portside-events"))
        self._tasks.append(asyncio.create_task(self._watch_schema_files(), name="portside-schema-files"))
        self._tasks.append(asyncio.create_task(self._trim_events(), name="portside-trim"))
        await self._serve_http(svc)
        await self._serve_https(svc)
        # What start-up built (model, metadata, compiled statements, modules) lives as long as the process:
        # keep it out of the cyclic collector's full passes, which otherwise rescan it every time.
        gc.collect()
        gc.freeze()
        self.started.set()

    async def _start_yjs(self, svc: Services, cluster: str) -> None:
        svc.yjs = RoomManager(svc.db, svc.config, YjsRows(svc))  # row-bound rooms: seed, write-back, re-checks
        svc.db.after_commit.append(ColumnWatch(svc, svc.yjs).on_commit)
        if self.settings.redis_url:
            self._yjs_relay = RedisRelay(
                self.settings.redis_url, f"portside:yjs:{cluster}", svc.yjs.on_remote, svc.yjs.resync
            )
            svc.yjs.publish = self._yjs_relay.publish
            await self._yjs_relay.start()
        await svc.yjs.start(svc.bus)

    async def _start_certs(self, svc: Services) -> None:
        try:
            svc.certs = CertificateService(svc.db, svc.catalog, svc.config, self.settings.hostname)
        except certx.CertError as exc:
            raise StartupError(f"invalid --hostname {self.settings.hostname!r}: {exc}") from None
        # the listener's own host name gets its certificate (self-signed if none) before HTTPS starts
        await svc.certs.start(ensure_fallback=self.settings.tls_port is not None)

    def _uvicorn_config(self, app: Any, port: int, **extra: Any) -> uvicorn.Config:
        return uvicorn.Config(
            app,
            host=self.settings.host,
            port=port,
            log_level="warning",
            lifespan="off",
            access_log=False,
            server_header=False,
            proxy_headers=False,  # forwarded headers are believed only from --trusted-proxies (http/peer.py)
            ws=ws_protocol(),  # uvicorn's sans-I/O protocol with a direct input path (http/wire.py)
            ws_max_size=1024 * 1024,  # /live frames
            ws_per_message_deflate=False,  # per-socket compression would cost more CPU than the fan-out
            ws_ping_interval=20,  # server pings find dead peers
            ws_ping_timeout=20,
            **extra,
        )

    async def _listen(self, config: uvicorn.Config, scheme: str) -> uvicorn.Server:
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(), name=f"portside-{scheme}")
        self._tasks.append(task)
        while not server.started:
            if task.done():
                task.result()  # re-raise the bind error
                raise RuntimeError(f"{scheme.upper()} server stopped during start-up")
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        self.ports[scheme] = port
        print(f"portside: {scheme} listening on {scheme}://{self.settings.host}:{port}", flush=True)
        return server

    async def _serve_http(self, svc: Services) -> None:
        app = build_app(svc)
        app.state.feeds, app.state.websub = self.feeds, self.websub
        self._app = CaptureRawSend(app)
        self._server = await self._listen(self._uvicorn_config(self._app, self.settings.port), "http")

    async def _serve_https(self, svc: Services) -> None:
        """The same application over TLS: contexts from the certificate service, chosen per SNI."""
        if self.settings.tls_port is None or svc.certs is None:
            return
        certs = svc.certs
        config = self._uvicorn_config(
            self._app, self.settings.tls_port, ssl_context_factory=lambda _config, _default: certs.server_context()
        )
        self._tls_server = await self._listen(config, "https")

    async def stop(self) -> None:
        for server in (self._server, self._tls_server):
            if server is not None:
                server.should_exit = True
        if self._reload_task is not None:
            self._tasks.append(self._reload_task)
        for t in self._tasks:
            if t.get_name() not in ("portside-http", "portside-https"):
                t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(t, timeout=5)
        self._tasks.clear()
        if self.services is not None:
            if self.services.yjs is not None:
                await self.services.yjs.stop()
            if self._yjs_relay is not None:
                await self._yjs_relay.stop()
                self._yjs_relay = None
            if self.services.hub is not None:
                await self.services.hub.stop()
            if self.services.certs is not None:
                await self.services.certs.stop()
            if self.websub is not None:
                await self.websub.stop()
                self.websub = None
            await self.services.bus.stop()
            await self.services.db.dispose()
            self.services = None

    # -- background work ---------------------------------------------------------------------------

    async def _watch_events(self) -> None:
        """Keep this node's caches (model, config, admin flag) in step with every node's writes."""
        assert self.services is not None
        svc = self.services
        async with svc.bus.subscribe() as sub:
            async for event in sub:
                try:
                    await self._on_event(svc, event)
                except Exception:
                    logger.exception("failed to apply %s event on %s", event.type, event.table)

    async def _on_event(self, svc: Services, event: Event) -> None:
        svc.invalidate([event])  # other nodes' writes
        if svc.certs is not None:
            svc.certs.on_events([event])
        if self.feeds is not None and self.websub is not None:
            self.feeds.on_events([event])
            self.websub.on_events([event], local=False)
        if event.table == CONFIG_TABLE:
            await svc.config.load()
        elif event.table == MEMBERSHIP:
            await svc.catalog.refresh_open_mode()
        elif event.table in RELOAD_TABLES:
            self._schedule_reload(svc)

    def _schedule_reload(self, svc: Services) -> None:
        """Coalesce a burst of world/action events into one reload, off the event loop's path."""
        self._reload_dirty = True
        if self._reload_task is None or self._reload_task.done():
            self._reload_task = asyncio.create_task(self._reload_loop(svc), name="portside-reload")

    async def _reload_loop(self, svc: Services) -> None:
        while self._reload_dirty:
            self._reload_dirty = False
            await asyncio.sleep(0.05)
            try:
                await svc.catalog.reload()
            except Exception:
                logger.exception("model reload failed")

    def _stamp(self) -> tuple[tuple[str, float], ...]:
        roots = [Path(self.settings.data_dir), *(Path(p) for p in self.settings.schema)]
        found: list[tuple[str, float]] = []
        for root in roots:
            files = [root] if root.is_file() else [f for g in SCHEMA_GLOBS for f in root.glob(g)]
            for f in files:
                with contextlib.suppress(OSError):
                    found.append((str(f), f.stat().st_mtime))
        return tuple(sorted(found))

    async def _watch_schema_files(self) -> None:
        """A schema file dropped into (or changed in) the data dir is applied without a restart."""
        assert self.services is not None
        while True:
            await asyncio.sleep(1.0)
            stamp = await asyncio.to_thread(self._stamp)
            if stamp != self._schema_stamp:
                self._schema_stamp = stamp
                try:
                    await self.services.catalog.reload()
                    logger.info("schema files changed: model reloaded")
                except Exception:
                    logger.exception("schema files changed but could not be applied")

    async def _trim_events(self) -> None:
        assert self.services is not None
        while True:  # at start-up, then every minute
            try:
                async with self.services.db.transaction() as uow:
                    await events.trim(uow.conn, self.settings.event_history)
            except Exception:
                logger.exception("event log trim failed")
            await asyncio.sleep(60)


async def serve_forever(settings: Settings) -> None:
    async with Portside(settings) as app:
        assert app._server is not None
        while not app._server.should_exit:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.5)
