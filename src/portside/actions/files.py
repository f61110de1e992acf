"""Actions on cloud stores and sites (spec core §8.8): files in, folders, moves, deletes, listings.

On `cloud_store` (the row's rights: Read to list, Update to change its files, Create to add sites):
`upload_file` (file: asset array, path), `create_folder` (path, name), `move_path` (source, destination),
`delete_path` (path), `create_site` (site_type, path, hostname). On `site` (the site row's rights through
`auth.access.site_right`: Read to list and fetch, Delete to delete): `list_files` (path), `get_file` (path),
`delete_file` (path). Paths are relative and pass `storage.paths`; store calls run off the event loop.
Unlike Daptin the work is done before the response (nothing is queued and lost). A `.zip` file sent to
`upload_file` is unpacked into the target folder as Daptin does, safely (`storage.archives`); `extract:
false` stores it as it is. `sync_site_storage` (site) and `sync_column_storage` (world) copy nothing: the
store is authoritative, so they check that the folder is reachable and report its files and bytes.
"""

from __future__ import annotations

import asyncio
import base64
import mimetypes
import tempfile
from typing import Any, BinaryIO

from portside.actions.registry import ActionContext, Response, notify, performers, response
from portside.auth import access
from portside.auth.permissions import DELETE, READ, UPDATE
from portside.core import assets, filetext, masks
from portside.core.schema import SchemaDoc, parse_document
from portside.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge
from portside.storage import archives, paths
from portside.storage.sites import folder_of
from portside.storage.store import Store
from portside.storage.writers import UploadTooLarge

MAX_GET_FILE = 16 * 1024 * 1024  # get_file answers inline (base64); larger files stream from the site's pages


def _field(name: str, ctype: str = "label") -> dict[str, Any]:
    return {"ColumnName": name, "ColumnType": ctype, "IsNullable": True}


# any signed-in user may run them: each performer checks the right it needs on the store or site row
SIGNED_IN = masks.combine(masks.AUTH_EXECUTE, masks.guest(masks.PEEK))


def _action(name: str, on: str, fields: list[str], performer: str, label: str) -> dict[str, Any]:
    return {
        "Name": name,
        "Label": label,
        "OnType": on,
        "InstanceOptional": False,
        "Permission": SIGNED_IN,
        "InFields": [_field(f, "file" if f == "file" else "label") for f in fields],
        "OutFields": [{"Type": performer, "Method": "EXECUTE", "Attributes": {}}],
    }


FILE_ACTIONS: dict[str, Any] = {
    "Actions": [
        _action("upload_file", "cloud_store", ["file", "path", "extract"], "cloudstore.file.upload", "Upload files"),
        _action("create_folder", "cloud_store", ["path", "name"], "cloudstore.folder.create", "Create folder"),
        _action("move_path", "cloud_store", ["source", "destination"], "cloudstore.path.move", "Move path"),
        _action("delete_path", "cloud_store", ["path"], "cloudstore.path.delete", "Delete path"),
        _action("create_site", "cloud_store", ["site_type", "path", "hostname"], "cloudstore.site.create", "Site"),
        _action("list_files", "site", ["path"], "site.file.list", "List files"),
        _action("get_file", "site", ["path"], "site.file.get", "Get file"),
        _action("delete_file", "site", ["path"], "site.file.delete", "Delete file"),
    ]
}


def files_doc() -> SchemaDoc:
    return parse_document(FILE_ACTIONS, "<file actions>")


def _path(ctx: ActionContext, key: str, *, required: bool = False) -> paths.Segments:
    raw = ctx.attributes.get(key)
    if raw is None or raw == "":
        if required:
            raise BadRequest(f"{key} is required", pointer=f"/attributes/{key}")
        return ()
    if not isinstance(raw, str):
        raise BadRequest(f"{key} must be a path", pointer=f"/attributes/{key}")
    try:
        return paths.segments(raw.rstrip("/"))
    except paths.UnsafePath as exc:
        raise BadRequest(f"{key}: {exc.detail}", pointer=f"/attributes/{key}") from None


async def _store(ctx: ActionContext, right: int) -> Store:
    row = ctx.subject
    if row is None:
        raise BadRequest("cloud_store_id is required", pointer="/attributes/cloud_store_id")
    if not access.may(ctx.actor, right, row.grants):
        raise Forbidden("not allowed on this cloud store")
    stores = ctx.services.stores
    if stores is None:
        raise NotFound("cloud stores are not available on this server")
    store = await stores.get(row.id)
    await asyncio.to_thread(store.ensure_root)
    return store


async def _site_store(ctx: ActionContext, right: int) -> Store:
    row = ctx.subject
    if row is None:
        raise BadRequest("site_id is required", pointer="/attributes/site_id")
    if not access.site_right(ctx.actor, row.grants, right):
        raise Forbidden("not allowed on this site")
    store_ref = row.attrs.get("cloud_store_id")
    if not isinstance(store_ref, str) or ctx.services.stores is None:
        raise NotFound("this site has no cloud store")
    folder = folder_of(row.attrs.get("path"))
    if "\x00" in folder:
        raise BadRequest("this site's path is not usable")
    store = (await ctx.services.stores.by_ref(store_ref)).view(folder)
    await asyncio.to_thread(store.ensure_root)
    return store


async def _run(fn: Any, *args: Any) -> Any:
    try:
        return await asyncio.to_thread(fn, *args)
    except FileNotFoundError:
        raise NotFound("no such file or folder") from None
    except FileExistsError:
        raise BadRequest("already exists") from None
    except UploadTooLarge as exc:
        raise PayloadTooLarge(exc.strerror or "a file is too large") from None
    except OSError as exc:
        raise BadRequest(exc.strerror or "the store refused") from None


def _write_files(store: Store, folder: paths.Segments, files: list[tuple[str, bytes]]) -> None:
    store.makedirs(folder)
    for name, data in files:
        with store.open_write((*folder, name)) as w:
            for i in range(0, len(data), 1024 * 1024):
                w.write(data[i : i + 1024 * 1024])


def _spool(text: str) -> tuple[BinaryIO, int | None]:
    """A .zip upload's bytes decoded into a temporary file (never whole in memory) and their count."""
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - closed by upload_file
    size = filetext.decode_into(text, spool)
    spool.seek(0)
    return spool, size


def _extract_wanted(ctx: ActionContext) -> bool:
    raw = ctx.attributes.get("extract")
    if raw is None or raw == "":
        return True
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false", "1", "0"):
        return raw.strip().lower() in ("true", "1")
    raise BadRequest("extract must be true or false", pointer="/attributes/extract")


def _zip_limits(ctx: ActionContext) -> archives.Limits:
    config = ctx.services.config
    return archives.Limits(
        max(1, config.get_int(archives.MAX_MEMBERS_KEY, archives.DEFAULT_MAX_MEMBERS)),
        max(0, config.get_int(archives.MAX_TOTAL_KEY, archives.DEFAULT_MAX_TOTAL)),
    )


@performers.register("cloudstore.file.upload")
async def upload_file(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    """Every file is decoded and checked before any is written; `.zip` files are unpacked (unless `extract`
    is false), each archive checked whole before its members are written."""
    store = await _store(ctx, UPDATE)
    folder = _path(ctx, "path")
    extract = _extract_wanted(ctx)
    items = ctx.attributes.get("file")
    if not isinstance(items, list) or not items:
        raise BadRequest("file must be a list of files", pointer="/attributes/file")
    decoded: list[tuple[str, bytes | BinaryIO]] = []
    try:
        for i, item in enumerate(items):  # every file checked before any is written
            why = assets.file_problem(i, item)
            if why:
                raise BadRequest(why, pointer="/attributes/file")
            name, text = str(item["name"]), str(item.get("file") or item.get("contents") or "")
            if extract and archives.is_zip_name(name):
                spool, size = await asyncio.to_thread(_spool, text)
                decoded.append((name, spool))  # the archive's bytes on disk, read member by member
            else:
                data = filetext.decode(text)
                size = len(data) if data is not None else None
                decoded.append((name, data or b""))
            if size is None:
                raise BadRequest(f"file {i} has no contents", pointer="/attributes/file")
            if store.max_upload and size is not None and size > store.max_upload:
                raise PayloadTooLarge(f"file {i} is larger than {store.max_upload} bytes")
        limits = _zip_limits(ctx)
        plain, unpacked = 0, 0
        for name, content in decoded:
            if isinstance(content, bytes):
                await _run(_write_files, store, folder, [(name, content)])
                plain += 1
            else:
                n, _size = await _run(archives.extract, store, folder, content, limits)
                unpacked += n
    finally:
        for _, content in decoded:
            if not isinstance(content, bytes):
                content.close()
    done = f"{plain} file(s) uploaded" + (f", {unpacked} unpacked from .zip archives" if unpacked else "")
    return [notify("success", "Success", done)]


@performers.register("cloudstore.folder.create")
async def create_folder(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    store = await _store(ctx, UPDATE)
    target = (*_path(ctx, "path"), *_path(ctx, "name", required=True))
    await _run(store.mkdir, target)
    return [notify("success", "Success", "Folder created")]


@performers.register("cloudstore.path.move")
async def move_path(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    store = await _store(ctx, UPDATE)
    await _run(store.move, _path(ctx, "source", required=True), _path(ctx, "destination", required=True))
    return [notify("success", "Success", "Moved")]


def _delete(store: Store, parts: paths.Segments) -> None:
    entry = store.info(parts)
    if entry is None:
        raise FileNotFoundError("no such path")
    if not entry.is_dir:
        store.remove(parts)
        return
    for child in store.listdir(parts):
        _delete(store, (*parts, child.name))
    store.rmdir(parts)


@performers.register("cloudstore.path.delete")
async def delete_path(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    store = await _store(ctx, UPDATE)
    await _run(_delete, store, _path(ctx, "path", required=True))
    return [notify("success", "Success", "Deleted")]


@performers.register("cloudstore.site.create")
async def create_site(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    await _store(ctx, UPDATE)  # whoever may change a store's files may publish a folder of it (as in Daptin)
    assert ctx.subject is not None
    folder = _path(ctx, "path")
    hostname = ctx.attributes.get("hostname")
    if not isinstance(hostname, str) or not hostname.strip():
        raise BadRequest("hostname is required", pointer="/attributes/hostname")
    attrs = {
        "name": hostname.strip(),
        "hostname": hostname.strip().lower(),
        "path": paths.join(folder),
        "site_type": str(ctx.attributes.get("site_type") or "static"),
        "enable": True,
        "cloud_store_id": ctx.subject.ref,
    }
    row = await ctx.services.crud.create(ctx.actor, "site", attrs, uow=ctx.uow)
    return [notify("success", "Success", f"Site {attrs['hostname']} created"), response("site", {"id": row.ref})]


@performers.register("site.file.list")
async def list_files(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    store = await _site_store(ctx, READ)
    folder = _path(ctx, "path")
    entries = await _run(store.listdir, folder)
    files = [
        {"name": e.name, "path": paths.join((*folder, e.name)), "is_dir": e.is_dir, "size": e.size, "mtime": e.mtime}
        for e in entries
    ]
    return [response("site.file.list", {"path": paths.join(folder), "files": files})]


def _read_small(store: Store, parts: paths.Segments) -> bytes:
    entry = store.info(parts)
    if entry is None or entry.is_dir:
        raise FileNotFoundError("no such file")
    if entry.size > MAX_GET_FILE:
        raise OSError(27, f"files over {MAX_GET_FILE} bytes are served by the site's pages")
    with store.open_read(parts) as f:
        data: bytes = f.read(MAX_GET_FILE + 1)
    return data


@performers.register("site.file.get")
async def get_file(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    store = await _site_store(ctx, READ)
    parts = _path(ctx, "path", required=True)
    data = await _run(_read_small, store, parts)
    kind = mimetypes.guess_type(parts[-1])[0] or "application/octet-stream"
    attrs = {"content": base64.b64encode(data).decode(), "name": parts[-1], "contentType": kind, "message": ""}
    return [response("client.file.download", attrs)]


@performers.register("site.file.delete")
async def delete_file(ctx: ActionContext, _attrs: dict[str, Any]) -> list[Response]:
    store = await _site_store(ctx, DELETE)
    await _run(_delete, store, _path(ctx, "path", required=True))
    return [notify("success", "Success", "Deleted")]
