"""`cloud_store` rows -> open `Store`s, kept in step with the rows (and their credentials) by change events.

A row names the back end (`store_type`, or `store_provider`), a `root_path` (a local folder, relative to the
data directory when relative; `remote:bucket/prefix`, `s3://bucket/prefix` or `bucket/prefix` for object
stores), `store_parameters` (JSON object passed to the fsspec filesystem, e.g. `{"endpoint_url": ...}`) and
a credential (the `credential` row linked by `credential_id`, else the one named by `credential_name`) whose
decrypted JSON supplies the secrets. S3 takes Daptin's `access_key`/`secret_key`/`region`/`token`, rclone's
`access_key_id`/`secret_access_key`/`endpoint` and s3fs's own `key`/`secret`/`endpoint_url` names. Other
back ends get the credential JSON as filesystem options as it is.

The bootstrap store `localstore` is the folder `storage` under the data directory.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fsspec
import sqlalchemy as sa

from portside import log
from portside.core import records
from portside.core.catalog import Catalog
from portside.core.config import ConfigStore
from portside.core.db import Database
from portside.core.events import Event
from portside.errors import BadRequest, NotFound
from portside.storage.store import Store
from portside.tools import crypto

logger = log.get("storage")
TABLE = "cloud_store"
CREDENTIAL = "credential"
LOCALSTORE = "localstore"
MAX_UPLOAD_KEY = "storage.max_upload_bytes"
DEFAULT_MAX_UPLOAD = 1024 * 1024 * 1024  # 1 GiB
_S3_NAMES = {
    "access_key": "key",
    "access_key_id": "key",
    "aws_access_key_id": "key",
    "key": "key",
    "secret_key": "secret",
    "secret_access_key": "secret",
    "aws_secret_access_key": "secret",
    "secret": "secret",
    "token": "token",
    "session_token": "token",
    "endpoint": "endpoint_url",
    "endpoint_url": "endpoint_url",
}
_KINDS = {"file": "local", "local": "local", "s3": "s3", "memory": "memory"}


def _json_object(value: Any, what: str) -> dict[str, Any]:
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise BadRequest(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object")
    return value


def fs_options(kind: str, params: dict[str, Any], credential: dict[str, Any]) -> dict[str, Any]:
    """The fsspec filesystem options for a store of `kind` (secrets from `credential`)."""
    options = dict(params)
    if kind != "s3":
        return {**credential, **options}
    client = dict(options.pop("client_kwargs", None) or {})
    for name, value in credential.items():
        key = _S3_NAMES.get(str(name).lower())
        if (key is not None or str(name).lower() == "region") and not isinstance(value, str):
            raise BadRequest(f"credential field {name!r} must be a string")  # Daptin crashed here (A.8)
        if key is not None and value:
            options.setdefault(key, value)
        elif str(name).lower() == "region" and isinstance(value, str) and value:
            client.setdefault("region_name", value)
    if "region" in options:
        client.setdefault("region_name", options.pop("region"))
    if client:
        options["client_kwargs"] = client
    options.setdefault("use_listings_cache", False)  # the store is authoritative: no stale listings
    return options


def store_root(kind: str, root_path: str, data_dir: Path) -> str:
    text = (root_path or "").strip()
    if kind == "local":
        if "://" in text:
            text = text.split("://", 1)[1]
        path = Path(text) if text else data_dir / "storage"
        return str(path if path.is_absolute() else (data_dir / path).resolve())
    if "://" in text:
        text = text.split("://", 1)[1]
    elif ":" in text:
        text = text.split(":", 1)[1]  # rclone remote name
    text = text.strip("/")
    if not text and kind == "s3":
        raise BadRequest("an S3 store's root_path needs a bucket")
    return text


class StoreService:
    def __init__(self, db: Database, catalog: Catalog, config: ConfigStore, data_dir: Path):
        self.db, self.catalog, self.config, self.data_dir = db, catalog, config, data_dir
        self._open: dict[int, Store] = {}
        self._refs: dict[str, int] = {}  # row reference -> row id (fixed for a row's life)
        self._lock = asyncio.Lock()

    @property
    def max_upload(self) -> int:
        return max(0, self.config.get_int(MAX_UPLOAD_KEY, DEFAULT_MAX_UPLOAD))

    async def start(self) -> None:
        """The bootstrap store's folder exists (the catalog writes the `localstore` row on first start)."""
        folder = self.data_dir / "storage"
        await asyncio.to_thread(folder.mkdir, mode=0o700, parents=True, exist_ok=True)

    def on_events(self, events: Sequence[Event]) -> None:
        """A changed store or credential row is opened afresh on next use (local writes and other nodes')."""
        if any(e.table in (TABLE, CREDENTIAL) for e in events):
            self._open.clear()

    async def get(self, row_id: int) -> Store:
        store = self._open.get(row_id)
        if store is None:
            async with self._lock:
                store = self._open.get(row_id)
                if store is None:
                    store = await self._load(row_id)
                    self._open[row_id] = store
        store.max_upload = self.max_upload  # config changes apply to the next upload
        return store

    def cached(self, ref: str) -> Store | None:
        """The open store of row `ref` if it is open and current (a read other threads may make without the
        event loop: entries are replaced or dropped whole)."""
        row_id = self._refs.get(ref)
        store = self._open.get(row_id) if row_id is not None else None
        if store is not None:
            store.max_upload = self.max_upload
        return store

    async def by_ref(self, ref: str) -> Store:
        row_id = self._refs.get(ref)
        if row_id is None:
            tm = self.catalog.model.table(TABLE)
            async with self.db.read() as conn:
                row_id = await records.id_of(conn, tm, ref)
            if row_id is None:
                raise NotFound("no such cloud store")
            self._refs[ref] = row_id
        return await self.get(row_id)

    async def _load(self, row_id: int) -> Store:
        model = self.catalog.model
        t = model.table(TABLE).sa
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(t).where(t.c.id == row_id))).mappings().first()
            if row is None:
                raise NotFound("no such cloud store")
            credential = await self._credential(conn, row)
        kind_name = str(row.get("store_type") or row.get("store_provider") or "local").strip().lower()
        kind = _KINDS.get(kind_name, kind_name)
        params = _json_object(row.get("store_parameters"), "store_parameters")
        root = store_root(kind, str(row.get("root_path") or ""), self.data_dir)
        options = fs_options(kind, params, credential)
        try:
            fs = await asyncio.to_thread(fsspec.filesystem, kind, skip_instance_cache=True, **options)
        except (ImportError, ValueError, TypeError) as exc:
            raise BadRequest(f"cloud store {row.get('name')!r} cannot be opened: {type(exc).__name__}") from None
        if kind == "local":
            await asyncio.to_thread(os.makedirs, root, 0o700, True)
        return Store(row_id, str(row.get("name") or ""), kind, fs, root, self.max_upload)

    async def _credential(self, conn: Any, row: Any) -> dict[str, Any]:
        t = self.catalog.model.table(CREDENTIAL).sa
        where = None
        if row.get("credential_id"):
            where = t.c.id == row["credential_id"]
        elif row.get("credential_name"):
            where = t.c.name == row["credential_name"]
        if where is None:
            return {}
        found = (await conn.execute(sa.select(t.c.content).where(where))).first()
        if found is None or not found.content:
            return {}
        try:
            return _json_object(crypto.decrypt(self.config.get("encryption.secret") or "", found.content), "credential")
        except ValueError:
            raise BadRequest("the store's credential cannot be decrypted") from None
