"""A reload of the config store (run for a change event) must never undo a newer local write: its read may
take a snapshot from before the write and finish after it (seen as a flaky ACME test: a stale
`acme.ca_file` came back after the event of the previous key reloaded the store)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from portside.core import events as ev
from portside.core.config import ConfigStore, config_metadata
from portside.core.db import Database


async def test_a_reload_overlapping_a_local_write_keeps_the_newer_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    async with db.ddl_lock() as conn:
        await conn.run_sync(config_metadata.create_all)
        await conn.run_sync(ev.event_metadata.create_all)
    store = ConfigStore(db)
    await store.set("acme.ca_file", "/old/ca.pem")
    read_done, release = asyncio.Event(), asyncio.Event()
    real_read = db.read
    reads = 0

    @asynccontextmanager
    async def slow_read(**kw: Any) -> AsyncIterator[Any]:
        nonlocal reads
        reads += 1
        async with real_read(**kw) as conn:
            yield conn
        if reads == 1:  # the first read has its rows (the old value): hold it until the write is done
            read_done.set()
            await release.wait()

    monkeypatch.setattr(db, "read", slow_read)
    reload = asyncio.create_task(store.load())
    await read_done.wait()
    await store.set("acme.ca_file", "/new/ca.pem")
    release.set()
    await reload
    assert store.get("acme.ca_file") == "/new/ca.pem"
    assert reads == 2  # the overlapped read was done again
    await db.dispose()
