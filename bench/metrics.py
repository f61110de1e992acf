"""Cost of the metrics: Portside get-by-id req/s with and without the HTTP request metrics, in one run.

Run: `.venv/bin/python bench/metrics.py [--rows 20000] [--duration 8] [--repeat 5]`.
Needs what `bench/api.py` needs for its get-by-id cell (`wrk`); it reuses that script's data set, load,
noise metering and median-of-runs code.

Method: bench/api.py's SQLite data set is built once and copied, so two Portside processes serve identical
files: one as shipped (every HTTP request counted into `portside_http_requests_total` and the latency
histogram), one started with the debug switch `PORTSIDE_DEBUG_NO_REQUEST_METRICS=1`, which leaves out the
one per-request piece of instrumentation (`http.metrics.RequestMetrics`). Everything else /metrics shows
is read at scrape time and costs nothing on this path. `--repeat` rounds, the two servers alternating
within each round (same order every round), the same 1000 rows rotated as in bench/api.py; the median
req/s run of each side is reported, and the ratio with/without. The with-metrics server is scraped once
at the end to show that it counted the load.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import random
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import api
from common import update_results

SECTION = "## metrics (bench/metrics.py)"
SWITCH = "PORTSIDE_DEBUG_NO_REQUEST_METRICS"


def parse(argv: Sequence[str] | None) -> api.Options:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--duration", type=int, default=8)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--results", type=Path, default=api.RESULTS)
    a = p.parse_args(argv)
    sizes = [f"--rows={a.rows}", f"--duration={a.duration}", f"--repeat={a.repeat}", f"--connections={a.connections}"]
    return api.parse_args([*sizes, "--no-postgres", f"--results={a.results}"])


def start(data_dir: Path, *, metrics: bool) -> api.Service:
    saved = os.environ.get(SWITCH)
    if metrics:
        os.environ.pop(SWITCH, None)
    else:
        os.environ[SWITCH] = "1"
    try:
        return api.start_portside(data_dir)
    finally:
        if saved is None:
            os.environ.pop(SWITCH, None)
        else:
            os.environ[SWITCH] = saved


def counted(url: str, admin_basic: str) -> str:
    req = urllib.request.Request(f"{url}/metrics", headers={"Authorization": admin_basic})
    with urllib.request.urlopen(req, timeout=30) as r:
        text = r.read().decode()
    lines = [x for x in text.splitlines() if x.startswith("portside_http_requests_total") and "{table}/{ref}" in x]
    return "; ".join(lines) or "(nothing counted)"


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse(argv)
    api.preflight(opts)
    rng = random.Random(opts.seed)
    load_start = Path("/proc/loadavg").read_text().strip()
    with contextlib.ExitStack() as stack:
        data_dir, token, bench_id = api.build_sqlite(opts, stack, rng)
        twin = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="portside-bench-nometrics-")))
        shutil.copytree(data_dir, twin, dirs_exist_ok=True)
        _, sample = api.bench_rows(data_dir / "portside.db", bench_id, rng)
        on = start(data_dir, metrics=True)
        stack.callback(on.stop)
        off = start(twin, metrics=False)
        stack.callback(off.stop)
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="portside-bench-lua-")))
        script = api.write_lua(work, "get", api.lua_rotate([f"/api/{api.TABLE}/{ref}" for _, ref in sample], token))
        for server in (on, off):
            api.check_get(f"{server.url}/api/{api.TABLE}/{sample[0][1]}", token)
        meter = api.CpuMeter([on, off])
        print(f"measuring get by id ({opts.connections} connections, {opts.duration} s each, {opts.repeat} rounds)")
        row = api.measure_cell(
            opts,
            meter,
            "get by id",
            [api.Target("with-metrics", on.url, script), api.Target("without", off.url, script)],
        )
        with_m, without = row["with-metrics"], row["without"]
        assert with_m is not None and without is not None
        admin = "Basic " + base64.b64encode(b"admin@bench.example:" + api.PASSWORD.encode()).decode()
        try:
            note = counted(on.url, admin)
        except Exception as exc:  # the bench's admin credentials differ: the figure stands without the note
            note = f"(scrape failed: {exc})"
    load_end = Path("/proc/loadavg").read_text().strip()
    ratio = with_m.rps / without.rps
    lines = [
        SECTION,
        "",
        f"- date: {time.strftime('%a %b %d %H:%M:%S UTC %Y', time.gmtime())}",
        f"- load average at start / end: {load_start} / {load_end}",
        f"- command: `.venv/bin/python bench/metrics.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
        f"Get by id, {opts.rows} rows, wrk -t{opts.threads} -c{opts.connections} -d{opts.duration}s, "
        f"{opts.repeat} rounds alternating; median run per side (range in brackets).",
        "",
        "| server | req/s | p99 ms | range req/s |",
        "|---|---:|---:|---|",
        f"| with request metrics | {with_m.rps:,.1f} | {with_m.p99_ms:.2f} | "
        f"{with_m.rps_low:,.1f} to {with_m.rps_high:,.1f} |",
        f"| without (`{SWITCH}=1`) | {without.rps:,.1f} | {without.p99_ms:.2f} | "
        f"{without.rps_low:,.1f} to {without.rps_high:,.1f} |",
        "",
        f"Ratio with/without: **{ratio:.3f}** (overhead {100 * (1 - ratio):.1f}%; goal < 3%). "
        f"CPU of other processes during the runs: at most {max(with_m.other_cpu, without.other_cpu):.0%}.",
        "",
        f"Counted by the with-metrics server: `{note}`",
        "",
    ]
    print("\n".join(lines))
    update_results(opts.results, SECTION, "\n".join(lines))
    return 0 if with_m.valid and without.valid else 1


if __name__ == "__main__":
    raise SystemExit(main())
