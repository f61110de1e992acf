"""Composition: build every service from settings, wire after-commit events to the bus, run listeners.

`Portside` is an async context manager (and has start()/stop()); `started` is set once every listener
is accepting connections and `ports` holds the real ports. Everything starts in one `Lifecycle`: a start
that fails stops what already started, and `stop()` stops it all in reverse order. Listeners live in the
`Listeners` registry (`listeners`); the HTTP port is bound first (a taken port fails before any work) and
served last, HTTPS follows config `https.port` live (`_apply_https`).
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
from portside.actions.files import files_doc
from portside.actions.live_access import LiveAccess
from portside.actions.mail_more import more_actions_doc
from portside.actions.mail_send import mail_actions_doc
from portside.actions.mail_servers import mail_servers_doc
from portside.actions.metrics import source as metrics_source
from portside.actions.services import Services
from portside.actions.store_sync import sync_doc
from portside.actions.yjs_binding import ColumnWatch, YjsRows
from portside.auth.sessions import SessionRegistry
from portside.certs import challenge_store
from portside.certs import x509 as certx
from portside.certs.service import CertificateService
from portside.core import events, fieldtypes
from portside.core.catalog import Catalog
from portside.core.config import CONFIG_TABLE, ConfigStore
from portside.core.db import Database
from portside.core.events import Event
from portside.core.migrate import migrate_base
from portside.core.model import MEMBERSHIP
from portside.core.schema import SCHEMA_GLOBS
from portside.core.systables import system_doc
from portside.dav.app import mount as mount_dav
from portside.davstore import hooks as dav_hooks
from portside.davstore import instances as dav_instances
from portside.davstore.store import DavStore
from portside.davstore.tables import dav_doc
from portside.errors import StartupError
from portside.feeds.service import FeedService
from portside.feeds.websub import WebSubHub
from portside.ftp import server as ftp_server
from portside.http.app import build_app
from portside.http.coalesce import HttpProtocol
from portside.http.listener import UvicornListener
from portside.http.metrics import METRICS_KEY, ScrapePort, instrument
from portside.http.wire import CaptureRawSend, ws_protocol
from portside.imap import config as imap_config
from portside.imap.ports import ImapPorts
from portside.imap.rows import RowsBackend
from portside.mail import hooks as mail_hooks
from portside.mail.courier import Courier
from portside.mail.store import MailStore
from portside.mail.subscriptions import subscriptions_doc
from portside.mail.tables import mail_doc
from portside.mail.utf7_names import rewrite_once as rewrite_utf7_names
from portside.realtime.bus import make_bus
from portside.realtime.hub import LiveHub
from portside.realtime.live_session import LiveService
from portside.realtime.relay import Relay
from portside.realtime.yjs_relay import RedisRelay
from portside.realtime.yjs_rooms import RoomManager
from portside.settings import Settings
from portside.smtp import servers as smtp_servers
from portside.storage.assets import AssetFiles
from portside.storage.sites import SiteDirectory
from portside.storage.stores import StoreService
from portside.tools import gctend, jsonutil, metrics, private_files
from portside.tools.ids import uuid7_str
from portside.tools.lifecycle import Lifecycle, Listeners, parse_port, stop_signals

logger = log.get("runtime")
RELOAD_TABLES = frozenset({"world", "action"})
GC_THAW_KEY = "gc.thaw_seconds"  # how often the frozen generation is walked once (tools/gctend.py); 0 = never freeze
HTTPS_PORT_KEY = "https.port"  # "" or absent = --tls-port; a port number = listen there; "off" = no HTTPS
LISTENER_KEYS = frozenset({HTTPS_PORT_KEY, METRICS_KEY, *ftp_server.KEYS}) | imap_config.KEYS


class Portside:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.started = asyncio.Event()
        self.ports: dict[str, int] = {}
        self.services: Services | None = None
        self.feeds: FeedService | None = None
        self.websub: WebSubHub | None = None
        self.listeners = Listeners()
        self._life = Lifecycle()
        self._switch = asyncio.Event()  # a listener key changed: re-apply the listeners
        self._app: Any = None
        self._ftp: ftp_server.FtpEdge | None = None
        self._yjs_relay: RedisRelay | None = None
        self._reload_dirty = False
        self._reload_task: asyncio.Task[None] | None = None
        self._schema_stamp: tuple[tuple[str, float], ...] = ()
        self.mail_servers: smtp_servers.MailServers | None = None  # SMTP listeners from mail_server rows
        self._imap: ImapPorts | None = None
        self._scrape = ScrapePort(self.listeners, lambda app, port: self._uvicorn_config(app, port))

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
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _bind_http(self) -> UvicornListener:
        s = self.settings
        http = UvicornListener("http", s.host, s.port, lambda port: self._uvicorn_config(self._app, port))
        try:
            await http.bind()
        except OSError as exc:
            raise StartupError(f"cannot listen on {http.url}: {exc.strerror or exc}") from None
        self._life.push("http socket", http.close)  # closed if start-up fails before it is served
        return http

    async def _start(self) -> None:
        s = self.settings
        life = self._life
        if s.test_bcrypt_rounds is not None:
            fieldtypes.use_bcrypt_rounds(s.test_bcrypt_rounds)
            logger.warning(
                "test setting: bcrypt cost %d for new password hashes (never in production)", s.test_bcrypt_rounds
            )
        http = await self._bind_http()
        data = Path(s.data_dir)
        await asyncio.to_thread(private_files.private_dir, data)
        db = Database(s.db_url)
        life.push("database", db.dispose)
        if db.sqlite_file is not None:
            await asyncio.to_thread(private_files.private_file, Path(db.sqlite_file))
        config = ConfigStore(db)
        docs = [system_doc(), builtin_doc(), certs_doc(), files_doc(), sync_doc(), dav_doc()]
        docs += [mail_doc(), mail_servers_doc(), mail_actions_doc(), more_actions_doc(), subscriptions_doc()]
        catalog = Catalog(db, config, docs, data, s.schema)
        dav_hooks.register()  # calendar objects: validated, indexed and logged on every write path
        mail_hooks.register()  # messages written through /api keep their modseq, UID and tombstones
        await migrate_base(db)
        await dav_instances.create_table(db)  # the recurrence instance index (davstore)
        await challenge_store.create_table(db)  # pending ACME HTTP-01 challenges (certs)
        await asyncio.to_thread(self._warn_loose, data, db)
        await config.load()
        # one bus channel per database, so clusters sharing a Redis never see each other's events
        cluster = await config.setdefault("cluster.id", uuid7_str())
        bus = make_bus(db, s.redis_url, f"portside:events:{cluster}")
        db.after_commit.append(bus.publish)
        await life.enter("event bus", bus.start, bus.stop)
        await catalog.start()
        await config.load()
        await rewrite_utf7_names(db, catalog.model, config)  # once: names earlier versions stored in modified UTF-7
        await self._secrets(config)
        crud = Crud(db, catalog, config)
        live_access = LiveAccess(db, catalog, crud)  # /live subscriptions are re-checked through it
        hub = LiveHub(bus, live_access.may_subscribe)
        live = LiveService(db, catalog, config, hub, live_access)
        svc = Services(s, db, config, catalog, crud, bus, hub=hub, live=live)
        self.services = svc
        await self._share_logins(svc, cluster)
        self._life.push("metrics source", metrics.SAMPLED_COLLECTOR.add(metrics_source(svc)))
        await self._start_certs(svc)
        sessions = svc.sessions = SessionRegistry(db, catalog)
        await life.enter("sessions", lambda: sessions.start(bus), sessions.stop)
        svc.stores = StoreService(db, catalog, config, data)
        await svc.stores.start()
        crud.files = AssetFiles(svc.stores)
        svc.sites = SiteDirectory(db, catalog)
        assert svc.hub is not None
        await life.enter("live hub", svc.hub.start, svc.hub.stop)
        feeds = self.feeds = FeedService(svc)
        websub = self.websub = WebSubHub(svc, feeds)
        await life.enter("websub", websub.start, websub.stop)
        life.push("yjs", self._stop_yjs)
        await self._start_yjs(svc, cluster)

        async def invalidate(committed: list[Event]) -> None:  # this node's writes, before the response
            svc.invalidate(committed)
            feeds.on_events(committed)
            websub.on_events(committed, local=True)
            if svc.certs is not None:
                await svc.certs.refresh(committed)  # the next TLS handshake already sees a changed certificate

        db.after_commit.insert(0, invalidate)
        await self._start_courier(svc)
        self._schema_stamp = self._stamp()
        life.task(self._watch_events(), "portside-events")
        life.task(self._watch_schema_files(), "portside-schema-files")
        life.task(self._trim_events(), "portside-trim")
        life.push("model reload", self._stop_reload)
        await self._serve_http(svc, http)
        life.task(self._switch_listeners(), "portside-listeners")
        await self._apply_https()
        await self._apply_metrics()
        self._ftp = ftp_server.FtpEdge(svc, self.listeners)
        await self._ftp.apply()
        self.mail_servers = smtp_servers.MailServers(svc, self.listeners)
        await self._apply_mail()
        await self._start_imap(svc)
        # What start-up built (model, metadata, compiled statements, modules) lives as long as the process:
        # keep it out of the cyclic collector's full passes, which otherwise rescan it every time.
        gc.collect()
        gc.freeze()
        self.started.set()

    async def _share_logins(self, svc: Services, cluster: str) -> None:
        """In a cluster, every node's sign-in attempts count on every node (auth/throttle.py)."""
        if not self.settings.redis_url:
            return
        logins = svc.logins

        def deliver(origin: bytes, payload: bytes) -> None:
            note = jsonutil.loads(payload, max_depth=2)
            if isinstance(note, dict):
                logins.remote(note, origin.hex())

        relay = Relay(self.settings.redis_url, f"portside:logins:{cluster}", deliver, client_name="portside-logins")

        def share(note: dict[str, object]) -> None:
            if not relay.publish(jsonutil.dumps(note)):
                logger.warning("sign-in attempts not shared with the other nodes: relay queue full")

        logins.share = share
        await self._life.enter("shared sign-in limits", relay.start, relay.stop)

    async def _start_courier(self, svc: Services) -> None:
        """Outbox delivery: woken by committed outbox rows (this node's and, through the bus, others')."""
        courier = svc.courier = Courier(svc.db, MailStore(svc.db, svc.catalog), svc.config, self.settings.hostname)
        svc.db.after_commit.insert(0, courier.on_commit)  # only sets an event: first, so delivery starts early
        await self._life.enter("mail courier", courier.start, courier.stop)

    async def _start_yjs(self, svc: Services, cluster: str) -> None:
        svc.yjs = RoomManager(svc.db, svc.config, YjsRows(svc))  # row-bound rooms: seed, write-back, re-checks
        svc.db.after_commit.append(ColumnWatch(svc, svc.yjs).on_commit)
        if self.settings.redis_url:
            self._yjs_relay = RedisRelay(
                self.settings.redis_url, f"portside:yjs:{cluster}", svc.yjs.on_remote, svc.yjs.resync
            )
            svc.yjs.publish = self._yjs_relay.publish_room
            await self._yjs_relay.start()
        await svc.yjs.start(svc.bus)

    async def _stop_yjs(self) -> None:
        if self.services is not None and self.services.yjs is not None:
            await self.services.yjs.stop()
        if self._yjs_relay is not None:
            await self._yjs_relay.stop()
            self._yjs_relay = None

    async def _stop_reload(self) -> None:
        if self._reload_task is not None:
            self._reload_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reload_task

    async def _start_certs(self, svc: Services) -> None:
        try:
            svc.certs = CertificateService(svc.db, svc.catalog, svc.config, self.settings.hostname)
        except certx.CertError as exc:
            raise StartupError(f"invalid --hostname {self.settings.hostname!r}: {exc}") from None
        # the listener's own host name gets its certificate (self-signed if none) before HTTPS starts
        try:
            https = self._https_port() is not None
        except ValueError:
            https = False
        certs = svc.certs
        await self._life.enter("certificates", lambda: certs.start(ensure_fallback=https), certs.stop)

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
            http=HttpProtocol,  # uvicorn's httptools protocol, one write per response (http/coalesce.py)
            ws=ws_protocol(),  # uvicorn's sans-I/O protocol with a direct input path (http/wire.py)
            ws_max_size=1024 * 1024,  # /live frames
            ws_per_message_deflate=False,  # per-socket compression would cost more CPU than the fan-out
            ws_ping_interval=20,  # server pings find dead peers
            ws_ping_timeout=20,
            **extra,
        )

    async def _serve_http(self, svc: Services, http: UvicornListener) -> None:
        app = build_app(svc)
        app.state.feeds, app.state.websub = self.feeds, self.websub
        app.state.listeners = self.listeners
        # /caldav, /carddav and /.well-known/cal|carddav go to the DAV edge while config caldav.enable is "true"
        dav = mount_dav(app, svc, DavStore(svc.db, svc.catalog))
        self._app = CaptureRawSend(instrument(dav, app.routes))  # every HTTP request counted, DAV too
        self._life.push("listeners", self.listeners.stop_all, bounded=False)
        await self.listeners.start(http, fatal=True)
        self.ports["http"] = http.bound_port or 0

    # -- listeners switched live -------------------------------------------------------------------

    def _https_port(self) -> int | None:
        """The HTTPS port config `https.port` asks for (absent or "" = --tls-port); ValueError if invalid."""
        assert self.services is not None
        return parse_port(self.services.config.get(HTTPS_PORT_KEY), self.settings.tls_port)

    def _https_listener(self, port: int) -> UvicornListener:
        """The same application over TLS: contexts from the certificate service, chosen per SNI."""
        assert self.services is not None and self.services.certs is not None
        certs = self.services.certs

        def config(real: int) -> uvicorn.Config:
            return self._uvicorn_config(
                self._app, real, ssl_context_factory=lambda _config, _default: certs.server_context()
            )

        return UvicornListener("https", self.settings.host, port, config, tls="implicit")

    async def _apply_https(self) -> None:
        """Start, move or stop the HTTPS listener as configured; nothing else is touched."""
        assert self.services is not None and self.services.certs is not None
        certs = self.services.certs
        try:
            port = self._https_port()
        except ValueError as exc:
            await self.listeners.fail(self._https_listener(0), f"{HTTPS_PORT_KEY}: {exc}")
            return
        running = self.listeners.get("https")
        if port is None:
            await self.listeners.stop("https")
        elif running is None or port not in (running.port, running.bound_port):
            try:
                if certs.material(certs.fallback) is None:  # enabled live: make sure --hostname has one
                    await certs.ensure(certs.fallback)
                    await certs.reload()
            except Exception as exc:
                await self.listeners.fail(self._https_listener(port), f"no certificate for {certs.fallback}: {exc}")
                return
            await self.listeners.start(self._https_listener(port))
        https = self.listeners.get("https")
        self.ports.pop("https", None)
        if https is not None and https.bound_port is not None:
            self.ports["https"] = https.bound_port

    async def _switch_listeners(self) -> None:
        while True:
            await self._switch.wait()
            self._switch.clear()
            try:
                await self._apply_https()
                await self._apply_metrics()
                await self._apply_mail()
                await self._apply_imap()
            except Exception:
                logger.exception("applying the listener configuration failed")
            try:
                if self._ftp is not None:
                    await self._ftp.apply()
            except Exception:
                logger.exception("applying the FTP configuration failed")

    async def _apply_metrics(self) -> None:
        assert self.services is not None
        await self._scrape.apply(self.services.config.get(METRICS_KEY))

    async def _apply_mail(self) -> None:
        """SMTP listeners follow the enabled mail_server rows (smtp/servers.py)."""
        if self.mail_servers is not None:
            await self.mail_servers.apply()

    async def _start_imap(self, svc: Services) -> None:
        """IMAP over the mail rows: one backend (logins, sessions, push from the bus), listeners by config."""
        assert svc.certs is not None
        backend = RowsBackend(
            svc.db, svc.catalog, svc.bus, svc.logins, svc.sessions, logins=svc.basic_logins, actors=svc.actors
        )
        await self._life.enter("imap", backend.start, backend.stop)
        svc.db.after_commit.append(backend.on_commit)  # an /api write is seen by the next IMAP command
        self._imap = ImapPorts(backend, svc.certs, self.settings.host)
        await self._apply_imap()

    async def _apply_imap(self) -> None:
        if self._imap is None or self.services is None:
            return
        ports = await self._imap.apply(self.services.config.get, self.listeners)
        for name in ("imap", "imaps"):
            self.ports.pop(name, None)
        self.ports.update(ports)

    async def stop(self) -> None:
        """Everything that started, in reverse order (listeners drain first); safe to call twice."""
        await self._life.close()
        self.websub = None
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
        if svc.courier is not None:
            svc.courier.on_events([event])
        if svc.certs is not None:
            svc.certs.on_events([event])
        if self.feeds is not None and self.websub is not None:
            self.feeds.on_events([event])
            self.websub.on_events([event], local=False)
        if event.table == CONFIG_TABLE:
            await svc.config.load()
            if event.data.get("name") in LISTENER_KEYS | smtp_servers.KEYS:
                self._switch.set()
        elif event.table == smtp_servers.SERVER_TABLE:
            self._switch.set()
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
    """Run until SIGTERM or SIGINT, then stop everything in reverse order (a signal during start-up stops
    what already started). A second signal is not handled: it ends the process at once."""
    app = Portside(settings)
    stopping = asyncio.Event()
    with stop_signals(stopping.set):
        starting = asyncio.create_task(app.start(), name="portside-start")
        waiting = asyncio.create_task(stopping.wait())
        await asyncio.wait({starting, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()  # start() stops what it started, then re-raises the cancellation
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            return
        waiting.cancel()
        starting.result()  # a start-up error ends here (start() already cleaned up)
        tending = tend_gc(app)  # the server process's collector only: in-process test servers keep theirs
        try:
            await stopping.wait()
        finally:
            tending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tending
            gctend.tender().uninstall()
            await app.stop()


def tend_gc(app: Portside) -> asyncio.Task[None]:
    """Freeze what survives each full collection and thaw every `gc.thaw_seconds` (tools/gctend.py)."""
    tender = gctend.tender()
    assert app.services is not None
    config = app.services.config
    tender.install()
    return asyncio.create_task(tender.run(lambda: config.get_int(GC_THAW_KEY, gctend.THAW_SECONDS)), name="portside-gc")
