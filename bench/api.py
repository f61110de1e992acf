"""HTTP API benchmark: Portside against Datasette on the same SQLite file, plus create throughput.

Run: `.venv/bin/python bench/api.py --repeat 5 [--rows 100000] [--duration 10] [--connections 32]` (issue 17's
goals are medians of >= 5 interleaved runs; 5 is also the default).
Needs `wrk` (Debian package `wrk`), `datasette` in the venv (`pip install -e '.[bench]'`) and, for the
PostgreSQL row, a server on 127.0.0.1:5432 reachable as `postgres` without a password (plus the
`createdb`/`dropdb` clients). Results are printed and written to bench/RESULTS.md, section
`## api (bench/api.py)`; other sections of that file are kept.

Method
  1. Data. Portside starts on a fresh data dir holding `schema_bench.yaml` (table `item`, 20 user columns
     of mixed types, row DefaultPermission owner-all + group-read, table Permission 561441 with group
     `users` allowed everything at table level so signed-in users may create). While no administrator
     exists, two users sign up: `admin` (then `become_an_administrator`) and `bench`. The server is
     stopped and `--rows` rows are inserted straight into the SQLite file in one transaction; the columns
     come from `PRAGMA table_info(item)`. 90% of the rows belong to `bench`, 10% to `admin`; no row is
     linked to a group, so `bench` sees only its own rows and the permission filter really filters.
  2. Serving. Portside restarts on that data dir; Datasette serves the same file at the same time. Each
     measurement targets one server while the other sits idle.
  3. Load. `wrk -t<threads> -c<connections> -d<duration>s --latency --timeout 10s`, after an unrecorded
     warm-up run of a few seconds against the same URL. Each cell is measured `--repeat` times (default
     5), Portside and Datasette runs alternating, and the run with the median req/s is reported (with
     the range). Portside requests carry the bench user's token
     (added by a small Lua script), so list and read go through the row-permission filter. Get-by-id
     rotates through the same 1000 random `bench` rows on both servers (Portside by ref, Datasette by
     rowid). Create posts a small body as `bench`, first on the bulk-loaded SQLite file, then on a fresh
     PostgreSQL database prepared the same way through the API. Any non-2xx response or socket error
     marks the run invalid; every target URL is also checked once before its load run.
  4. Noise. The machine may be shared: before each run the script waits (bounded) for idle CPUs, and it
     meters the CPU that processes other than the servers, wrk (and, for the PostgreSQL run, `postgres`
     backends) used during the run. A run where others took more than 10% of the machine is repeated, at
     most three times in all, and the quietest is kept; the worst remaining share is reported.
  5. `--profile SECONDS` (off by default) then samples Portside with py-spy under the list and the get
     load (extra, unrecorded runs): once with `--gil` (Python CPU time) and once over all non-idle
     threads (which includes SQLite working without the GIL in aiosqlite's worker threads).

Fairness choices
  * Datasette runs in mutable mode (not `--immutable`): immutable mode opens the file with
    `immutable=1` and serves the table count from a start-up cache, which Portside cannot do on a live
    database. Both servers therefore run a `count(*)` per list page (Portside's is permission-filtered).
  * Datasette's facet suggestions are switched off (`suggest_facets` off): they are extra UI queries
    with no Portside counterpart.
  * Datasette is started through its Python API with the same uvicorn settings `datasette serve` uses
    (uvloop/httptools when installed, one worker) except that the access log is off, as it is in
    Portside. `default_page_size` is 20 and every list URL asks for 20 rows explicitly.
  * Both are single processes on the same machine as wrk; no CPU pinning. No `ANALYZE` is run after the
    bulk load, as for a table that grew through the API. Each server uses its default order (Portside
    `-created_at`, Datasette rowid); `created_at` grows with rowid, so both read a page in index order
    without a sort.
  * Datasette has no write API in 0.65, so the create rows have no Datasette numbers.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import json
import linecache
import os
import platform
import queue
import random
import re
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from common import expect, request, update_results

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION = "## api (bench/api.py)"
HOST = "127.0.0.1"
PG_HOST = "127.0.0.1"
LISTEN_RE = re.compile(r"portside: http listening on (http://\S+)")

TABLE = "item"
OWNER_ALL, GROUP_READ, GROUP_ALL = 16256, 32768, 2080768
ROW_PERMISSION = OWNER_ALL | GROUP_READ
TABLE_PERMISSION = 561441
PASSWORD = "bench-password-1"
ADMIN_SHARE = 0.10
SAMPLE_SIZE = 1000
PAGE_SIZE = 20

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
WRK_TIMEOUT = "10s"
QUIET_CPU = 0.10  # CPU share of other processes under which the machine counts as quiet
MAX_ATTEMPTS = 3  # a run disturbed by other processes is repeated up to this many times in all
TS_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy's DateTime stores timestamps in SQLite

# The 20 user columns of `item`: (column name, ColumnType, DataType).
COLUMNS: tuple[tuple[str, str, str], ...] = (
    *((f"label_{i}", "label", "varchar(100)") for i in range(1, 6)),
    ("code", "label", "varchar(100)"),
    ("title", "name", "varchar(100)"),
    ("contact", "email", "varchar(100)"),
    *((f"count_{i}", "measurement", "int(11)") for i in range(1, 7)),
    ("stars", "rating", "int(4)"),
    ("quantity", "measurement", "int(11)"),
    ("score", "float", "float"),
    ("active", "truefalse", "bool"),
    ("happened_at", "datetime", "timestamp"),
    ("body", "content", "text"),
)
INDEXED = frozenset({"code"})

# argv: database file, port, default page size. Mirrors `datasette serve` minus the access log.
DATASETTE_LAUNCHER = """
import sys
import sysconfig
import uvicorn
from datasette.app import Datasette
from datasette.cli import run_sync
ds = Datasette([sys.argv[1]], settings={"default_page_size": int(sys.argv[3]), "suggest_facets": False})
run_sync(ds.invoke_startup)
uvicorn.run(ds.app(), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False,
            lifespan="on", workers=1)
"""


# -- options ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    rows: int
    duration: int
    connections: int
    threads: int
    warmup: int
    seed: int
    postgres: bool
    profile: int
    quiet_wait: int
    repeat: int
    results: Path


def parse_args(argv: Sequence[str] | None = None) -> Options:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rows", type=int, default=100_000, help="rows bulk-loaded into item (default 100000)")
    p.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run (default 10)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    p.add_argument("--warmup", type=int, default=3, help="seconds of unrecorded load before each run (default 3)")
    p.add_argument("--repeat", type=int, default=5, help="measured runs per cell, median reported (default 5)")
    p.add_argument("--seed", type=int, default=42, help="random seed for data and samples")
    p.add_argument("--no-postgres", dest="postgres", action="store_false", help="skip the PostgreSQL create run")
    p.add_argument("--profile", type=int, default=0, metavar="SECONDS", help="py-spy Portside under list and get load")
    p.add_argument(
        "--quiet-wait", type=int, default=120, metavar="SECONDS", help="max wait for an idle machine before each run"
    )
    p.add_argument("--results", type=Path, default=RESULTS, help="markdown file to update")
    a = p.parse_args(argv)
    if a.rows < SAMPLE_SIZE or a.duration < 1 or a.connections < a.threads or a.threads < 1:
        p.error("need --rows >= 1000, --duration >= 1 and --connections >= --threads >= 1")
    return Options(
        rows=a.rows,
        duration=a.duration,
        connections=a.connections,
        threads=a.threads,
        warmup=max(0, a.warmup),
        seed=a.seed,
        postgres=a.postgres,
        profile=max(0, a.profile),
        quiet_wait=max(0, a.quiet_wait),
        repeat=max(1, a.repeat),
        results=a.results,
    )


# -- processes ----------------------------------------------------------------------------------------


@dataclass
class Service:
    """A server process started by this script; its output is drained into `log` by a thread."""

    name: str
    proc: subprocess.Popen[str]
    url: str = ""
    log: collections.deque[str] | None = None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)

    def tail(self) -> str:
        return "".join(self.log or [])


def spawn(name: str, args: Sequence[str]) -> tuple[Service, queue.Queue[str]]:
    proc = subprocess.Popen(
        list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
    )
    svc = Service(name, proc, log=collections.deque(maxlen=200))
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None and svc.log is not None
        for line in proc.stdout:
            svc.log.append(line)
            lines.put(line)

    threading.Thread(target=pump, daemon=True, name=f"{name}-output").start()
    return svc, lines


def start_portside(data_dir: Path, database_url: str = "") -> Service:
    args = [str(BIN / "portside"), "serve", "--port", "0", "--data-dir", str(data_dir), "--log-level", "warning"]
    if database_url:
        args += ["--database-url", database_url]
    svc, lines = spawn("portside", args)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and svc.proc.poll() is None:
        with contextlib.suppress(queue.Empty):
            m = LISTEN_RE.search(lines.get(timeout=0.2))
            if m:
                svc.url = m.group(1)
                return svc
    svc.stop()
    raise RuntimeError(f"portside did not start:\n{svc.tail()}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def start_datasette(db_file: Path) -> Service:
    port = free_port()
    svc, _ = spawn("datasette", [sys.executable, "-c", DATASETTE_LAUNCHER, str(db_file), str(port), str(PAGE_SIZE)])
    svc.url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and svc.proc.poll() is None:
        with contextlib.suppress(OSError):
            if request("GET", f"{svc.url}/-/versions.json")[0] == 200:
                return svc
        time.sleep(0.2)
    svc.stop()
    raise RuntimeError(f"datasette did not start:\n{svc.tail()}")


def run_tool(args: Sequence[str], timeout: float = 60) -> str:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=True)
    return done.stdout.strip()


# -- HTTP set-up calls --------------------------------------------------------------------------------


def sign_up_and_in(url: str, name: str) -> str:
    email = f"{name}@bench.example"
    attrs = {"name": name, "email": email, "password": PASSWORD, "passwordConfirm": PASSWORD}
    status, body = request("POST", f"{url}/action/user_account/signup", {"attributes": attrs})
    expect(status, 200, f"signup {name}", body)
    creds = {"attributes": {"email": email, "password": PASSWORD}}
    status, body = request("POST", f"{url}/action/user_account/signin", creds)
    expect(status, 200, f"signin {name}", body)
    token = next(x["Attributes"]["value"] for x in body if x.get("ResponseType") == "client.store.set")
    assert isinstance(token, str)
    return token


def prepare_users(url: str) -> str:
    """Sign up admin and bench while the server is open, make admin the administrator; bench's token."""
    admin = sign_up_and_in(url, "admin")
    bench = sign_up_and_in(url, "bench")
    status, body = request("POST", f"{url}/action/world/become_an_administrator", token=admin)
    expect(status, 200, "become_an_administrator", body)
    return bench


def schema_yaml() -> str:
    lines = [
        "Tables:",
        f"  - TableName: {TABLE}",
        f"    Permission: {TABLE_PERMISSION}",
        f"    DefaultPermission: {ROW_PERMISSION}",
        "    AccessGroups:",
        "      - Name: users",
        f"        Permission: {GROUP_ALL}",
        "    Columns:",
    ]
    for name, ctype, dtype in COLUMNS:
        lines += [f"      - Name: {name}", f"        ColumnType: {ctype}", f"        DataType: {dtype}"]
        lines.append("        IsNullable: true")
        if name in INDEXED:
            lines.append("        IsIndexed: true")
    return "\n".join(lines) + "\n"


def new_data_dir(stack: contextlib.ExitStack, prefix: str) -> Path:
    path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
    (path / "schema_bench.yaml").write_text(schema_yaml())
    return path


# -- bulk load ----------------------------------------------------------------------------------------

Gen = Callable[[int], Any]


def user_column_gens(rng: random.Random) -> dict[str, Gen]:
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
    base = dt.datetime(2024, 1, 1)
    by_type: dict[str, Gen] = {
        "label": lambda i: f"{rng.choice(words)} {rng.choice(words)} {i}",
        "name": lambda i: f"Item {i}",
        "email": lambda i: f"owner{i % 997}@example.com",
        "measurement": lambda i: rng.randrange(1_000_000),
        "rating": lambda i: rng.randrange(11),
        "float": lambda i: round(rng.uniform(-1000, 1000), 4),
        "truefalse": lambda i: rng.randrange(2),
        "datetime": lambda i: (base + dt.timedelta(seconds=rng.randrange(31_536_000))).strftime(TS_FORMAT),
        "content": lambda i: " ".join(rng.choice(words) for _ in range(30)),
    }
    return {name: by_type[ctype] for name, ctype, _ in COLUMNS}


def standard_gens(rows: int, bench_id: int, admin_id: int, rng: random.Random) -> dict[str, Gen]:
    start = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=365)
    step = dt.timedelta(days=365) / rows

    def stamp(i: int) -> str:
        return (start + step * i).strftime(TS_FORMAT)

    return {
        "version": lambda i: 1,
        "created_at": stamp,
        "updated_at": stamp,
        "reference_id": lambda i: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "permission": lambda i: ROW_PERMISSION,
        "user_account_id": lambda i: admin_id if rng.random() < ADMIN_SHARE else bench_id,
    }


def insert_plan(conn: sqlite3.Connection, gens: dict[str, Gen]) -> list[str]:
    """Columns to fill, checked against the real table: every NOT NULL column without default is covered."""
    names: list[str] = []
    for _, name, _type, notnull, default, pk in conn.execute(f"PRAGMA table_info({TABLE})"):
        if pk:
            continue
        if name in gens:
            names.append(name)
        elif notnull and default is None:
            raise RuntimeError(f"{TABLE}.{name} is NOT NULL without default and the loader has no value for it")
    missing = set(gens) - set(names)
    if missing:
        raise RuntimeError(f"{TABLE} lacks expected columns {sorted(missing)}")
    return names


def bulk_insert(db_file: Path, rows: int, bench_id: int, admin_id: int, rng: random.Random) -> float:
    gens = {**standard_gens(rows, bench_id, admin_id, rng), **user_column_gens(rng)}
    started = time.monotonic()
    conn = sqlite3.connect(db_file)
    try:
        names = insert_plan(conn, gens)
        order = [gens[n] for n in names]
        sql = f"INSERT INTO {TABLE} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        with conn:
            conn.executemany(sql, (tuple(g(i) for g in order) for i in range(rows)))
    finally:
        conn.close()
    return time.monotonic() - started


def user_id(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT id FROM user_account WHERE email = ?", (f"{name}@bench.example",)).fetchone()
    if row is None:
        raise RuntimeError(f"user {name} not found in the database")
    return int(row[0])


def bench_rows(db_file: Path, bench_id: int, rng: random.Random) -> tuple[int, list[tuple[int, str]]]:
    """(number of rows visible to bench, a fixed random sample of (rowid, ref) of those rows)."""
    conn = sqlite3.connect(db_file)
    try:
        rows = conn.execute(f"SELECT id, reference_id FROM {TABLE} WHERE user_account_id = ?", (bench_id,)).fetchall()
    finally:
        conn.close()
    return len(rows), [(int(i), str(r)) for i, r in rng.sample(rows, SAMPLE_SIZE)]


# -- wrk ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    other_cpu: float = 0.0  # share of all CPUs used during the run by processes other than ours
    rps_low: float = 0.0  # lowest and highest req/s of the repeated runs this (median) run stands for
    rps_high: float = 0.0
    runs: int = 1  # measured runs summarised here; non_2xx and socket_errors are summed over all of them

    @property
    def valid(self) -> bool:
        return self.non_2xx == 0 and self.socket_errors == 0 and self.requests > 0


def lua_headers(token: str, content_type: bool = False) -> str:
    out = f'wrk.headers["Authorization"] = "Bearer {token}"\n' if token else ""
    if content_type:
        out += 'wrk.headers["Content-Type"] = "application/vnd.api+json"\n'
    return out


def lua_rotate(paths: Sequence[str], token: str) -> str:
    table = ",\n".join(f'  "{p}"' for p in paths)
    return (
        lua_headers(token)
        + f"local paths = {{\n{table}\n}}\nlocal i = 0\n"
        + "request = function()\n  i = i % #paths + 1\n  return wrk.format(nil, paths[i])\nend\n"
    )


def lua_post(body: dict[str, Any], token: str) -> str:
    return lua_headers(token, content_type=True) + f'wrk.method = "POST"\nwrk.body = [[{json.dumps(body)}]]\n'


def write_lua(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.lua"
    path.write_text(text)
    return path


def _duration_ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def parse_wrk(text: str) -> WrkResult:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p99 = re.search(r"^\s*99(?:\.000)?%\s+([\d.]+)(us|ms|s|m)\b", text, re.M)
    total = re.search(r"(\d+) requests in", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if not (rps and p99 and total):
        raise RuntimeError(f"cannot parse wrk output:\n{text}")
    return WrkResult(
        float(rps.group(1)),
        _duration_ms(p99.group(1), p99.group(2)),
        int(total.group(1)),
        int(non2xx.group(1)) if non2xx else 0,
        sum(int(x) for x in sock.groups()) if sock else 0,
    )


def run_wrk(opts: Options, url: str, script: Path | None, seconds: int) -> WrkResult:
    args = ["wrk", f"-t{opts.threads}", f"-c{opts.connections}", f"-d{seconds}s", "--latency", "--timeout", WRK_TIMEOUT]
    if script is not None:
        args += ["-s", str(script)]
    out = run_tool([*args, url], timeout=seconds + 60)
    return parse_wrk(out)


def cpu_times() -> tuple[int, int]:
    """(process time, total) jiffies of all CPUs from /proc/stat.

    Process time is user + nice + system: irq and softirq time (mostly the loopback network stack carrying
    the benchmark's own traffic) and steal belong to no process, so they are left out of the comparison
    with per-process times. Guest time is already inside user time.
    """
    user, nice, system, idle, iowait, irq, softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return user + nice + system, user + nice + system + idle + iowait + irq + softirq + steal


def cpu_busy(seconds: float = 1.0) -> float:
    busy0, total0 = cpu_times()
    time.sleep(seconds)
    busy1, total1 = cpu_times()
    return (busy1 - busy0) / max(1, total1 - total0)


def wait_until_quiet(opts: Options) -> float:
    """Wait (bounded by --quiet-wait) until the CPUs are mostly idle (servers idle too); the last busy share."""
    deadline = time.monotonic() + opts.quiet_wait
    busy = cpu_busy()
    while busy > QUIET_CPU and time.monotonic() < deadline:
        busy = cpu_busy()
    if busy > QUIET_CPU:
        print(f"  warning: machine still {busy:.0%} busy with other work after {opts.quiet_wait} s; measuring anyway")
    return busy


def process_jiffies(pid: int) -> int:
    """utime + stime of a process (all its threads), 0 if it is gone."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    return 0


def named_pids(comm: str) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if stat.read_text().strip() == comm:
                pids.append(int(stat.parent.name))
    return pids


@dataclass(frozen=True)
class CpuMeter:
    """CPU used by the processes under test: our servers, wrk (a reaped child) and, optionally, by name."""

    services: Sequence[Service]
    comm: str = ""  # e.g. "postgres": its backends work for the server under test

    def jiffies(self) -> int:
        pids = [s.proc.pid for s in self.services] + (named_pids(self.comm) if self.comm else [])
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        wrk = (children.ru_utime + children.ru_stime) * os.sysconf("SC_CLK_TCK")
        return sum(process_jiffies(p) for p in pids) + round(wrk)


def measure_once(opts: Options, meter: CpuMeter, url: str, script: Path | None) -> WrkResult:
    wait_until_quiet(opts)
    if opts.warmup:
        run_wrk(opts, url, script, opts.warmup)
    busy0, total0 = cpu_times()
    ours0 = meter.jiffies()
    result = run_wrk(opts, url, script, opts.duration)
    busy1, total1 = cpu_times()
    other = max(0, (busy1 - busy0) - (meter.jiffies() - ours0)) / max(1, total1 - total0)
    return replace(result, other_cpu=other)


def measure(opts: Options, meter: CpuMeter, label: str, url: str, script: Path | None) -> WrkResult:
    """One wrk run, repeated (at most MAX_ATTEMPTS times) while other processes took CPU; the quietest run."""
    runs: list[WrkResult] = []
    while len(runs) < MAX_ATTEMPTS and (not runs or runs[-1].other_cpu > QUIET_CPU):
        runs.append(measure_once(opts, meter, url, script))
    result = min(runs, key=lambda r: r.other_cpu)
    flag = "" if result.valid else f"  INVALID: {result.non_2xx} non-2xx, {result.socket_errors} socket errors"
    print(
        f"  {label:<34} {result.rps:>9.1f} req/s  p99 {result.p99_ms:>8.2f} ms  n={result.requests}"
        f"  (other processes' CPU {result.other_cpu:.0%}, run {runs.index(result) + 1}/{len(runs)}){flag}"
    )
    return result


@dataclass(frozen=True)
class Target:
    side: str  # "portside" or "datasette"
    url: str
    script: Path | None


def median_run(runs: Sequence[WrkResult]) -> WrkResult:
    """The median run by req/s, carrying the range, the worst CPU noise and the errors of all runs."""
    ordered = sorted(runs, key=lambda r: r.rps)
    return replace(
        ordered[(len(ordered) - 1) // 2],
        rps_low=ordered[0].rps,
        rps_high=ordered[-1].rps,
        runs=len(runs),
        non_2xx=sum(r.non_2xx for r in runs),
        socket_errors=sum(r.socket_errors for r in runs),
        other_cpu=max(r.other_cpu for r in runs),
    )


def measure_cell(opts: Options, meter: CpuMeter, label: str, targets: Sequence[Target]) -> Row:
    """`--repeat` rounds, the targets alternating within each round; per side the median run by req/s."""
    runs: dict[str, list[WrkResult]] = {t.side: [] for t in targets}
    for n in range(opts.repeat):
        for t in targets:
            runs[t.side].append(measure(opts, meter, f"{t.side} {label} [{n + 1}/{opts.repeat}]", t.url, t.script))
    row: Row = {"portside": None, "datasette": None}
    row.update({side: median_run(rs) for side, rs in runs.items()})
    return row


# -- checks before load -------------------------------------------------------------------------------


def check_portside_list(url: str, token: str, visible: int) -> None:
    status, body = request("GET", f"{url}/api/{TABLE}?page[size]={PAGE_SIZE}", token=token)
    expect(status, 200, "portside list", body)
    total = body["links"]["total"]
    if len(body["data"]) != PAGE_SIZE or total != visible:
        raise RuntimeError(f"portside list: {len(body['data'])} rows, total {total}; wanted {PAGE_SIZE}, {visible}")


def check_datasette_list(url: str, rows: int) -> None:
    status, body = request("GET", url)
    expect(status, 200, "datasette list", body)
    if len(body["rows"]) != PAGE_SIZE or body.get("filtered_table_rows_count") != rows:
        raise RuntimeError(f"datasette list: unexpected page {str(body)[:300]}")


def check_get(url: str, token: str = "") -> None:
    status, body = request("GET", url, token=token)
    expect(status, 200, f"GET {url}", body)


def create_body(rng: random.Random) -> dict[str, Any]:
    gens = user_column_gens(rng)
    attrs = {name: gens[name](0) for name in ("label_1", "title", "count_1", "score", "active")}
    attrs["active"] = bool(attrs["active"])
    return {"data": {"type": TABLE, "attributes": attrs}}


def check_create(url: str, token: str, body: dict[str, Any]) -> None:
    status, resp = request("POST", f"{url}/api/{TABLE}", body, token=token)
    expect(status, 201, "portside create", resp)


# -- profiling ----------------------------------------------------------------------------------------


FRAME_RE = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_key(frame: str) -> tuple[str, str]:
    """(`function (file)` without the line number, top-level package or module of the file)."""
    m = FRAME_RE.match(frame)
    if m is None:
        return frame, "?"
    file = m.group("file")
    return f"{m.group('func')} ({file})", file.split("/", 1)[0].removesuffix(".py")


def read_collapsed(path: Path) -> Iterator[tuple[list[str], int]]:
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if frames and count_text.isdigit():
            yield frames, int(count_text)


SOURCE_ROOTS = (Path(sysconfig.get_paths()["purelib"]), Path(sysconfig.get_paths()["stdlib"]), ROOT / "src")


def source_line(frame: str) -> str:
    """The source text of a `func (file:line)` frame, looked up in the venv, the stdlib and src/."""
    m = re.match(r"^.* \((?P<file>[^()]+):(?P<line>\d+)\)$", frame)
    if m is None:
        return ""
    for root in SOURCE_ROOTS:
        text = linecache.getline(str(root / m.group("file")), int(m.group("line"))).strip()
        if text:
            return text
    return ""


def _share_table(title: str, counter: collections.Counter[str], total: int, top: int, source: bool = False) -> str:
    """Markdown table of the `top` entries as shares of `total`; with `source`, each frame's code line."""
    head = f"| % of samples | {title.split()[-1]} |"
    rule = "|---:|---|"
    if source:
        head, rule = head + " source line |", rule + "---|"
    rows = []
    for f, n in counter.most_common(top):
        row = f"| {100 * n / total:5.1f}% | `{f}` |"
        if source:
            code = source_line(f)
            row += f" `{code}` |" if code else " |"
        rows.append(row)
    return f"{title}:\n\n" + "\n".join([head, rule, *rows]) + "\n\n"


def summarize_gil(path: Path, top: int = 15) -> str:
    """Self time per package and function line, inclusive time per Portside function (GIL-holder samples)."""
    own: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, n in read_collapsed(path):
        total += n
        keys = [frame_key(f) for f in frames]
        own[frames[-1]] += n
        packages[keys[-1][1]] += n
        for key in {k for k, pkg in keys if pkg == "portside"}:
            ours[key] += n
    if total == 0:
        return "py-spy --gil recorded no samples.\n"
    return (
        f"`py-spy record --gil` (only the thread holding the GIL, i.e. Python CPU time): {total} samples.\n"
        "Inclusive shares count a function wherever it is on the stack, also in SQLAlchemy's greenlet stacks,\n"
        "which do not reach `main`.\n\n"
        + _share_table("Self time by package", packages, total, 10)
        + _share_table("Self time by function and line", own, total, top, source=True)
        + _share_table("Inclusive time by Portside function", ours, total, top)
    )


def summarize_threads(path: Path, top: int = 8) -> str:
    """Where non-idle threads are (event loop and SQLite worker threads alike), by innermost frame."""
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, n in read_collapsed(path):
        total += n
        own[frames[-1]] += n
    if total == 0:
        return "py-spy recorded no non-idle samples.\n"
    return f"`py-spy record` (all non-idle threads, incl. time in C without the GIL): {total} samples.\n\n" + (
        _share_table("Innermost frame", own, total, top, source=True)
    )


def py_spy(opts: Options, portside: Service, url: str, script: Path, out: Path, gil: bool) -> str:
    """Sample Portside with py-spy while wrk drives `url` (not a measured run); an error text or ''."""
    wait_until_quiet(opts)
    args = [str(BIN / "py-spy"), "record", "--pid", str(portside.proc.pid), "--duration", str(opts.profile)]
    args += ["--rate", "200", "--format", "raw", "--output", str(out), "--nonblocking", *(["--gil"] if gil else [])]
    with subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as spy_proc:
        try:
            run_wrk(opts, url, script, opts.profile + 2)
            _, err = spy_proc.communicate(timeout=opts.profile + 60)
        finally:
            if spy_proc.poll() is None:
                spy_proc.kill()
    if spy_proc.returncode != 0 or not out.exists():
        return f"py-spy failed: {err.strip()[:500]}\n"
    return ""


def profile_run(opts: Options, portside: Service, url: str, script: Path, work: Path, name: str) -> str:
    """Two py-spy recordings under load: GIL holder only, then all non-idle threads; a markdown summary."""
    if not (BIN / "py-spy").exists():
        return "py-spy not installed (`.venv/bin/pip install py-spy`); no profile.\n"
    gil_out, all_out = work / f"{name}-gil.collapsed", work / f"{name}-threads.collapsed"
    failed = py_spy(opts, portside, url, script, gil_out, gil=True)
    failed = failed or py_spy(opts, portside, url, script, all_out, gil=False)
    return failed or summarize_gil(gil_out) + summarize_threads(all_out)


# -- phases -------------------------------------------------------------------------------------------

Row = dict[str, WrkResult | None]  # "portside" / "datasette" -> result


def build_sqlite(opts: Options, stack: contextlib.ExitStack, rng: random.Random) -> tuple[Path, str, int]:
    """Fresh data dir, users via the API, then the bulk load; returns (data dir, bench token, bench id)."""
    data_dir = new_data_dir(stack, "portside-bench-")
    server = start_portside(data_dir)
    try:
        token = prepare_users(server.url)
    finally:
        server.stop()
    db_file = data_dir / "portside.db"
    with contextlib.closing(sqlite3.connect(db_file)) as conn:
        bench_id, admin_id = user_id(conn, "bench"), user_id(conn, "admin")
    took = bulk_insert(db_file, opts.rows, bench_id, admin_id, rng)
    print(f"loaded {opts.rows} rows into {db_file} in {took:.1f} s (bench user id {bench_id}, admin {admin_id})")
    return data_dir, token, bench_id


def bench_sqlite(
    opts: Options, stack: contextlib.ExitStack, rng: random.Random
) -> tuple[dict[str, Row], dict[str, str]]:
    data_dir, token, bench_id = build_sqlite(opts, stack, rng)
    db_file = data_dir / "portside.db"
    visible, sample = bench_rows(db_file, bench_id, rng)
    portside = start_portside(data_dir)
    stack.callback(portside.stop)
    datasette = start_datasette(db_file)
    stack.callback(datasette.stop)
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="portside-bench-lua-")))
    db = db_file.stem
    p_list = f"{portside.url}/api/{TABLE}?page%5Bsize%5D={PAGE_SIZE}"
    d_list = f"{datasette.url}/{db}/{TABLE}.json?_size={PAGE_SIZE}"
    check_portside_list(portside.url, token, visible)
    check_datasette_list(d_list, opts.rows)
    check_get(f"{portside.url}/api/{TABLE}/{sample[0][1]}", token)
    check_get(f"{datasette.url}/{db}/{TABLE}/{sample[0][0]}.json")
    auth = write_lua(work, "auth", lua_headers(token))
    p_get = write_lua(work, "p_get", lua_rotate([f"/api/{TABLE}/{ref}" for _, ref in sample], token))
    d_get = write_lua(work, "d_get", lua_rotate([f"/{db}/{TABLE}/{rowid}.json" for rowid, _ in sample], ""))
    body = create_body(rng)
    check_create(portside.url, token, body)
    post = write_lua(work, "post", lua_post(body, token))

    meter = CpuMeter([portside, datasette])
    results: dict[str, Row] = {}
    print(f"measuring ({opts.connections} connections, {opts.duration} s each, {opts.warmup} s warm-up)")
    results["list 20 rows"] = measure_cell(
        opts, meter, "list 20 rows", [Target("portside", p_list, auth), Target("datasette", d_list, None)]
    )
    results["get by id"] = measure_cell(
        opts, meter, "get by id", [Target("portside", portside.url, p_get), Target("datasette", datasette.url, d_get)]
    )
    profiles: dict[str, str] = {}
    if opts.profile:
        profiles["list 20 rows"] = profile_run(opts, portside, p_list, auth, work, "list")
        profiles["get by id"] = profile_run(opts, portside, portside.url, p_get, work, "get")
    create = Target("portside", f"{portside.url}/api/{TABLE}", post)
    results["create (SQLite)"] = measure_cell(opts, meter, "create (SQLite)", [create])
    datasette.stop()
    portside.stop()
    return results, profiles


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    name = f"portside_bench_{uuid.uuid4().hex[:10]}"
    run_tool(["createdb", "-h", PG_HOST, "-U", "postgres", name])
    try:
        yield f"postgresql+asyncpg://postgres@{PG_HOST}:5432/{name}"
    finally:
        run_tool(["dropdb", "-h", PG_HOST, "-U", "postgres", "--if-exists", "--force", name])


def bench_postgres(opts: Options, rng: random.Random) -> Row:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres_database())
        data_dir = new_data_dir(stack, "portside-bench-pg-")
        server = start_portside(data_dir, url)
        stack.callback(server.stop)
        token = prepare_users(server.url)
        body = create_body(rng)
        check_create(server.url, token, body)
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="portside-bench-lua-")))
        post = write_lua(work, "post", lua_post(body, token))
        meter = CpuMeter([server], comm="postgres")
        return measure_cell(opts, meter, "create (PostgreSQL)", [Target("portside", f"{server.url}/api/{TABLE}", post)])


# -- report -------------------------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def ram_gib() -> float:
    with contextlib.suppress(OSError):
        mem = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        if mem:
            return int(mem.group(1)) / 1048576
    return 0.0


def machine_info() -> dict[str, str]:
    info = {
        "date": safe_tool(["date", "-u"]),
        "machine": f"nproc {safe_tool(['nproc'])}, {cpu_model()}, {ram_gib():.1f} GiB RAM",
        "os": platform.platform(),
        "python": platform.python_version(),
        "portside commit": safe_tool(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "datasette": safe_tool([sys.executable, "-c", "import datasette.version as v; print(v.__version__)"]),
        "wrk": safe_tool(["wrk", "-v"]).splitlines()[0] if shutil.which("wrk") else "missing",
        "sqlite": sqlite3.sqlite_version,
        "load average at start": safe_tool(["cat", "/proc/loadavg"]),
    }
    return info


def postgres_version() -> str:
    return safe_tool(["psql", "-h", PG_HOST, "-U", "postgres", "-tAc", "show server_version", "postgres"])


def safe_tool(args: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (done.stdout or done.stderr).strip() or "unknown"


def fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def table_lines(results: dict[str, Row]) -> list[str]:
    lines = [
        "| benchmark | Portside req/s | Portside p99 ms | Datasette req/s | Datasette p99 ms | ratio (P/D req/s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, row in results.items():
        p, d = row.get("portside"), row.get("datasette")
        ratio = p.rps / d.rps if p and d and d.rps else None
        mark = "" if all(r is None or r.valid for r in (p, d)) else " (INVALID: errors)"
        lines.append(
            f"| {label}{mark} | {fmt(p.rps if p else None)} | {fmt(p.p99_ms if p else None, 2)} | "
            f"{fmt(d.rps if d else None)} | {fmt(d.p99_ms if d else None, 2)} | {fmt(ratio, 2)} |"
        )
    return lines


def error_note(results: dict[str, Row]) -> str:
    runs = [(f"{label}/{side}", r) for label, row in results.items() for side, r in row.items() if r is not None]
    bad = [f"{name}: {r.non_2xx} non-2xx, {r.socket_errors} socket errors" for name, r in runs if not r.valid]
    noisiest = max(runs, key=lambda x: x[1].other_cpu, default=None)
    noise = (
        f" CPU used by other processes during the runs: at most {noisiest[1].other_cpu:.0%} of the machine"
        f" ({noisiest[0]})."
        if noisiest
        else ""
    )
    total = sum(r.runs for _, r in runs)
    if not bad:
        return f"Errors during load: none (0 non-2xx responses and 0 socket errors in all {total} runs).{noise}"
    return "Errors during load (these runs are INVALID): " + "; ".join(bad) + f".{noise}"


def range_note(results: dict[str, Row], repeat: int) -> str:
    parts = [
        f"{label} {side} {r.rps_low:,.1f} to {r.rps_high:,.1f}"
        for label, row in results.items()
        for side, r in row.items()
        if r is not None
    ]
    return f"Each cell is the median-req/s run of {repeat}; req/s range over those runs: " + "; ".join(parts) + "."


def render_section(
    opts: Options, info: dict[str, str], results: dict[str, Row], profiles: dict[str, str], cmd: str
) -> str:
    out = [SECTION, ""]
    out += [f"- {k}: {v}" for k, v in info.items()]
    out += [f"- command: `{cmd}`", ""]
    out += [
        f"Setup: {opts.rows} rows in `item` (20 user columns), 90% owned by the bench user; Portside list/get",
        "as that non-admin user (row-permission filter applies), Datasette anonymous (no row permissions).",
        f"wrk -t{opts.threads} -c{opts.connections} -d{opts.duration}s --latency after {opts.warmup} s warm-up,",
        f"{opts.repeat} rounds with Portside and Datasette runs alternating;",
        "get-by-id rotates through the same 1000 rows on both. Datasette mutable mode, suggest_facets off,",
        "access log off (as Portside). A run during which other processes used more than 10% of the CPUs",
        "is repeated (at most 3 runs) and the quietest kept. Method and fairness notes: docstring of bench/api.py.",
        "",
        *table_lines(results),
        "",
        range_note(results, opts.repeat),
        "",
        error_note(results),
        "",
    ]
    for label, summary in profiles.items():
        out += [f"### py-spy of Portside under the {label} load", "", summary.rstrip(), ""]
    return "\n".join(out)


# -- main ---------------------------------------------------------------------------------------------


def preflight(opts: Options) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get update && apt-get install -y wrk")
    if not (BIN / "portside").exists():
        raise SystemExit(f"{BIN / 'portside'} missing: pip install -e . into this venv")
    if subprocess.run([sys.executable, "-c", "import datasette"], check=False).returncode != 0:
        raise SystemExit("datasette missing: .venv/bin/pip install -e '.[bench]'")
    if opts.postgres and shutil.which("createdb") is None:
        raise SystemExit("createdb missing (postgresql-client), or run with --no-postgres")


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    preflight(opts)
    rng = random.Random(opts.seed)
    info = machine_info()
    with contextlib.ExitStack() as stack:
        results, profiles = bench_sqlite(opts, stack, rng)
    if opts.postgres:
        info["postgresql"] = postgres_version()
        results["create (PostgreSQL)"] = bench_postgres(opts, rng)
    else:
        results["create (PostgreSQL)"] = {"portside": None, "datasette": None}
    cmd = " ".join([".venv/bin/python", "bench/api.py", *(argv if argv is not None else sys.argv[1:])])
    section = render_section(opts, info, results, profiles, cmd)
    print()
    print("\n".join(table_lines(results)))
    print(range_note(results, opts.repeat))
    print(error_note(results))
    for label, summary in profiles.items():
        print(f"\npy-spy, {label}:\n{summary}")
    update_results(opts.results, SECTION, section)
    print(f"\nwrote {opts.results}")
    return 0 if all(r is None or r.valid for row in results.values() for r in row.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
