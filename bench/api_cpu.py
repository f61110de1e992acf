"""Server CPU per request of one bench/api.py path (create, get or list), for A/B runs on a busy machine.

Run: `PYTHONPATH=<tree>/src .venv/bin/python bench/api_cpu.py create [--seconds 8] [--connections 32]
[--rows 5000] [--runs 2]`; run it for main's tree and a branch's tree one right after the other.

Same data, schema, users and requests as bench/api.py (it reuses that script's set-up), one Portside
only (no Datasette), a short bulk load. Per run it prints wrk's req/s and p99, and the figures a shared
machine changes far less than those: the server process's CPU (utime+stime of all its threads, from
/proc/PID/stat) divided by the requests served, and from /proc/PID/task/*/schedstat the shares of the
wall-clock time its threads ran and waited runnable for a CPU (a large wait share means the tail latency
measured is the scheduler's, not the server's).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import tempfile
import time
from pathlib import Path

import api  # bench/api.py (this script's directory is first on sys.path)


def sched_ns(pid: int) -> tuple[int, int]:
    """(ran, waited runnable) nanoseconds summed over the process's threads."""
    ran = waited = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            a, b, _ = (task / "schedstat").read_text().split()
            ran, waited = ran + int(a), waited + int(b)
    return ran, waited


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("path", choices=("create", "get", "list"))
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--rows", type=int, default=5000)
    p.add_argument("--runs", type=int, default=2)
    a = p.parse_args()
    opts = api.parse_args(
        ["--rows", str(a.rows), "--duration", str(a.seconds), "--connections", str(a.connections), "--quiet-wait", "0"]
    )
    rng = random.Random(opts.seed)
    with contextlib.ExitStack() as stack:
        data_dir, token, bench_id = api.build_sqlite(opts, stack, rng)
        _, sample = api.bench_rows(data_dir / "portside.db", bench_id, rng)
        server = api.start_portside(data_dir)
        stack.callback(server.stop)
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="portside-api-cpu-")))
        url = server.url
        if a.path == "create":
            body = api.create_body(rng)
            api.check_create(server.url, token, body)
            script = api.write_lua(work, "post", api.lua_post(body, token))
            url = f"{server.url}/api/{api.TABLE}"
        elif a.path == "get":
            paths = [f"/api/{api.TABLE}/{ref}" for _, ref in sample]
            script = api.write_lua(work, "get", api.lua_rotate(paths, token))
        else:
            script = api.write_lua(work, "auth", api.lua_headers(token))
            url = f"{server.url}/api/{api.TABLE}?page%5Bsize%5D={api.PAGE_SIZE}"
        api.run_wrk(opts, url, script, 2)  # warm-up
        pid, tick = server.proc.pid, os.sysconf("SC_CLK_TCK")
        for _ in range(a.runs):
            cpu0, sched0, t0 = api.process_jiffies(pid), sched_ns(pid), time.monotonic()
            r = api.run_wrk(opts, url, script, a.seconds)
            cpu1, sched1, wall = api.process_jiffies(pid), sched_ns(pid), time.monotonic() - t0
            per_op = (cpu1 - cpu0) / tick / max(1, r.requests) * 1e6
            ran, waited = ((x1 - x0) / 1e9 / wall for x0, x1 in zip(sched0, sched1, strict=True))
            print(
                f"{a.path} c{a.connections}: {r.rps:,.1f} req/s p99 {r.p99_ms:,.1f} ms n={r.requests} "
                f"non-2xx={r.non_2xx} | server CPU {per_op:,.0f} us/request | threads ran {ran:.0%}, "
                f"waited for a CPU {waited:.0%} of wall | load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
