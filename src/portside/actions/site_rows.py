"""Writes of `site` rows by users who are not administrators: where a site may point and what it may be called.

Any signed-in user may create and manage their own sites (the table gate gives `users` Create, Update and
Delete; site rows are owned rows with normal permission). Two things a site row controls reach beyond the
row itself, so they are checked on every create and update:
- its store and folder (`cloud_store_id`, `path`): a site serves that folder over HTTP and FTP with the
  site's own grants, so placing or moving it needs Update on the store row (`access.may_publish_store`),
  the same right `create_site` asks for; otherwise a user could publish any folder of any store;
- its hostnames: a name another site holds, or the server's own `hostname` (or `localhost`), would take over
  requests meant for them, so only administrators may use those (`access.may_claim_any_hostname`); other
  users' names must be DNS names with a dot (letters, digits, hyphens).
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from portside.auth import access
from portside.auth.permissions import Actor
from portside.core import records
from portside.core.config import ConfigStore
from portside.core.model import Model
from portside.core.records import RowData
from portside.errors import BadRequest, Conflict, Forbidden
from portside.storage.sites import hostnames

TABLE = "site"
STORE = "cloud_store"
RESERVED = frozenset({"localhost", "localhost.localdomain"})
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


async def check_write(
    conn: AsyncConnection,
    model: Model,
    config: ConfigStore,
    actor: Actor,
    values: dict[str, Any],
    current: RowData | None,
) -> None:
    if current is None or "cloud_store_id" in values or "path" in values:
        await _check_store(conn, model, actor, values, current)
    if "hostname" in values and not access.may_claim_any_hostname(actor):
        await _check_hostnames(conn, model, config, values["hostname"], current)


async def _check_store(
    conn: AsyncConnection, model: Model, actor: Actor, values: dict[str, Any], current: RowData | None
) -> None:
    tm = model.table(STORE)
    if "cloud_store_id" in values:
        store_id = values["cloud_store_id"]
        row = await records.fetch_one(conn, model, tm, row_id=int(store_id)) if store_id is not None else None
    else:
        ref = current.attrs.get("cloud_store_id") if current is not None else None
        row = await records.fetch_one(conn, model, tm, ref=ref) if isinstance(ref, str) else None
    if row is not None and not access.may_publish_store(actor, row.grants):
        raise Forbidden("a site may be placed only on a store whose files you may change (Update on the store)")


async def _check_hostnames(
    conn: AsyncConnection, model: Model, config: ConfigStore, raw: Any, current: RowData | None
) -> None:
    wanted = set(hostnames(raw))
    own = {h.strip().lower().rstrip(".") for h in (config.get("hostname") or "").split(",") if h.strip()}
    for name in wanted:
        if name in RESERVED or name in own:
            raise Forbidden(f"the hostname {name!r} is the server's own")
        labels = name.split(".")
        if len(name) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
            raise BadRequest(f"{name[:100]!r} is not a host name", pointer="/data/attributes/hostname")
    t = model.table(TABLE).sa
    query = sa.select(t.c.hostname)
    if current is not None:
        query = query.where(t.c.id != current.id)
    for (other,) in await conn.execute(query):
        taken = wanted.intersection(hostnames(other))
        if taken:
            raise Conflict(f"the hostname {sorted(taken)[0]!r} belongs to another site")
