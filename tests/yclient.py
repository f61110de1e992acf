"""A small y-websocket client on pycrdt (Rust yrs) + `websockets`: a second, independent CRDT implementation
talking to the server, for the cases the Node providers cannot observe finely (refused updates, close codes)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import websockets
from pycrdt import Doc, Text

from portside.realtime import yjs_protocol as yp

NODE_DIR = Path(__file__).parent / "node"


class YClient:
    def __init__(self, ws: Any, name: str = "content"):
        self.ws = ws
        self.doc: Doc[Any] = Doc()
        self.name = name
        self.synced = asyncio.Event()
        self.server_step1 = asyncio.Event()
        self.awareness: dict[int, tuple[int, str]] = {}
        self.auth: list[bytes] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self.changed = asyncio.Event()
        self.update_frames = 0  # document updates received after the initial sync
        self.awareness_frames = 0
        self.task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, url: str, name: str = "content", sync: bool = True, **options: Any) -> YClient:
        ws = await websockets.connect(url, max_size=None, **options)
        client = cls(ws, name)
        client.task = asyncio.create_task(client._reader())
        await ws.send(yp.sync_step1(client.doc.get_state()))
        if sync:
            await asyncio.wait_for(client.synced.wait(), 10)
        return client

    @property
    def text(self) -> str:
        return str(self.doc.get(self.name, type=Text))

    async def _reader(self) -> None:
        try:
            async for frame in self.ws:
                assert isinstance(frame, bytes)
                for m in yp.decode(frame):
                    if m.kind == yp.MSG_SYNC and m.sub == yp.SYNC_STEP1:
                        await self.ws.send(yp.sync_step2(self.doc.get_update(m.payload)))
                        self.server_step1.set()
                    elif m.kind == yp.MSG_SYNC:
                        self.update_frames += m.sub == yp.SYNC_UPDATE
                        self.doc.apply_update(m.payload)
                        if m.sub == yp.SYNC_STEP2:
                            self.synced.set()
                    elif m.kind == yp.MSG_AWARENESS:
                        self.awareness_frames += 1
                        for e in yp.decode_awareness(m.payload):
                            if e.state == "null":
                                self.awareness.pop(e.client_id, None)
                            else:
                                self.awareness[e.client_id] = (e.clock, e.state)
                    elif m.kind == yp.MSG_AUTH:
                        self.auth.append(m.payload)
                    self.changed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            rcvd = getattr(self.ws, "close_rcvd", None)
            self.close_code = rcvd.code if rcvd is not None else self.ws.close_code
            self.close_reason = rcvd.reason if rcvd is not None else (self.ws.close_reason or "")
            self.changed.set()

    async def edit(self, position: int, insert: str = "", delete: int = 0) -> bytes:
        """Make a local edit and send it as an Update message; returns the update."""
        before = self.doc.get_state()
        t = self.doc.get(self.name, type=Text)
        with self.doc.transaction():
            if delete:
                del t[position : position + delete]
            if insert:
                t.insert(position, insert)
        update = self.doc.get_update(before)
        await self.ws.send(yp.update_message(update))
        return update

    async def set_presence(self, client_id: int, clock: int, state: dict[str, Any] | None) -> None:
        entry = yp.AwarenessEntry(client_id, clock, json.dumps(state))
        await self.ws.send(yp.encode_awareness([entry]))

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(remaining, 0.2))
        return True

    async def closed(self, timeout: float = 10.0) -> int | None:
        assert self.task is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        return self.close_code

    async def close(self) -> None:
        await self.ws.close()
        if self.task is not None:
            with contextlib.suppress(Exception):
                await self.task


def node_ready() -> None:
    """Install yjs, y-websocket@1.5.4 and ws into tests/node (git-ignored node_modules)."""
    if not (NODE_DIR / "node_modules" / "y-websocket" / "package.json").exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=300)


def run_node(script: str, cfg: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    proc = subprocess.run(
        ["node", script, json.dumps(cfg)], cwd=NODE_DIR, capture_output=True, text=True, timeout=timeout
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no result from {script}: {proc.stdout}\n{proc.stderr}"
    result: dict[str, Any] = json.loads(lines[-1])
    result["exit"] = proc.returncode
    return result
