"""Asset columns kept in a cloud store (spec core §10.1): the row holds metadata, the store the bytes.

A column declared `IsForeignKey: true, ForeignKeyData: {DataSource: cloud_store, Namespace: <store name>,
KeyName: <folder>}` stores each file sent in its value at `<store root>/<folder>[/<path>]/<name>` (one target
folder per write: the last file's `path`, as Daptin does) and keeps `{name, type, size, md5, path, src}`
per file in the row. An entry without `file`/`contents` is metadata already stored (a client echoing the
value back) and is kept as it is. Reads of the contents stream from the store (`open`).
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, BinaryIO

import sqlalchemy as sa

from portside.core import filetext
from portside.core.declarations import Column
from portside.core.model import TableModel
from portside.errors import BadRequest, NotFound, PayloadTooLarge
from portside.storage import paths
from portside.storage.store import Store
from portside.storage.stores import TABLE, StoreService
from portside.tools import jsonutil

ASSET_FAMILIES = frozenset({"file", "image", "video", "gzip"})


def in_store(col: Column) -> bool:
    fk = col.foreign_key
    return fk is not None and fk.data_source == "cloud_store" and col.family in ASSET_FAMILIES


def _meta(name: str, kind: str, size: int, md5: str, path: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": kind,
        "size": size,
        "md5": md5,
        "path": path,
        "src": f"{path}/{name}" if path else name,
    }


class AssetFiles:
    def __init__(self, stores: StoreService):
        self.stores = stores

    async def store_of(self, col: Column) -> tuple[Store, paths.Segments]:
        assert col.foreign_key is not None
        t = self.stores.catalog.model.table(TABLE).sa
        async with self.stores.db.read() as conn:
            row_id = await conn.scalar(sa.select(t.c.id).where(t.c.name == col.foreign_key.namespace))
        if row_id is None:
            raise NotFound(f"cloud store {col.foreign_key.namespace!r} of column {col.column_name} does not exist")
        store = await self.stores.get(int(row_id))
        try:
            folder = paths.segments(col.foreign_key.key_name.strip("/")) if col.foreign_key.key_name != "id" else ()
        except paths.UnsafePath:
            raise BadRequest(f"column {col.column_name} has an unusable folder") from None
        return store, folder

    async def write(self, tm: TableModel, values: dict[str, Any]) -> dict[str, Any]:
        """`values` with every store-kept asset column's files written and replaced by their metadata."""
        out = dict(values)
        for name, value in values.items():
            col = tm.columns.get(name)
            if col is None or not in_store(col) or value is None:
                continue
            out[name] = await self._write_column(col, value)
        return out

    async def _write_column(self, col: Column, value: Any) -> str:
        items = jsonutil.loads(value) if isinstance(value, str) else value
        if not isinstance(items, list):
            raise BadRequest(
                f"{col.column_name} must be a list of files", pointer=f"/data/attributes/{col.column_name}"
            )
        store, folder = await self.store_of(col)
        last_path = next((str(i.get("path") or "") for i in reversed(items) if isinstance(i, dict)), "")
        try:
            sub = paths.segments(last_path.strip("/")) if last_path else ()
        except paths.UnsafePath as exc:
            raise BadRequest(exc.detail, pointer=f"/data/attributes/{col.column_name}") from None
        metas = []
        for item in items:
            data_text = item.get("file") or item.get("contents")
            if not data_text:
                keep = {k: item.get(k) for k in ("name", "type", "size", "md5", "path", "src")}
                metas.append(keep)
                continue
            data = filetext.decode(str(data_text))
            if data is None:
                raise BadRequest(f"{col.column_name}: a file is not valid base64")
            if store.max_upload and len(data) > store.max_upload:
                raise PayloadTooLarge(f"a file is larger than {store.max_upload} bytes")
            name = str(item["name"])
            await asyncio.to_thread(_put, store, (*folder, *sub), name, data)
            kind = str(item.get("type") or "application/octet-stream")
            metas.append(_meta(name, kind, len(data), hashlib.md5(data).hexdigest(), paths.join(sub)))
        return jsonutil.dumps_str(metas)

    async def locate(self, col: Column, meta: dict[str, Any]) -> tuple[Store, paths.Segments]:
        """The store and path of one file entry of `col` (NotFound for an entry naming no usable path)."""
        store, folder = await self.store_of(col)
        try:
            parts = (
                *folder,
                *paths.segments(str(meta.get("path") or "").strip("/")),
                paths.check_segment(str(meta["name"])),
            )
        except (paths.UnsafePath, KeyError):
            raise NotFound("no such file") from None
        return store, parts

    async def read(self, col: Column, meta: dict[str, Any], cap: int) -> bytes | None:
        """The bytes of one stored file of `col` if it holds at most `cap` bytes, else None."""
        store, parts = await self.locate(col, meta)
        try:
            return await asyncio.to_thread(read_capped, store, parts, cap)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound("the file is not in the store") from None

    async def open(self, col: Column, meta: dict[str, Any]) -> tuple[BinaryIO, int]:
        """A read stream of one stored file of `col` (and its size)."""
        store, parts = await self.locate(col, meta)
        entry = await asyncio.to_thread(store.info, parts)
        if entry is None or entry.is_dir:
            raise NotFound("the file is not in the store")
        return await asyncio.to_thread(store.open_read, parts), entry.size


def _put(store: Store, folder: paths.Segments, name: str, data: bytes) -> None:
    store.makedirs(folder)
    with store.open_write((*folder, name)) as w:
        for i in range(0, len(data), 1024 * 1024):
            w.write(data[i : i + 1024 * 1024])


def read_capped(store: Store, parts: paths.Segments, cap: int) -> bytes | None:
    """A stored file's bytes when it holds at most `cap` bytes, else None (read no further than that)."""
    with store.open_read(parts) as f:
        data: bytes = f.read(cap + 1)
    return None if len(data) > cap else data
