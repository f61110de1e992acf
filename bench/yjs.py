"""Yjs collaborative editing: Portside against y-websocket@1.5.4 `bin/server.js` and Hocuspocus 4.7.

Run: `.venv/bin/python bench/yjs.py [--rooms 50] [--clients 10] [--rate 5] [--duration 10] [--repeat 5]`.
Needs node + npm; the script installs (once, idempotently) `yjs`, `y-websocket@1.5.4`, `ws`,
`@hocuspocus/server@4.7.0`, `@hocuspocus/extension-sqlite@4.7.0` and `@hocuspocus/provider@4.7.0` into
bench/.work/yjs (git-ignored) and copies the load generator `bench/yjs_load.mjs` and the Hocuspocus server
`bench/yjs_hocuspocus.mjs` there. Results are printed and written to bench/RESULTS.md, section
`## yjs (bench/yjs.py)`; other sections are kept.

Method
  1. Servers. Portside (`portside serve`, fresh data dir, embedded SQLite, every accepted update committed
     to the database before it is relayed), the reference server (`HOST=127.0.0.1 PORT=<free> node
     node_modules/y-websocket/bin/server.js`, in-memory, no persistence) and Hocuspocus
     (`node yjs_hocuspocus.mjs`: `@hocuspocus/server` with `@hocuspocus/extension-sqlite` on a temp file, its
     defaults: the whole document is stored 2 s after the last change, at most every 10 s) run at the same
     time on this machine; each measurement targets one of them while the others sit idle. Portside clients
     carry a signed-in user's token; the other two take any connection. Hocuspocus prefixes every message
     with the document name, so its clients are `@hocuspocus/provider` HocuspocusProviders (one socket each,
     `ws` as the WebSocket); the other two get y-websocket WebsocketProviders.
  2. Load generator (the same script for every server, `--workers` Node processes that split the rooms and
     start sending at one agreed wall-clock moment; a room lives in one process): `--rooms` rooms x
     `--clients` y-websocket WebsocketProviders (disableBc, no resync interval). After the initial sync, the first
     client of each room inserts 10 KB of text once; every client then inserts a small tagged string
     (`~room.client.seq~`, about 10 bytes) at a random position, `--rate` times per second with a random
     phase. Each receiving client finds the tags in the remote insert and records now - send time (same
     process, one clock): that is the fan-out latency, sender -> server -> the 9 other clients. Warm-up
     `--warmup` s (not recorded), then `--duration` s recorded, then 1.5 s for late deliveries.
  3. Turns: the main run (`--rate`) is repeated `--repeat` times (default 5) per server, the servers taking
     turns (each repetition runs every server once, the order rotating), and the medians are reported: the
     load generator needs most of the 2 cores, so one run's p99 swings by 2-3x with whatever else the
     machine does. A ratio is taken within one repetition (servers measured minutes apart at most) and the
     median of the repetitions' ratios is reported.
     Server CPU per update: utime+stime of the server process (from /proc/<pid>/stat, sampled every 50 ms)
     over the recorded window that the load generators report (epoch ms), divided by the updates sent in
     that window (each is received once by the server and relayed to the room's other clients).
     Ramp: per-client rates `--ramp` (default 1,2,3,4,5,6,7,8,10/s), again taking turns; a step passes when
     one of up to `--tries` attempts (default 2) sends at least 95% of its target, delivers everything and
     has p99 <= 100 ms, and a server's ramp ends at its first failed step. The sustained rate is the target
     (offered) updates/s of the highest passed step: what the generator actually sent in a step varies by a
     few percent with its timers, for either server, so comparing sent rates of the same step measures
     the generator; the sent rates are listed in the steps table.
  4. Memory (first, after an unrecorded warm-up round of 20 rooms; Portside and the reference server only:
     Hocuspocus unloads a document when its last client leaves): `--mem-rooms` rooms are loaded (one
     client each inserts 10 KB of text, then all clients leave; both servers keep the rooms in memory:
     Portside's idle unload is raised to 600 s for this). RSS per loaded room = (server RSS after - RSS
     before) / rooms, read from /proc/<pid>/status VmRSS.
  5. Noise: before each step the script waits (at most `--quiet-wait`, 60 s) until the machine is >= 85% idle (other
     engineers' runs share it) and reports the idle share it started from.
  The servers share the machine with the load generator (2 cores): absolute numbers are low; the
  ratios are what the goals compare.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from live import RESULTS, ROOT, Proc, request, sign_up_and_in, start_portside

SECTION = "## yjs (bench/yjs.py)"
TABLES = ("_yjs_document", "_yjs_journal")  # the journal: updates not yet folded in (core/yjs_store.py)
WORK = ROOT / "bench" / ".work" / "yjs"
SERVERS = ("portside", "reference", "hocuspocus")
LABELS = {
    "portside": "Portside (persists every update)",
    "reference": "y-websocket 1.5.4 (memory only)",
    "hocuspocus": "Hocuspocus 4.7 + extension-sqlite (stores the document 2-10 s after changes)",
}
SHORT = {"portside": "Portside", "reference": "y-websocket", "hocuspocus": "Hocuspocus"}
NPM_PACKAGES = [
    "yjs@13",
    "y-protocols@1",
    "y-websocket@1.5.4",
    "ws@8",
    "@hocuspocus/server@4.7.0",
    "@hocuspocus/extension-sqlite@4.7.0",
    "@hocuspocus/provider@4.7.0",
]
NPM_MARKERS = [  # present once every package above is installed (better-sqlite3 also built)
    "y-websocket/bin/server.js",
    "@hocuspocus/server/package.json",
    "@hocuspocus/provider/package.json",
    "@hocuspocus/extension-sqlite/package.json",
    "better-sqlite3/build/Release/better_sqlite3.node",
]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def prepare_node() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    if not all((WORK / "node_modules" / m).exists() for m in NPM_MARKERS):
        (WORK / "package.json").write_text(json.dumps({"name": "yjs-bench", "private": True, "type": "module"}))
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", *NPM_PACKAGES], cwd=WORK, check=True)
    for script in ("yjs_load.mjs", "yjs_hocuspocus.mjs"):
        shutil.copy(ROOT / "bench" / script, WORK / script)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_node(name: str, args: list[str], port: int) -> tuple[Proc, str]:
    proc = subprocess.Popen(args, cwd=WORK, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, text=True)
    p = Proc(name, proc, None)  # type: ignore[arg-type]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return p, f"ws://127.0.0.1:{port}"
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    p.stop()
    raise RuntimeError(f"{name} server did not start")


def start_reference() -> tuple[Proc, str]:
    port = free_port()
    return start_node(
        "reference", ["env", "HOST=127.0.0.1", f"PORT={port}", "node", "node_modules/y-websocket/bin/server.js"], port
    )


def start_hocuspocus(database: Path) -> tuple[Proc, str]:
    port = free_port()
    return start_node("hocuspocus", ["node", "yjs_hocuspocus.mjs", str(port), str(database)], port)


class CpuSampler:
    """utime+stime of a process sampled every 50 ms in a thread, readable at any past moment (epoch s)."""

    def __init__(self, proc: Proc):
        self.proc = proc
        self.samples: list[tuple[float, float]] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True, name=f"cpu-{proc.name}")
        self.thread.start()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.samples.append((time.time(), self.proc.cpu_seconds()))
            self.stopped.wait(0.05)

    def at(self, t: float) -> float:
        samples = list(self.samples)
        before = [x for x in samples if x[0] <= t]
        after = [x for x in samples if x[0] >= t]
        if not before or not after:
            return (before or after or [(t, 0.0)])[-1 if before else 0][1]
        (t0, c0), (t1, c1) = before[-1], after[0]
        return c0 if t1 == t0 else c0 + (c1 - c0) * (t - t0) / (t1 - t0)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()


def load(cfg: dict[str, Any], workers: int, timeout: float = 300) -> dict[str, Any]:
    """Run the generator in `workers` processes (rooms split between them) and merge their results."""
    rooms = cfg["rooms"]
    start_at = int(time.time() * 1000) + 5000 + 12 * rooms * cfg["clients"] // max(1, workers)
    procs = []
    for w in range(workers):
        lo, hi = rooms * w // workers, rooms * (w + 1) // workers
        part = {**cfg, "roomStart": lo, "roomEnd": hi, "startAt": start_at, "raw": True}
        procs.append(
            subprocess.Popen(
                ["node", "yjs_load.mjs", json.dumps(part)], cwd=WORK, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        )
    parts = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
        if not lines:
            raise RuntimeError(f"load generator failed: {out.decode()[-2000:]}\n{err.decode()[-2000:]}")
        parts.append(json.loads(lines[-1]))
    lat = sorted(x for part in parts for x in part["latencies"])
    window = max(part["window"] for part in parts)
    sent = sum(part["sent"] for part in parts)
    received = sum(part["received"] for part in parts)

    def q(p: float) -> float | None:
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else None

    return {
        "sent": sent,
        "sentPerSec": sent / window,
        "received": received,
        "expected": sum(part["expected"] for part in parts),
        "deliveriesPerSec": received / window,
        "p50": q(0.5),
        "p99": q(0.99),
        "max": lat[-1] if lat else None,
        "divergedClients": sum(part["divergedClients"] for part in parts),
        "late": any(part["late"] for part in parts),
        "window": window,
        "recordStart": min(part["recordStart"] for part in parts) / 1000,
        "recordEnd": max(part["recordEnd"] for part in parts) / 1000,
    }


def memory(target: dict[str, Any], pid: int, rooms: int, prefix: str) -> float:
    before = rss_kb(pid)
    cfg = {**target, "rooms": rooms, "clients": 1, "rate": 1, "duration": 0, "warmup": 0, "textKB": 10}
    cfg.update(prefix=prefix, hold=8)
    proc = subprocess.Popen(["node", "yjs_load.mjs", json.dumps(cfg)], cwd=WORK, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith('{"ready"'):
            break
        if line.startswith('{"error"'):
            raise RuntimeError(line)
    time.sleep(4)  # the servers notice the closes and drop the connections
    after = rss_kb(pid)
    proc.kill()
    proc.wait()
    return (after - before) / rooms


def idle_share(seconds: float = 1.0) -> float:
    """Fraction of the machine's CPU time that was idle over `seconds` (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)

    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
    return (idle1 - idle0) / max(1, total1 - total0)


def wait_quiet(limit: float = 60.0) -> float:
    """Wait (bounded) until other work leaves the machine at least 85% idle; returns the last idle share."""
    deadline = time.monotonic() + limit
    share = idle_share()
    while share < 0.85 and time.monotonic() < deadline:
        share = idle_share(2.0)
    return share


def step(
    target: dict[str, Any], proc: Proc, cpu: CpuSampler, opts: argparse.Namespace, rate: float, prefix: str
) -> dict[str, Any]:
    cfg = {
        **target,
        "rooms": opts.rooms,
        "clients": opts.clients,
        "rate": rate,
        "duration": opts.duration,
        "warmup": opts.warmup,
        "textKB": 10,
        "prefix": prefix,
    }
    quiet = wait_quiet(opts.quiet_wait)
    before = proc.cpu_seconds()
    t0 = time.monotonic()
    r = load(cfg, opts.workers)
    r["server_cpu"] = 100 * (proc.cpu_seconds() - before) / (time.monotonic() - t0)
    time.sleep(0.1)  # one more sample after the window's end
    used = cpu.at(r["recordEnd"]) - cpu.at(r["recordStart"])
    r["cpu_recorded"] = 100 * used / max(1e-9, r["recordEnd"] - r["recordStart"])
    r["cpu_per_update_us"] = 1e6 * used / r["sent"] if r["sent"] else None
    r["rate"] = rate
    r["idle_before"] = quiet
    r["target"] = rate * opts.rooms * opts.clients
    return r


def sustained(r: dict[str, Any]) -> bool:
    return (
        r.get("p99") is not None
        and r["p99"] <= 100
        and r["received"] >= r["expected"]
        and r["sentPerSec"] >= 0.95 * r["target"]
    )


def fmt(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()


def write_section(lines: list[str]) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    body = "\n".join(lines).rstrip() + "\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: body + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + body
    RESULTS.write_text(text)


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num is not None and den else None


def median_ratio(pairs: list[tuple[float | None, float | None]]) -> float | None:
    """Median over the repetitions of num/den (both measured in the same repetition)."""
    return median([ratio(n, d) for n, d in pairs])


def goals(results: dict[str, dict[str, Any]]) -> list[str]:
    """The ratio lines: each ratio is taken within one repetition, then the median over repetitions."""
    P = results.get("portside")
    if P is None:
        return []
    out = [
        "| goal (issue 17) | ratio (median of per-repetition ratios) | target | met |",
        "|---|---:|---:|---|",
    ]

    def row(label: str, value: float | None, target: float) -> None:
        met = "-" if value is None else ("yes" if value >= target else "no")
        out.append(f"| {label} | {fmt(value, 2)} | >= {target:g} | {met} |")

    for name, target in (("reference", 1.0), ("hocuspocus", 1.5)):
        other = results.get(name)
        if other is None:
            continue
        pairs = list(zip(other["runs"], P["runs"], strict=False))
        short = SHORT[name]
        if name == "reference":
            row(f"p50 latency, {short} / Portside", median_ratio([(o["p50"], p["p50"]) for o, p in pairs]), target)
        row(f"p99 latency, {short} / Portside", median_ratio([(o["p99"], p["p99"]) for o, p in pairs]), target)
        cpu_target = 1.0 if name == "reference" else 0.0
        cpu = median_ratio([(o["cpu_per_update_us"], p["cpu_per_update_us"]) for o, p in pairs])
        if cpu_target:
            row(f"server CPU per update, {short} / Portside", cpu, cpu_target)
        else:
            out.append(f"| server CPU per update, {short} / Portside (no goal) | {fmt(cpu, 2)} | - | - |")
        row(f"sustained rate, Portside / {short}", ratio(P["sustained"], other["sustained"]), target)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rooms", type=int, default=50)
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--rate", type=float, default=5.0, help="edits per second per client (main run)")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--ramp", default="1,2,3,4,5,6,7,8,10", help="per-client rates for the sustained-rate search")
    p.add_argument("--mem-rooms", type=int, default=200, help="0 skips the memory phase")
    p.add_argument("--workers", type=int, default=2, help="load generator processes (rooms split between them)")
    p.add_argument("--repeat", type=int, default=5, help="main runs per server, taking turns; medians reported")
    p.add_argument("--tries", type=int, default=2, help="attempts per ramp step; a step passes if one does")
    p.add_argument("--servers", default=",".join(SERVERS), help="which of portside,reference,hocuspocus to run")
    p.add_argument("--quiet-wait", type=float, default=60.0, help="max seconds to wait for an idle machine")
    p.add_argument("--no-write", action="store_true", help="print only, do not touch RESULTS.md")
    opts = p.parse_args(argv)
    chosen = [s for s in SERVERS if s in opts.servers.split(",")]
    prepare_node()
    data_dir = Path(tempfile.mkdtemp(prefix="portside-yjs-bench-"))
    servers: dict[str, Proc] = {}
    targets: dict[str, dict[str, Any]] = {}
    results: dict[str, dict[str, Any]] = {}
    samplers: dict[str, CpuSampler] = {}
    stored = ""
    try:
        if "portside" in chosen:
            portside = servers["portside"] = start_portside(data_dir)
            admin, _ = sign_up_and_in(portside.url, "yadmin")
            token, _ = sign_up_and_in(portside.url, "ybench")  # before an administrator exists: signup is open
            request("POST", f"{portside.url}/action/world/become_an_administrator", {}, token=admin)
            status, _ = request("PUT", f"{portside.url}/_config/backend/yjs.idle_unload_seconds", 600, token=admin)
            assert status in (200, 201), status
            targets["portside"] = {"url": portside.url.replace("http://", "ws://") + "/yjs", "params": {"token": token}}
        if "reference" in chosen:
            servers["reference"], url = start_reference()
            targets["reference"] = {"url": url, "params": {}}
        if "hocuspocus" in chosen:
            servers["hocuspocus"], url = start_hocuspocus(data_dir / "hocuspocus.sqlite")
            targets["hocuspocus"] = {"url": url, "params": {}, "provider": "hocuspocus"}
        for name in chosen:
            samplers[name] = CpuSampler(servers[name])
            pid = servers[name].proc.pid
            res: dict[str, Any] = {"rss_start_kb": rss_kb(pid), "mem_per_room_kb": None, "runs": [], "ramp": []}
            if opts.mem_rooms and name != "hocuspocus":
                memory(targets[name], pid, 20, f"memwarm-{name}")  # first-use allocations not counted
                res["mem_per_room_kb"] = memory(targets[name], pid, opts.mem_rooms, f"mem-{name}")
                print(f"{name}: RSS per loaded room {res['mem_per_room_kb']:.1f} KiB", flush=True)
            results[name] = res
        # the servers take turns (the order rotating), so a noisy minute on the shared machine hits all alike
        for rep in range(opts.repeat):
            for name in chosen[rep % len(chosen) :] + chosen[: rep % len(chosen)]:
                r = step(targets[name], servers[name], samplers[name], opts, opts.rate, f"main{rep}-{name}")
                print(f"{name}: main {json.dumps(r)}", flush=True)
                results[name]["runs"].append(r)
        keys = ("p50", "p99", "sentPerSec", "deliveriesPerSec", "cpu_per_update_us", "cpu_recorded")
        for name in chosen:
            runs = results[name]["runs"]
            results[name]["main"] = {
                **runs[0],
                **{k: median([r[k] for r in runs]) for k in keys},
                "received": sum(r["received"] for r in runs),
                "expected": sum(r["expected"] for r in runs),
            }
        climbing = set(chosen)
        for rate in [float(x) for x in opts.ramp.split(",") if x]:
            for name in chosen:
                if name not in climbing:
                    continue
                for attempt in range(opts.tries):
                    prefix = f"ramp{attempt}-{name}-{rate:g}"
                    r = step(targets[name], servers[name], samplers[name], opts, rate, prefix)
                    r["attempt"] = attempt + 1
                    print(f"{name}: ramp {json.dumps(r)}", flush=True)
                    results[name]["ramp"].append(r)
                    if sustained(r):
                        break
                else:
                    climbing.discard(name)
            if not climbing:
                break
        for name in chosen:
            res = results[name]
            ok = [r for r in res["ramp"] if sustained(r)]
            res["sustained"] = max((r["target"] for r in ok), default=0.0)
            res["cpu_s"] = servers[name].cpu_seconds()
            res["rss_end_kb"] = rss_kb(servers[name].proc.pid)
        if "portside" in chosen:
            rows = " UNION ALL ".join(f"SELECT data FROM {t}" for t in TABLES)
            query = f"SELECT count(*), coalesce(sum(length(data)), 0) FROM ({rows})"
            stored = subprocess.run(
                ["sqlite3", str(data_dir / "portside.db"), query],
                capture_output=True,
                text=True,
            ).stdout.strip()
    finally:
        for sampler in samplers.values():
            sampler.stop()
        for proc in servers.values():
            proc.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    rows: list[str] = []
    for name in chosen:
        res = results[name]
        m = res["main"]
        rows.append(
            f"| {LABELS[name]} | {fmt(m['p50'])} | {fmt(m['p99'])} | {fmt(m['sentPerSec'])} "
            f"| {fmt(m['deliveriesPerSec'])} | {m['received']:,}/{m['expected']:,} | {fmt(m['cpu_per_update_us'], 0)} "
            f"| {fmt(m['cpu_recorded'], 0)} | {fmt(res['sustained'], 0)} | {fmt(res['mem_per_room_kb'])} |"
        )
    P = results.get("portside")
    lines = [
        SECTION,
        "",
        f"- date: {dt.datetime.now(dt.UTC):%a %b %d %H:%M:%S UTC %Y}",
        f"- machine: nproc {len(os.sched_getaffinity(0))}",
        f"- portside commit: {commit()}",
        f"- command: `.venv/bin/python bench/yjs.py {' '.join(sys.argv[1:] if argv is None else argv)}`".replace(
            "yjs.py `", "yjs.py`"
        ),
        "",
        (__doc__ or "").split("Method\n", 1)[1].rstrip(),
        "",
        f"Main run: {opts.rooms} rooms x {opts.clients} clients, {opts.rate:g} edits/s per client, "
        f"{opts.duration:g} s recorded, {opts.repeat} runs per server taking turns (medians of the runs' p50, "
        f"p99, rates and CPU; delivered = all runs). Sustained = highest target updates/s of the ramp "
        f"({opts.ramp} per client, servers taking turns, up to {opts.tries} attempts per step) with every "
        "delivery arrived and p99 <= 100 ms.",
        "",
        "| server | fan-out p50 ms | p99 ms | updates/s sent | deliveries/s | delivered | server CPU us per update "
        "| server CPU % (recorded window) | sustained updates/s | RSS per loaded room KiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        *goals(results),
        "",
    ]
    if P is not None and P["mem_per_room_kb"] is not None:
        lines.append(
            f"RSS per loaded room goal <= 100 KiB: {'met' if P['mem_per_room_kb'] <= 100 else 'NOT met'} "
            f"({fmt(P['mem_per_room_kb'])} KiB)."
        )
    if stored:
        lines.append(
            "Portside stored rows / bytes in `_yjs_document` + `_yjs_journal` at the end (after compaction): "
            f"{stored.replace('|', ' / ')}."
        )
    lines += [
        "",
        "Main runs and ramp steps:",
        "",
        "| server | step | per-client rate | target updates/s | sent/s | p50 ms | p99 ms | delivered "
        "| diverged clients | server CPU us per update | server CPU % (recorded) | machine idle before |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in chosen:
        res = results[name]
        steps = [(f"main {i + 1}", r) for i, r in enumerate(res["runs"])]
        steps += [(f"ramp try {r['attempt']}", r) for r in res["ramp"]]
        for label, r in steps:
            lines.append(
                f"| {SHORT[name]} | {label} | {r['rate']:g} | {r['target']:,.0f} | {fmt(r['sentPerSec'])} "
                f"| {fmt(r['p50'])} | {fmt(r['p99'])} | {r['received']:,}/{r['expected']:,} | {r['divergedClients']} "
                f"| {fmt(r['cpu_per_update_us'], 0)} | {fmt(r['cpu_recorded'], 0)} | {100 * r['idle_before']:.0f}% |"
            )
    print("\n".join(lines))
    if not opts.no_write:
        write_section(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
