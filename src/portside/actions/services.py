"""The services every edge needs, built once by the runtime."""

from __future__ import annotations

from dataclasses import dataclass, field

from portside.actions.crud import Crud
from portside.actions.registry import Registry, performers
from portside.auth.identity import actor_cache
from portside.auth.login_cache import BasicLoginCache
from portside.auth.permissions import Actor
from portside.auth.sessions import SessionRegistry
from portside.auth.throttle import LoginThrottle
from portside.certs.service import CertificateService
from portside.core.cache import EventCache
from portside.core.catalog import Catalog
from portside.core.config import ConfigStore
from portside.core.db import Database
from portside.core.events import Event
from portside.core.model import Model
from portside.mail.courier import Courier
from portside.mail.directory import MailDirectory
from portside.realtime.bus import Bus
from portside.realtime.hub import LiveHub
from portside.realtime.live_session import LiveService
from portside.realtime.yjs_rooms import RoomManager
from portside.settings import Settings
from portside.storage.sites import SiteDirectory
from portside.storage.stores import StoreService


@dataclass
class Services:
    settings: Settings
    db: Database
    config: ConfigStore
    catalog: Catalog
    crud: Crud
    bus: Bus
    performers: Registry = field(default_factory=lambda: performers)
    logins: LoginThrottle = field(default_factory=LoginThrottle)
    actors: EventCache[str, Actor] = field(default_factory=actor_cache)
    basic_logins: BasicLoginCache = field(default_factory=BasicLoginCache)  # DAV's Basic logins
    hub: LiveHub | None = None
    live: LiveService | None = None  # /live sessions (over the hub), served by the HTTP edge
    yjs: RoomManager | None = None
    certs: CertificateService | None = None
    sessions: SessionRegistry | None = None  # long-lived sessions, re-checked when rights change
    stores: StoreService | None = None  # cloud stores (storage/)
    sites: SiteDirectory | None = None
    courier: Courier | None = None  # outbox delivery (mail.send, process_outbox)
    mail_directory: MailDirectory = field(default_factory=MailDirectory)  # local domains/accounts (SMTP)

    def invalidate(self, events: list[Event]) -> None:
        """Drop cached identities, table gates and topic rows touched by these events (local or remote)."""
        self.actors.on_events(events)
        self.basic_logins.on_events(events)
        self.crud.gates.on_events(events)
        self.crud.counts.on_events(events)
        self.mail_directory.on_events(events)
        if self.stores is not None:
            self.stores.on_events(events)
        if self.sites is not None:
            self.sites.on_events(events)
        if self.live is not None:
            self.live.topic_rows.on_events(events)

    @property
    def model(self) -> Model:
        return self.catalog.model

    @property
    def jwt_secret(self) -> str:
        return self.settings.jwt_secret or self.config.get("jwt.secret") or ""

    @property
    def jwt_issuer(self) -> str:
        return self.config.get("jwt.token.issuer") or "portside"

    @property
    def token_life_hours(self) -> int:
        return self.config.get_int("jwt.token.life.hours", 72)
