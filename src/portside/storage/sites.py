"""`site` rows: which hostnames exist, on which store and folder, and with which grants.

The directory is read once and kept until a `site` row, its group links or a store changes (events of
any node). A site row's `hostname` may list several names separated by commas: each is its own
directory in FTP and its own virtual host over HTTP. Rights on a site are decided by
`auth.access.site_right` with the grants kept here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from portside.core import records
from portside.core.catalog import Catalog
from portside.core.db import Database
from portside.core.events import Event, Grants
from portside.errors import BadRequest
from portside.storage import paths
from portside.storage.paths import Segments

TABLE = "site"


@dataclass(frozen=True)
class Site:
    row_id: int
    ref: str
    hostname: str  # one name (a row with "a.com,b.com" gives two Site entries)
    store_ref: str | None
    folder: Segments  # the site's folder inside the store
    enable: bool
    ftp_enabled: bool
    grants: Grants


def hostnames(raw: object) -> list[str]:
    text = raw if isinstance(raw, str) else ""
    return [h.strip().lower().rstrip(".") for h in text.split(",") if h.strip()]


def folder_of(raw: object) -> Segments:
    try:
        return paths.segments(str(raw or "").strip("/"))
    except BadRequest:
        return ("\x00",)  # an unusable folder: the site stays unreachable (checked by `usable`)


class SiteDirectory:
    def __init__(self, db: Database, catalog: Catalog):
        self.db, self.catalog = db, catalog
        self._sites: list[Site] | None = None
        self._generation = 0
        self._lock = asyncio.Lock()

    def on_events(self, events: Sequence[Event]) -> None:
        if any(e.table == TABLE or e.table.startswith("site_") or e.table == "cloud_store" for e in events):
            self._generation += 1
            self._sites = None

    def cached(self) -> list[Site] | None:
        """The sites as last read (None when a change made them stale): a read other threads may make
        without the event loop (the list is replaced whole, never changed in place)."""
        return self._sites

    async def sites(self) -> list[Site]:
        cached = self._sites
        if cached is not None:
            return cached
        async with self._lock:
            if self._sites is not None:
                return self._sites
            generation = self._generation
            model = self.catalog.model
            tm = model.table(TABLE)
            async with self.db.read() as conn:
                rows = await records.fetch(conn, model, tm, order_by=[tm.sa.c.id])
            out = []
            for r in rows:
                a = r.attrs
                store = a.get("cloud_store_id")
                for host in hostnames(a.get("hostname")):
                    out.append(
                        Site(
                            r.id,
                            r.ref,
                            host,
                            store if isinstance(store, str) else None,
                            folder_of(a.get("path")),
                            bool(a.get("enable")),
                            bool(a.get("ftp_enabled")),
                            r.grants,
                        )
                    )
            if generation == self._generation:
                self._sites = out
            return out

    async def by_host(self, host: str, *, ftp: bool = False) -> Site | None:
        name = host.strip().lower().rstrip(".")
        for site in await self.sites():
            if site.hostname == name and usable(site, ftp=ftp):
                return site
        return None


def usable(site: Site, *, ftp: bool = False) -> bool:
    return site.enable and site.store_ref is not None and "\x00" not in site.folder and (site.ftp_enabled or not ftp)
