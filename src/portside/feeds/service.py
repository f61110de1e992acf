"""The feed port's service: definitions read live, pages rendered through the JSON:API list pipeline.

Items are exactly what `Crud.find` returns for the caller (table gate, row permission filter in SQL,
the feed's filter and sort), so a feed never shows a row the caller could not list through /api.

Rendered documents are cached per (feed, format, page, base URL, principal) and dropped by change events
on every table the document depends on (the source table and its group links, feed/stream rows, table
gates, groups, config), on this node synchronously after commit and on other nodes when their events
arrive, so a cached page is never older than the last write anyone could see.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

from portside.actions.crud import GATE_TABLES
from portside.actions.services import Services
from portside.auth.permissions import Actor
from portside.core.cache import DependentCache, EventCache
from portside.core.config import CONFIG_TABLE
from portside.core.events import Event
from portside.core.model import TableModel
from portside.errors import NotFound
from portside.feeds import definition, render
from portside.feeds.definition import FeedDef

DEF_TABLES = ("feed", "stream")
MAX_PAGE = 1_000_000


@dataclass(frozen=True)
class Rendered:
    body: bytes
    etag: str  # strong: a hash of exactly these bytes
    last_modified: dt.datetime  # whole seconds, UTC
    media_type: str
    private: bool


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


class FeedService:
    def __init__(self, svc: Services):
        self.svc = svc
        self.defs: EventCache[str, tuple[FeedDef | None]] = EventCache(DEF_TABLES, max_entries=1000)
        self.renders: DependentCache[tuple[object, ...], Rendered] = DependentCache(max_entries=2000)
        self.booted = _now()
        self.changed_at: dict[str, dt.datetime] = {}

    def on_events(self, events: Iterable[Event]) -> None:
        """Every committed change, from this node (after commit) or another (off the bus)."""
        events = list(events)
        if not events:
            return
        self.defs.on_events(events)
        self.renders.on_events(events)
        now = _now()
        for e in events:
            self.changed_at[e.table] = now

    async def definition(self, name: str) -> FeedDef | None:
        cached = self.defs.get(name)
        if cached is None:
            generation = self.defs.generation
            async with self.svc.db.read() as conn:
                cached = (await definition.load(conn, self.svc.model, name),)
            self.defs.put(name, cached, generation)
        return cached[0]

    async def source(self, name: str, fmt: str) -> tuple[FeedDef, TableModel]:
        """The enabled feed and its source table, or 404 (unknown, disabled, format off, no source)."""
        fd = await self.definition(name)
        if fd is None or not fd.enabled or fmt not in fd.formats:
            raise NotFound(f"no feed {name[:100]}.{fmt}")
        if fd.table is None or fd.table not in self.svc.model.tables:
            raise NotFound(f"feed {name[:100]} has no item source")
        return fd, self.svc.model.table(fd.table)

    def dependencies(self, tm: TableModel) -> tuple[str, ...]:
        extra = (tm.group_join,) if tm.group_join else ()
        return (tm.name, *extra, *DEF_TABLES, *GATE_TABLES, CONFIG_TABLE)

    def base_url(self, request_base: str) -> str:
        configured = self.svc.config.get("feed.base_url")
        return (configured or request_base).rstrip("/")

    async def page(self, actor: Actor, name: str, fmt: str, page: int, base: str) -> Rendered:
        fd, tm = await self.source(name, fmt)
        key = (name, fmt, page, base, actor.user_id, actor.group_ids, actor.is_admin)
        use_cache = self.svc.config.get_bool("feed.cache", True)
        if use_cache:
            hit = self.renders.get(key)
            if hit is not None:
                return hit
        deps = self.dependencies(tm)
        generation = self.renders.generation(deps)
        rendered = await self._render(actor, fd, tm, fmt, page, base, deps)
        if use_cache:
            self.renders.put(key, rendered, deps, generation)
        return rendered

    async def _render(
        self, actor: Actor, fd: FeedDef, tm: TableModel, fmt: str, page: int, base: str, deps: tuple[str, ...]
    ) -> Rendered:
        m = definition.resolve(fd, tm)
        params = dict(fd.params)
        params.setdefault("sort", definition.default_sort(m))
        params["page[size]"] = str(fd.page_size)
        params["page[number]"] = str(page)
        if not fd.transformations:  # only the columns the items use (a stream's steps may need any)
            params["fields"] = ",".join(definition.needed_columns(fd, m, tm))
        found = await self.svc.crud.find(actor, tm.name, params, {k: [v] for k, v in params.items()})
        items = []
        for row in found.rows:
            attrs = definition.transform(row.attrs, fd.transformations) if fd.transformations else row.attrs
            if attrs is not None:
                items.append(definition.to_item(fd, m, attrs, base))
        newest = [d for it in items for d in (it.updated, it.published) if d is not None]
        if fd.updated is not None:
            newest.append(fd.updated)
        updated = max(newest) if newest else self.booted
        url = f"{base}/feed/{fd.name}.{fmt}"
        last = max(1, math.ceil(found.total / found.size)) if found.size else 1
        ch = render.Channel(
            id=f"urn:uuid:{fd.ref}",
            title=fd.title,
            description=fd.description,
            home=fd.link or url,
            self_url=url if page == 1 else f"{url}?page={page}",
            hub_url=f"{base}/websub",
            updated=updated,
            author_name=fd.author_name,
            author_email=fd.author_email,
            first_url=url,
            next_url=f"{url}?page={page + 1}" if page < last else "",
            prev_url=(url if min(page - 1, last) == 1 else f"{url}?page={min(page - 1, last)}") if page > 1 else "",
            items=items,
        )
        body = render.render(fmt, ch)
        # Last-Modified: the newest date in what the caller sees, but never older than the last change to
        # a table this page depends on (a delete or a permission change leaves no newer date behind)
        changed = max(self.changed_at.get(t, self.booted) for t in deps)
        modified = max(updated.astimezone(dt.UTC).replace(microsecond=0), changed)
        etag = '"' + hashlib.sha256(body).hexdigest()[:40] + '"'
        return Rendered(body, etag, modified, render.MEDIA_TYPES[fmt], not actor.is_guest)
