"""Idle scale of /live: many authenticated WebSocket connections held open, memory per connection.

Method: one Portside (SQLite, fresh data dir); an administrator raises `live.max_connections_per_user`
(live config) so one bench user may hold them all. A separate client process opens `--sockets`
connections (asyncio `websockets`, no compression) in batches, reads each `session` frame and then stays
idle, answering the server's WebSocket pings (automatic) and sending an application `ping` on a rotating
sample every 10 s (each must get its `pong`). Portside's RSS (VmRSS) is read before the connections,
right after them, and every 30 s while they are held for `--hold` seconds: RSS per connection is
(RSS - RSS before) / connections, and growth is the last sample minus the first held sample.
Everything runs on 127.0.0.1 and stops by itself; processes are cleaned up in `finally`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import RESULTS, request, update_results
from live import BIN, sign_up_and_in, start_portside

SECTION = "## idle (bench/idle.py)"
BATCH = 250


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def hold(url: str, token: str, sockets: int, seconds: float) -> dict[str, Any]:
    """Client role: open, hold, ping a sample; report to stdout as JSON lines."""
    import websockets

    ws_url = url.replace("http://", "ws://") + f"/live?token={token}&encoding=json"
    conns: list[Any] = []
    for start in range(0, sockets, BATCH):
        batch = await asyncio.gather(
            *(
                websockets.connect(ws_url, compression=None, open_timeout=60, ping_interval=None)
                for _ in range(min(BATCH, sockets - start))
            )
        )
        for ws in batch:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
            assert frame["type"] == "session"
        conns.extend(batch)
    print(json.dumps({"connected": len(conns)}), flush=True)
    pongs = failures = 0
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        await asyncio.sleep(min(10.0, max(0.0, deadline - time.monotonic())))
        sample = [conns[(i + k) % len(conns)] for k in range(100)]
        i += 100
        for ws in sample:
            try:
                await ws.send('{"method":"ping"}')
                reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                pongs += reply.get("type") == "pong"
            except Exception:
                failures += 1
    open_now = sum(1 for ws in conns if ws.state.name == "OPEN")
    for ws in conns:
        await ws.close()
    return {"pongs": pongs, "ping_failures": failures, "open_at_end": open_now}


def client_role(url: str, token: str, sockets: int, seconds: float) -> int:
    result = asyncio.run(hold(url, token, sockets, seconds))
    print(json.dumps(result), flush=True)
    return 0


def commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sockets", type=int, default=10_000)
    p.add_argument("--hold", type=float, default=300.0, help="seconds the connections are held")
    p.add_argument("--client", nargs=2, metavar=("URL", "TOKEN"), help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.client:
        return client_role(opts.client[0], opts.client[1], opts.sockets, opts.hold)
    data = Path(tempfile.mkdtemp(prefix="portside-idle-"))
    server = start_portside(data)
    client: subprocess.Popen[str] | None = None
    try:
        admin, _ = sign_up_and_in(server.url, "idle-admin")
        user, _ = sign_up_and_in(server.url, "idle-user")
        status, _ = request("POST", f"{server.url}/action/world/become_an_administrator", token=admin)
        assert status == 200, status
        for key, value in (
            ("live.max_connections_per_user", opts.sockets + 10),
            ("live.max_connections", opts.sockets + 10),
        ):
            status, _ = request("POST", f"{server.url}/_config/backend/{key}", str(value), token=admin)
            assert status == 200, status
        pid = server.proc.pid
        before = rss_kb(pid)
        client = subprocess.Popen(
            [
                str(BIN / "python"),
                __file__,
                "--sockets",
                str(opts.sockets),
                "--hold",
                str(opts.hold),
                "--client",
                server.url,
                user,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert client.stdout is not None
        connected = json.loads(client.stdout.readline())["connected"]
        t0 = time.monotonic()
        samples = [(0.0, rss_kb(pid))]
        while client.poll() is None and time.monotonic() - t0 < opts.hold + 60:
            time.sleep(min(30.0, max(1.0, opts.hold - (time.monotonic() - t0))))
            if client.poll() is None:
                samples.append((time.monotonic() - t0, rss_kb(pid)))
        result = json.loads(client.stdout.readline() or "{}")
        client.wait(120)
        held = samples[0][1]
        last = samples[-1][1]
        per_conn = (held - before) * 1024 / max(1, connected)
        lines = [
            SECTION,
            "",
            f"- date: {time.strftime('%a %b %d %H:%M:%S UTC %Y', time.gmtime())}",
            f"- machine: nproc {os.cpu_count()}",
            f"- portside commit: {commit()}",
            f"- command: `.venv/bin/python bench/idle.py --sockets {opts.sockets} --hold {opts.hold:.0f}`",
            "",
            __doc__.split("\n\n", 1)[1].strip(),
            "",
            "| connections | RSS before | RSS after connect | RSS at end | per connection | growth while held "
            "| app pings answered |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {connected:,} | {before / 1024:.1f} MiB | {held / 1024:.1f} MiB | {last / 1024:.1f} MiB | "
            f"{per_conn / 1024:.1f} KiB | {(last - held) / 1024:+.1f} MiB | {result.get('pongs', 0)}/"
            f"{result.get('pongs', 0) + result.get('ping_failures', 0)} (open at end: {result.get('open_at_end')}) |",
            "",
            "RSS samples (s since connected: MiB): " + ", ".join(f"{t:.0f}: {kb / 1024:.1f}" for t, kb in samples),
        ]
        print("\n".join(lines))
        update_results(RESULTS, SECTION, "\n".join(lines))
        return 0
    finally:
        if client is not None and client.poll() is None:
            client.kill()
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
