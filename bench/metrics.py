"""Cost of the metrics: Portside get-by-id req/s with and without the HTTP request metrics, in one run.

Run: `.venv/bin/python bench/metrics.py [--rows 20000] [--duration 8] [--repeat 5]`.
Needs what `bench/api.py` needs for its get-by-id cell (`wrk`); it reuses that script's data set, load,
noise metering and median-of-runs code.

Method: bench/api.py's SQLite data set is built once and copied, so two Portside processes serve identical
files: one as shipped (every HTTP request counted into `portside_http_requests_total` and the latency
histogram), one started with the debug switch `PORTSIDE_DEBUG_NO_REQUEST_METRICS=1`, which leaves out the
one per-request piece of instrumentation (`http.metrics.RequestMetrics`). Everything else /metrics shows
is read at scrape time and costs nothing on this path. `--repeat` rounds, the two servers alternating
within each round (the first one swaps every round), the same 1000 rows rotated as in bench/api.py; the median
req/s run of each side is reported, and the ratio with/without. The with-metrics server is scraped once
at the end to show that it counted the load. Unlike bench/api.py this script does not wait for a quiet
machine nor repeat noisy runs: the pairing is what keeps the ratio fair; the load average is recorded.
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
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import api
from common import update_results

SECTION = "## metrics (bench/metrics.py)"
SWITCH = "PORTSIDE_DEBUG_NO_REQUEST_METRICS"
SWAP = False
METRIC_FRAMES = ("prometheus_client/", "portside/tools/metrics.py", "portside/http/metrics.py")


def parse(argv: Sequence[str] | None) -> api.Options:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--duration", type=int, default=8)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--results", type=Path, default=api.RESULTS)
    p.add_argument("--swap", action="store_true", help="the copied data dir gets the with-metrics server")
    p.add_argument("--profile", type=int, default=0, metavar="SECONDS", help="py-spy the with-metrics server")
    a = p.parse_args(argv)
    global SWAP
    SWAP = a.swap
    sizes = [f"--rows={a.rows}", f"--duration={a.duration}", f"--repeat={a.repeat}", f"--connections={a.connections}"]
    return api.parse_args(
        [*sizes, "--no-postgres", "--quiet-wait=0", f"--profile={a.profile}", f"--results={a.results}"]
    )


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


CPU_US: dict[str, list[float]] = {"with": [], "without": []}  # server CPU microseconds per request, per run


def run(
    opts: api.Options, meter: api.CpuMeter, label: str, server: api.Service, script: Path, side: str
) -> api.WrkResult:
    """One warm-up and one measured wrk run, with the CPU share other processes took meanwhile. No waiting
    for a quiet machine and no repeats (unlike bench/api.py): the two servers alternate, so the noise hits
    both sides alike and the paired ratio per round is what counts."""
    if opts.warmup:
        api.run_wrk(opts, server.url, script, opts.warmup)
    busy0, total0 = api.cpu_times()
    ours0, mine0 = meter.jiffies(), api.process_jiffies(server.proc.pid)
    result = api.run_wrk(opts, server.url, script, opts.duration)
    busy1, total1 = api.cpu_times()
    mine = api.process_jiffies(server.proc.pid) - mine0
    other = max(0, (busy1 - busy0) - (meter.jiffies() - ours0)) / max(1, total1 - total0)
    cpu_us = mine / os.sysconf("SC_CLK_TCK") / max(1, result.requests) * 1e6
    CPU_US[side].append(cpu_us)
    print(
        f"  {label:<16} {result.rps:>9.1f} req/s  p99 {result.p99_ms:>8.2f} ms  server CPU {cpu_us:6.1f} us/request"
        f"  (others' CPU {other:.0%})"
    )
    return replace(result, other_cpu=other)


def metrics_share(opts: api.Options, server: api.Service, script: Path, work: Path) -> str:
    """py-spy (GIL holder) under get load: the share of samples spent in the metrics code itself (frames of
    prometheus_client or of the metrics modules at the top of the stack, and `record`)."""
    out = work / "with.collapsed"
    failed = api.py_spy(opts, server, server.url, script, out, gil=True)
    if failed:
        return failed.strip()
    total = mine = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        n = int(count)
        total += n
        top = frames[-1] if frames else ""
        if any(m in top for m in METRIC_FRAMES) or any(
            "prometheus_client/" in f or f.startswith(("record (", "_bind (")) for f in frames
        ):
            mine += n
    return f"{mine} of {total} GIL samples ({100 * mine / max(1, total):.2f}%) in the metrics code"


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
        on = start(twin if SWAP else data_dir, metrics=True)
        stack.callback(on.stop)
        off = start(data_dir if SWAP else twin, metrics=False)
        stack.callback(off.stop)
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="portside-bench-lua-")))
        script = api.write_lua(work, "get", api.lua_rotate([f"/api/{api.TABLE}/{ref}" for _, ref in sample], token))
        for server in (on, off):
            api.check_get(f"{server.url}/api/{api.TABLE}/{sample[0][1]}", token)
        meter = api.CpuMeter([on, off])
        print(f"measuring get by id ({opts.connections} connections, {opts.duration} s each, {opts.repeat} rounds)")
        runs: dict[str, list[api.WrkResult]] = {"with": [], "without": []}
        for n in range(opts.repeat):
            order = (("with", on), ("without", off)) if n % 2 == 0 else (("without", off), ("with", on))
            for side, server in order:
                runs[side].append(run(opts, meter, f"{side} [{n + 1}/{opts.repeat}]", server, script, side))
        with_m, without = api.median_run(runs["with"]), api.median_run(runs["without"])
        paired = sorted(a.rps / b.rps for a, b in zip(runs["with"], runs["without"], strict=True))
        profile = metrics_share(opts, on, script, work) if opts.profile else ""
        admin = "Basic " + base64.b64encode(b"admin@bench.example:" + api.PASSWORD.encode()).decode()
        try:
            note = counted(on.url, admin)
        except Exception as exc:  # the bench's admin credentials differ: the figure stands without the note
            note = f"(scrape failed: {exc})"
    load_end = Path("/proc/loadavg").read_text().strip()
    ratio = with_m.rps / without.rps
    paired_median = paired[(len(paired) - 1) // 2]
    cpu_with, cpu_without = (sorted(CPU_US[k])[(len(CPU_US[k]) - 1) // 2] for k in ("with", "without"))
    lines = [
        SECTION,
        "",
        f"- date: {time.strftime('%a %b %d %H:%M:%S UTC %Y', time.gmtime())}",
        f"- load average at start / end: {load_start} / {load_end}",
        f"- command: `.venv/bin/python bench/metrics.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
        f"Get by id, {opts.rows} rows, wrk -t{opts.threads} -c{opts.connections} -d{opts.duration}s, "
        f"{opts.repeat} rounds, the two servers alternating (the first one swaps every round); "
        "median run per side, and the median of the per-round ratios.",
        "",
        "| server | req/s | p99 ms | range req/s |",
        "|---|---:|---:|---|",
        f"| with request metrics | {with_m.rps:,.1f} | {with_m.p99_ms:.2f} | "
        f"{with_m.rps_low:,.1f} to {with_m.rps_high:,.1f} |",
        f"| without (`{SWITCH}=1`) | {without.rps:,.1f} | {without.p99_ms:.2f} | "
        f"{without.rps_low:,.1f} to {without.rps_high:,.1f} |",
        "",
        f"Ratio with/without: **{ratio:.3f}** of the medians, **{paired_median:.3f}** median of the per-round ratios "
        f"({', '.join(f'{r:.3f}' for r in paired)}); overhead {100 * (1 - paired_median):.1f}% (goal < 3%). "
        f"CPU of other processes during the runs: at most {max(with_m.other_cpu, without.other_cpu):.0%}.",
        "",
        f"Server CPU per request (median run; less sensitive to a busy machine than req/s): with "
        f"{cpu_with:.1f} us, without {cpu_without:.1f} us, ratio {cpu_with / cpu_without:.3f} "
        f"({100 * (cpu_with / cpu_without - 1):+.1f}%).",
        "",
        "When other processes take much of the machine, the req/s of single runs spread widely (see the "
        "per-round ratios) and the server CPU per request moves with them; the py-spy share below is then the "
        "steadier figure of what the instrumentation costs.",
        "",
        f"Counted by the with-metrics server: `{note}`",
        *(
            ["", f"Profile (py-spy --gil, {opts.profile} s under get load, with-metrics server): {profile}."]
            if profile
            else []
        ),
        "",
    ]
    print("\n".join(lines))
    update_results(opts.results, SECTION, "\n".join(lines))
    return 0 if with_m.valid and without.valid else 1


if __name__ == "__main__":
    raise SystemExit(main())
