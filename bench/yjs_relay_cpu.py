"""CPU per update of Portside's Yjs relay path in-process: receive -> integrate -> group commit into SQLite ->
relay -> per-turn flush, with fake peers (no sockets), so that two source trees can be compared by
instruction count on a busy machine.

Run: `PYTHONPATH=<src> .venv/bin/python bench/yjs_relay_cpu.py [--updates 2500] [--rooms 10]`; prints the
process CPU per update (noisy on a shared machine). For a load-independent A/B, count instructions with
callgrind for two update counts and take the difference, e.g.

    for n in 500 2500; do PYTHONPATH=src valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n \\
        .venv/bin/python bench/yjs_relay_cpu.py --updates $n --rooms 10; done
    # (Collected(2500) - Collected(500)) / 2000 = instructions per update

Making the client updates (pycrdt, one Doc per client) is inside the difference and the same for both trees.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from typing import Any

from pycrdt import Doc, Text

from portside.auth.permissions import Actor
from portside.core.config import ConfigStore
from portside.core.db import Database
from portside.core.yjs_store import yjs_metadata
from portside.http.wire import binary_frame
from portside.realtime import yjs_protocol as yp
from portside.realtime.yjs_output import Flusher
from portside.realtime.yjs_rooms import Peer, Room, RoomManager


class FakeConnection:
    """A peer's output as `http.yjs.Connection` batches it (frames of one loop turn joined), minus the socket."""

    def __init__(self, output: Flusher):
        self.output = output
        self.out: list[bytes] = []
        self.written = 0

    def offer(self, message: bytes) -> bool:
        return self.offer_framed(message, binary_frame(message))

    def offer_framed(self, message: bytes, frame: bytes) -> bool:
        if not self.out:
            self.output.add(self)
        self.out.append(frame)
        return True

    def flush(self) -> None:
        frames, self.out = self.out, []
        self.written += len(frames[0] if len(frames) == 1 else b"".join(frames))


async def run(opts: argparse.Namespace) -> None:
    random.seed(7)
    db = Database(f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='yjs-relay-cpu-')}/p.db")
    async with db.engine.begin() as conn:
        await conn.run_sync(yjs_metadata.create_all)
    manager = RoomManager(db, ConfigStore(db))  # no stored config: the defaults
    await manager.start()
    actor = Actor.__new__(Actor)  # never consulted by the relay path
    filler = "lorem ipsum dolor sit amet " * 380
    clients: list[tuple[Room, Peer, Doc[Any]]] = []
    for r in range(opts.rooms):
        base: Doc[Any] = Doc()
        base.get("content", type=Text).insert(0, filler)
        seed = base.get_update()
        for _ in range(opts.clients):
            conn = FakeConnection(manager.output)
            peer = Peer(conn.offer, lambda code, reason: None, actor)
            peer.frame, peer.send_framed = binary_frame, conn.offer_framed
            room = await manager.join(f"room{r}", peer, None)
            doc: Doc[Any] = Doc()
            doc.apply_update(seed)
            clients.append((room, peer, doc))
        manager.receive(room, peer, yp.update_message(seed))
    frames = []
    for i in range(opts.updates):
        room, peer, doc = random.choice(clients)
        text = doc.get("content", type=Text)
        before = doc.get_state()
        text.insert(random.randint(0, len(text)), f"~1.{i}~")
        frames.append((room, peer, yp.update_message(doc.get_update(before))))
    await asyncio.sleep(0.2)
    start = time.process_time()
    for i in range(0, len(frames), opts.burst):
        for room, peer, frame in frames[i : i + opts.burst]:
            manager.receive(room, peer, frame)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    await manager.writer.store("end", b"\x00\x00")  # committed after every update submitted before it
    used = time.process_time() - start
    commits = manager.writer.commits
    print(f"CPU per update {1e6 * used / opts.updates:.1f} us ({opts.updates} updates, {commits} commits)")
    await manager.stop()
    await db.dispose()


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--updates", type=int, default=20_000)
    p.add_argument("--rooms", type=int, default=50)
    p.add_argument("--clients", type=int, default=10, help="peers per room")
    p.add_argument("--burst", type=int, default=25, help="updates read per loop turn")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
