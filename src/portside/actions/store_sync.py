"""Store-wide file actions (spec core §8.8): `import_files_from_store`, `sync_site_storage`, `sync_column_storage`.

`import_files_from_store` (world, administrators: it reads whole stores) makes one row per file of a store
folder that no row of `table_name` holds yet, with `md5` and `size` like an uploaded asset: each file is read
as a stream (1 MiB at a time) to hash it, with the number of files and the bytes hashed bounded.

Daptin's sync actions copy a store into a local cache that its sites and FTP serve from. Portside serves
from the store itself (it is authoritative), so there is nothing to copy and nothing a sync could lose:
`sync_site_storage` (site; the site row's Read right, on top of the Execute the action runner checks) and
`sync_column_storage` (world; administrators, like the import) walk the folder, proving it is reachable,
and report its files and bytes. Neither writes anything.
"""

from __future__ import annotations

import hashlib
import mimetypes
from typing import Any

from portside.actions.files import SIGNED_IN, _path, _run, _site_store
from portside.actions.registry import ActionContext, Response, notify, performers, response
from portside.auth import access
from portside.auth.permissions import READ
from portside.core.schema import SchemaDoc, parse_document
from portside.errors import BadRequest, Forbidden, PayloadTooLarge
from portside.storage import paths
from portside.storage.assets import in_store
from portside.storage.store import Store
from portside.tools import jsonutil

MAX_WALK = 10_000  # files one import or sync looks at
MAX_IMPORT_BYTES_KEY = "storage.import.max_bytes"
DEFAULT_MAX_IMPORT_BYTES = 8 * 1024 * 1024 * 1024  # bytes one import may read to hash
CHUNK = 1024 * 1024


def _field(name: str) -> dict[str, Any]:
    return {"ColumnName": name, "ColumnType": "label", "IsNullable": True}


def _world(name: str, label: str, fields: list[str], performer: str) -> dict[str, Any]:
    return {
        "Name": name,
        "Label": label,
        "OnType": "world",
        "InstanceOptional": True,
        "InFields": [_field(f) for f in fields],
        "OutFields": [{"Type": performer, "Method": "EXECUTE", "Attributes": {}}],
    }


SYNC_ACTIONS: dict[str, Any] = {
    "Actions": [
        _world(
            "import_files_from_store", "Import files from a cloud store", ["table_name"], "cloud_store.files.import"
        ),
        _world(
            "sync_column_storage",
            "Sync column storage",
            ["table_name", "column_name", "credential_name"],
            "column.storage.sync",
        ),
        {
            "Name": "sync_site_storage",
            "Label": "Sync site storage",
            "OnType": "site",
            "InstanceOptional": False,
            "Permission": SIGNED_IN,  # the performer checks Read on the site row
            "InFields": [_field("path")],
            "OutFields": [{"Type": "site.storage.sync", "Method": "EXECUTE", "Attributes": {}}],
        },
    ]
}


def sync_doc() -> SchemaDoc:
    return parse_document(SYNC_ACTIONS, "<store sync actions>")


def walk(store: Store, folder: paths.Segments, sub: paths.Segments = ()) -> list[tuple[str, str, int]]:
    """(path below the folder, name, size) of every file under `folder` (at most MAX_WALK)."""
    out: list[tuple[str, str, int]] = []
    _walk_into(store, folder, sub, out)
    return out


def _walk_into(store: Store, folder: paths.Segments, sub: paths.Segments, out: list[tuple[str, str, int]]) -> None:
    for e in store.listdir((*folder, *sub)):
        if e.is_dir:
            _walk_into(store, folder, (*sub, e.name), out)
        else:
            out.append((paths.join(sub), e.name, e.size))
        if len(out) > MAX_WALK:
            raise OSError(27, f"more than {MAX_WALK} files in this folder")


def md5_of(store: Store, parts: paths.Segments) -> tuple[str, int]:
    """The hex MD5 and size of one stored file, read as a stream."""
    digest, size = hashlib.md5(usedforsecurity=False), 0
    with store.open_read(parts) as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _counts(store: Store, folder: paths.Segments) -> tuple[int, int]:
    found = walk(store, folder)
    return len(found), sum(size for _, _, size in found)


def _table_name(ctx: ActionContext) -> str:
    table = ctx.attributes.get("table_name")
    if not isinstance(table, str) and ctx.subject is not None:
        table = ctx.subject.attrs.get("table_name")
    if not isinstance(table, str) or not table:
        raise BadRequest("table_name is required", pointer="/attributes/table_name")
    return table


def _administrators_only(ctx: ActionContext, what: str) -> None:
    if not access.may_administer(ctx.actor, open_mode=ctx.services.catalog.open_mode):
        raise Forbidden(f"only administrators may {what}")


@performers.register("cloud_store.files.import")
async def import_files(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    """One row per file of the store folder of each store-kept asset column of `table_name` that no row
    holds yet (administrators only: it reads whole stores)."""
    _administrators_only(ctx, "import files from a store")
    table = _table_name(ctx)
    tm = ctx.services.model.table(table)
    files = ctx.services.crud.files
    columns = [c for c in tm.columns.values() if in_store(c)]
    if files is None or not columns:
        raise BadRequest(f"{table} has no asset column kept in a cloud store", pointer="/attributes/table_name")
    budget = max(0, ctx.services.config.get_int(MAX_IMPORT_BYTES_KEY, DEFAULT_MAX_IMPORT_BYTES))
    created = 0
    for col in columns:
        store, folder = await files.store_of(col)
        found = await _run(walk, store, folder)
        t = tm.sa
        held: set[tuple[str, str]] = set()
        for (value,) in (await ctx.uow.conn.execute(t.select().with_only_columns(t.c[col.column_name]))).all():
            entries = jsonutil.loads(value) if isinstance(value, str) and value.strip() else []
            held.update((str(e.get("path") or ""), str(e.get("name"))) for e in entries if isinstance(e, dict))
        new = [(sub, name, size) for sub, name, size in found if (sub, name) not in held]
        if sum(size for _, _, size in new) > budget:
            raise PayloadTooLarge(f"importing would read more than {budget} bytes ({MAX_IMPORT_BYTES_KEY})")
        for sub, name, _listed in new:
            parts = (*folder, *paths.segments(sub), name)
            md5, size = await _run(md5_of, store, parts)
            budget -= size
            if budget < 0:  # a file grew while importing
                raise PayloadTooLarge(f"importing would read more than the limit ({MAX_IMPORT_BYTES_KEY})")
            kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
            src = f"{sub}/{name}" if sub else name
            meta = [{"name": name, "type": kind, "size": size, "md5": md5, "path": sub, "src": src}]
            await ctx.services.crud.create(ctx.actor, table, {col.column_name: meta}, uow=ctx.uow)
            created += 1
    return [notify("success", "Success", f"{created} file(s) imported into {table}")]


@performers.register("site.storage.sync")
async def sync_site_storage(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    store = await _site_store(ctx, READ)
    folder = _path(ctx, "path")
    count, size = await _run(_counts, store, folder)
    summary = {"path": paths.join(folder), "files": count, "bytes": size, "copied": 0}
    return [
        response("site.storage.sync", summary),
        notify("success", "Success", f"the store is served directly: {count} file(s), {size} bytes, nothing to copy"),
    ]


@performers.register("column.storage.sync")
async def sync_column_storage(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    _administrators_only(ctx, "sync column storage")
    table = _table_name(ctx)
    name = ctx.attributes.get("column_name")
    if not isinstance(name, str) or not name:
        raise BadRequest("column_name is required", pointer="/attributes/column_name")
    col = ctx.services.model.table(table).columns.get(name)
    files = ctx.services.crud.files
    if col is None or not in_store(col) or files is None:
        raise BadRequest(
            f"{table}.{name} is not an asset column kept in a cloud store", pointer="/attributes/column_name"
        )
    store, folder = await files.store_of(col)
    count, size = await _run(_counts, store, folder)
    summary = {"table_name": table, "column_name": name, "files": count, "bytes": size, "copied": 0}
    return [
        response("column.storage.sync", summary),
        notify("success", "Success", f"the store is served directly: {count} file(s), {size} bytes, nothing to copy"),
    ]
