"""/live saturation search (issue 17): the highest permission-filtered deliveries/s that still pass, per set-up.

Run: `.venv/bin/python bench/live.py` (the default mode; `bench/live.py --fixed` is the fixed-rate run with the
bare user-topic comparison). Results go to bench/RESULTS.md, section `## live saturation (bench/live.py)`.

Set-ups (`--plan`, comma-separated `database:nodes:sockets`, default
`sqlite:1:1000,postgresql:1:1000,postgresql:2:1000,sqlite:1:10000`):
  - `sqlite` is one node on the embedded default; `postgresql` gets a fresh database per set-up (dropped after)
    and, with 2 nodes, two `portside serve` processes on it joined by the Redis bus (127.0.0.1:6379). Socket s
    connects to node s % nodes and row i is written through node i % nodes, so sockets and writes are split
    evenly and most deliveries cross the bus.
  - The world is bench/live.py's: `--users` users (at least one per 50 sockets: `users_for`), 5 groups, the
    `fan` table and its row mix (40% private, 40% linked to a group, 20% made guest-readable by a PATCH).
Search, per set-up: steps of `--step` seconds (longer when needed to hold 8 rows) at a row rate, starting at
`--start` deliveries/s (converted to rows/s by the expected deliveries per row of this world), doubling while
steps pass and halving while they fail; once a pass and a fail bracket the limit, `--bisect` geometric
midpoints. A step passes when the writer sent >= 95% of its target, no writer error, nothing missing, extra or
duplicated, and p99 (commit -> receipt, from the row's `updated_at`) <= 100 ms. The saturation point is the
highest deliveries/s measured in a passing step. `--repeat N` runs the whole plan N times, set-ups
interleaved, and reports medians; ratios (two nodes / one node on PostgreSQL, 10,000 / 1,000 sockets) are
taken within each round and their median reported.
Per-process CPU (each node, receivers, driver) and the whole machine's busy CPU are shown for every step, so
a reader sees whether the servers or the load generator (same 2 cores) bound the saturation step. The
`stages` column splits the latency before the sockets, from the nodes' lag buckets in /live/stats
(realtime/lag.py, summed over the nodes): p50 / p99 of the time from each event's insert into the log until the
bus handed it to the hub (with two nodes: after the Redis hop) and until the hub started its dispatch.
`hub CPU µs/delivery (kernel)` splits the hub's CPU into the sockets' send calls and the rest (thread rusage);
`loop held` is how long each dispatch held the event loop (p50 / p99 bucket) and the cyclic GC's pauses in the
step (full collections, all generations); `events to every socket` are the broadcasts (a guest-readable update
goes to all sockets): their share of the deliveries and when their first / middle / last socket got them (the
last minus the first is one loop writing every socket), with p99 of the other events' deliveries.

Servers run with the test-only bcrypt cost (PORTSIDE_TEST_BCRYPT_ROUNDS=4): only the set-up's sign-ups hash
passwords, and the bench measures /live, not bcrypt.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import resource
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import live
from common import expect, request, update_results

from portside.realtime import lag

SECTION = "## live saturation (bench/live.py)"
PG_ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
REDIS = "redis://127.0.0.1:6379/0"
P99_GOAL = 100.0
MIN_ROWS = 8  # rows a step writes at least (a slow step lasts longer; halving stops at twice --step)
DEFAULT_PLAN = "sqlite:1:1000,postgresql:1:1000,postgresql:2:1000,sqlite:1:10000"


@dataclass(frozen=True)
class SetUp:
    database: str  # sqlite | postgresql
    nodes: int
    sockets: int

    @property
    def label(self) -> str:
        return f"{self.database}, {self.nodes} node{'s' if self.nodes > 1 else ''}, {self.sockets:,} sockets"


@dataclass
class Outcome:
    setup: SetUp
    steps: list[dict[str, Any]] = field(default_factory=list)
    connected: int = 0
    per_row: float = 0.0
    connect_s: float = 0.0
    hot: list[tuple[float, str]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def best(self) -> dict[str, Any] | None:
        ok = [s for s in self.steps if passed(s)]
        return max(ok, key=lambda s: s["rate"]) if ok else None

    @property
    def rate(self) -> float | None:
        b = self.best
        return b["rate"] if b else None


def parse_plan(text: str) -> list[SetUp]:
    out = []
    for part in text.split(","):
        db, nodes, sockets = part.strip().split(":")
        if db not in ("sqlite", "postgresql") or (db == "sqlite" and int(nodes) != 1):
            raise SystemExit(f"--plan: {part!r}: sqlite:1:N or postgresql:NODES:N")
        out.append(SetUp(db, int(nodes), int(sockets)))
    return out


def passed(r: dict[str, Any]) -> bool:
    return (
        r["sent_rate"] >= 0.95 * r["target_rate"]
        and not r["errors"]
        and r["missing"] == 0
        and r["extra"] == 0
        and r["duplicates"] == 0
        and r["p99"] is not None
        and r["p99"] <= P99_GOAL
    )


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


@contextlib.contextmanager
def database(kind: str) -> Iterator[str | None]:
    """None for SQLite (the data dir's default), else a fresh PostgreSQL database's URL, dropped after."""
    if kind == "sqlite":
        yield None
        return
    import sqlalchemy as sa

    name = f"portside_bench_live_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_URL.format(name=name)
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def wait_for_table(url: str, token: str, table: str, timeout: float = 30.0) -> None:
    """A second node learns the uploaded schema from the first node's events: wait for it."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = request("GET", f"{url}/api/{table}?page[size]=1", token=token)
        if status == 200:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}: table {table} not served after {timeout:.0f} s: {status} {body}")
        time.sleep(0.2)


def deliveries_per_row(world: live.World) -> float:
    """Expected event frames per row written, for this world's memberships and the row mix."""
    n = 2000
    plans = live.plan_rows(n, world, random.Random(0))
    exp = live.expected(world, "x", plans, dict.fromkeys(range(n), "update"))
    return sum(len(v) for v in exp.values()) / n


def run_setup(su: SetUp, opts: argparse.Namespace, rng: random.Random) -> Outcome:
    out = Outcome(su)
    nodes: list[live.Proc] = []
    clients: live.Clients | None = None
    with tempfile.TemporaryDirectory(prefix="portside-bench-sat-") as tmp, database(su.database) as db_url:
        work = Path(tmp)
        try:
            for i in range(su.nodes):
                data = work / f"data{i}"
                data.mkdir(mode=0o700)
                extra = ["--database-url", db_url] if db_url else []
                if su.nodes > 1:
                    extra += ["--redis-url", REDIS]
                nodes.append(live.start_portside(data, *extra, name=f"node{i}"))
            world_opts = argparse.Namespace(users=users_for(su, opts.users), groups=opts.groups, sockets=su.sockets)
            world = live.setup(nodes[0].url, world_opts, rng)
            world.urls = [n.url for n in nodes]
            status, body = request(
                "POST", f"{world.url}/_config/backend/live.max_connections", su.sockets + 100, world.admin
            )
            expect(status, (200, 201), "live.max_connections", body)
            for n in nodes[1:]:
                wait_for_table(n.url, world.admin, "fan")
            out.per_row = deliveries_per_row(world)
            t = time.monotonic()
            procs = opts.client_procs or max(1, math.ceil(su.sockets / 2500))
            clients = live.Clients(world, world.tokens, procs, work, True, "raw", opts.receiver_loop)
            out.connect_s = time.monotonic() - t
            out.connected = clients.connected
            print(
                f"[{su.label}] {clients.connected} sockets in {out.connect_s:.0f} s; {out.per_row:.0f} deliveries/row"
            )
            if clients.connected != su.sockets:
                raise RuntimeError(f"only {clients.connected} of {su.sockets} sockets connected")
            meter = live.Meter(nodes, clients)
            search(out, world, meter, clients, opts, rng)
            if opts.profile and out.steps:
                out.hot = profile_step(out, world, meter, clients, nodes[0], opts, rng, work)
        finally:
            if clients is not None:
                clients.stop()
            for n in nodes:
                n.stop()
            out.log = [f"{n.name}: {ln.rstrip()}" for n in nodes for ln in n.log if "listening" not in ln]
    return out


def step(
    out: Outcome, world: live.World, meter: live.Meter, clients: live.Clients, rows: float, opts: Any, rng: Any
) -> bool:
    k = len(out.steps)
    seconds = max(opts.step, MIN_ROWS / rows)
    r = live.run_filtered(world, meter, clients, rows, seconds, f"s{k}-", rng)
    # the step's rate: every delivery of its rows over its send time (at a few rows/s the window count of
    # `deliveries_s` swings with whether one guest-readable update, a frame to every socket, fell inside it)
    r["rate"] = r["received"] / (max(1, int(rows * seconds)) / rows)
    out.steps.append(r)
    c = r["cpu"]
    nodes = " ".join(f"{100 * c[f'node{i}']:.0f}%" for i in range(out.setup.nodes))
    print(
        f"[{out.setup.label}] {rows:.1f} rows/s: {'PASS' if passed(r) else 'fail'} {r['rate']:,.0f}/s "
        f"p99 {live.fmt(r['p99'])} ms sent {r['sent_rate']:.1f}/s; {live.correctness(r)}; CPU nodes {nodes} "
        f"receivers {100 * c['clients']:.0f}% driver {100 * c['driver']:.0f}% machine {100 * c['machine']:.0f}%; "
        f"stages p50/p99 ms (bus; hub) {stages(r)}; hub µs/delivery {live.fmt(live.hub_us(r), 1)} "
        f"(kernel {live.fmt(live.hub_sys_us(r), 1)}); {live.loop_holds(r)}; broadcasts {live.broadcast_cell(r)}"
    )
    return passed(r)


def search(out: Outcome, world: live.World, meter: live.Meter, clients: live.Clients, opts: Any, rng: Any) -> None:
    """Coarse doubling/halving until a pass and a fail bracket the limit, then geometric bisection."""
    rate = opts.start / out.per_row
    lo = hi = None
    for _ in range(opts.coarse):
        if step(out, world, meter, clients, rate, opts, rng):
            lo = rate
            if hi is not None:
                break
            rate *= 2
        else:
            hi = rate
            if lo is not None or MIN_ROWS / (rate / 2) > 2 * opts.step:
                break  # bracketed, or a step would need over twice --step to hold MIN_ROWS rows
            rate /= 2
    for _ in range(opts.bisect):
        if lo is None or hi is None or hi / lo < 1.08:
            break
        mid = math.sqrt(lo * hi)
        if step(out, world, meter, clients, mid, opts, rng):
            lo = mid
        else:
            hi = mid


def profile_step(
    out: Outcome,
    world: live.World,
    meter: live.Meter,
    clients: live.Clients,
    node: live.Proc,
    opts: Any,
    rng: Any,
    work: Path,
) -> list[tuple[float, str]]:
    """One more step at the saturation rate (else the first step's) with py-spy on node 0, not counted."""
    best = out.best or out.steps[0]
    raw = work / "spy.txt"
    seconds = max(opts.step, MIN_ROWS / best["target_rate"])
    spy = live.start_pyspy(node.proc.pid, max(2, int(seconds) - 1), raw)
    if spy is None:
        return []
    live.run_filtered(world, meter, clients, best["target_rate"], seconds, "p-", rng)
    with contextlib.suppress(subprocess.TimeoutExpired):
        spy.communicate(timeout=30)
    return live.top_functions(raw, 12)


# -- report -------------------------------------------------------------------------------------------------


def cpu_cell(r: dict[str, Any], nodes: int) -> str:
    c = r["cpu"]
    per = " + ".join(f"{100 * c[f'node{i}']:.0f}" for i in range(nodes))
    return f"{per} / {100 * c['clients']:.0f} / {100 * c['driver']:.0f} / {100 * c['machine']:.0f}"


def node_us(r: dict[str, Any]) -> float | None:
    """Server CPU (all nodes: writes, bus, fan-out) per delivery: what bounds the rate once CPU is the limit."""
    return 1e6 * r["cpu"]["portside"] / r["deliveries_s"] if r["deliveries_s"] else None  # same window


def step_lines(o: Outcome) -> list[str]:
    lines = [
        f"{o.setup.label}: {o.connected:,} connected in {o.connect_s:.0f} s; {o.per_row:,.0f} deliveries per row "
        "expected",
        "",
        "| step | rows/s | sent/s | deliveries/s (all of the step's) | deliveries/s (window) "
        "| p50 ms | p99 ms | node CPU µs/delivery (all work) | hub CPU "
        "µs/delivery (kernel) | CPU % nodes / receivers / driver / machine (of 200) | stages p50 / p99 ms from insert: "
        "bus received, hub dispatch | loop held: dispatch p50 / p99, cyclic GC | events to every socket: commit -> "
        "receipt | correctness | pass |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|---|---|",
    ]
    for k, r in enumerate(o.steps):
        lines.append(
            f"| {k + 1} | {r['target_rate']:.1f} | {r['sent_rate']:.1f} | {live.fmt(r['rate'], 0)} | "
            f"{live.fmt(r['deliveries_s'], 0)} | "
            f"{live.fmt(r['p50'])} | {live.fmt(r['p99'])} | {live.fmt(node_us(r), 1)} | "
            f"{live.fmt(live.hub_us(r), 2)} ({live.fmt(live.hub_sys_us(r), 2)}) | "
            f"{cpu_cell(r, o.setup.nodes)} | {stages(r)} | {live.loop_holds(r)} | {live.broadcast_cell(r)} | "
            f"{live.correctness(r)} | "
            f"{'yes' if passed(r) else 'no'} |"
        )
    return lines


def stages(r: dict[str, Any]) -> str:
    """Where the time goes before the sockets, from the nodes' /live/stats lag buckets (realtime/lag.py) over the
    step: when the bus handed events to the hub (multi-node: after the Redis hop) and when dispatch started."""
    h = r.get("hub", {})
    cells = [f"{lag.quantile(h, n, 0.5)} / {lag.quantile(h, n, 0.99)}" for n in ("bus_lag", "hub_lag")]
    return "; ".join(cells) if any(c.strip(" /") for c in cells) else "—"


def median(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def report(rounds: list[list[Outcome]], plan: list[SetUp], info: dict[str, str], cmd: str) -> str:
    out = [SECTION, ""]
    out += [f"- {k}: {v}" for k, v in info.items()]
    out += [f"- command: `{cmd}`", ""]
    out += [
        "Saturation = highest deliveries/s (all the step's deliveries / its send time) of a passing step"
        f" (sent >= 95% of target, nothing missing/extra/dup,"
        f" p99 commit -> receipt <= {P99_GOAL:.0f} ms). Method: bench/live_saturation.py docstring.",
        "",
        "| set-up | saturation deliveries/s (median) | per round | p99 ms at saturation | CPU % at saturation: nodes"
        " / receivers / driver / machine |",
        "|---|---:|---|---:|---|",
    ]
    for i, su in enumerate(plan):
        outs = [r[i] for r in rounds]
        best = [o.best for o in outs]
        med = median([o.rate for o in outs])
        per = ", ".join(live.fmt(o.rate, 0) for o in outs)
        last = next((b for b in reversed(best) if b is not None), None)
        p99 = live.fmt(last["p99"]) if last else "—"
        cpu = cpu_cell(last, su.nodes) if last else "—"
        out.append(f"| {su.label} | {live.fmt(med, 0)} | {per} | {p99} | {cpu} |")
    out += [""]

    def find(db: str, nodes: int, sockets: int) -> int | None:
        return next((i for i, s in enumerate(plan) if s == SetUp(db, nodes, sockets)), None)

    pairs = []
    for su in plan:
        if su.nodes > 1:
            one = find("postgresql", 1, su.sockets)
            if one is not None:
                pairs.append(
                    (
                        f"{su.nodes} nodes / 1 node (PostgreSQL + Redis, {su.sockets:,} sockets)",
                        plan.index(su),
                        one,
                        1.7,
                    )
                )
        if su.sockets == 10000:
            small = find(su.database, su.nodes, 1000)
            if small is not None:
                pairs.append((f"10,000 / 1,000 sockets ({su.database}, {su.nodes} node)", plan.index(su), small, None))
    for label, a, b, goal in pairs:
        per_round = [ratio(r[a].rate, r[b].rate) for r in rounds]
        med = median(per_round)
        verdict = ""
        if goal is not None:
            verdict = f"; goal >= {goal}: {'met' if med is not None and med >= goal else 'NOT met'}"
        out.append(
            f"- ratio {label}: {live.fmt(med, 2)} (per round: {', '.join(live.fmt(x, 2) for x in per_round)}){verdict}"
        )
    out += [""]
    for k, rnd in enumerate(rounds):
        out += [f"Round {k + 1} steps:", ""]
        for o in rnd:
            if o.error:
                out += [f"{o.setup.label}: set-up failed: {o.error}", ""]
                continue
            out += [*step_lines(o), ""]
            if o.hot:
                out += ["py-spy --gil on node 0 at the saturation rate, self time:", ""]
                out += [f"    {share:5.1f}%  {fn}" for share, fn in o.hot] + [""]
            warn = [ln for ln in o.log if "WARNING" in ln or "ERROR" in ln or "Traceback" in ln]
            if warn:
                out += [f"Portside log lines (warning and above): {len(warn)}", ""]
                out += [f"    {ln}" for ln in warn[:6]] + [""]
    return "\n".join(out).rstrip() + "\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("saturation search (default mode)")
    g.add_argument("--plan", default=DEFAULT_PLAN, help=f"set-ups database:nodes:sockets (default {DEFAULT_PLAN})")
    g.add_argument("--start", type=float, default=4000, help="first step's deliveries/s (default 4000)")
    g.add_argument("--step", type=float, default=6, help="seconds per step (default 6)")
    g.add_argument("--coarse", type=int, default=5, help="doubling/halving steps at most (default 5)")
    g.add_argument("--bisect", type=int, default=3, help="bisection steps after the bracket (default 3)")
    g.add_argument("--repeat", type=int, default=1, help="rounds of the whole plan, interleaved (default 1)")


def users_for(su: SetUp, users: int) -> int:
    """`--users`, or more for a set-up with many sockets: at most 50 sockets per user, half of Portside's
    per-user limit (`live.max_connections_per_user`, 100), so a subscribe retried after a timeout is not
    refused with 429 (10,000 sockets: 200 users)."""
    return max(users, -(-su.sockets // 50))


def main(opts: argparse.Namespace, argv: Sequence[str] | None, info: dict[str, str]) -> int:
    raise_fd_limit()
    os.environ.setdefault("PORTSIDE_TEST_BCRYPT_ROUNDS", "4")
    plan = parse_plan(opts.plan)
    for su in plan:
        if su.sockets % users_for(su, opts.users):
            raise SystemExit(f"{su.label}: sockets must be a multiple of the users ({users_for(su, opts.users)})")
    rng = random.Random(opts.seed)
    rounds: list[list[Outcome]] = []
    for k in range(opts.repeat):
        rnd = []
        for su in plan:
            print(f"round {k + 1}: {su.label}")
            try:
                rnd.append(run_setup(su, opts, rng))
            except Exception as exc:  # one failed set-up (e.g. sockets that would not connect) ends only itself
                print(f"[{su.label}] set-up failed: {exc}")
                rnd.append(Outcome(su, error=f"{type(exc).__name__}: {str(exc)[:300]}"))
        rounds.append(rnd)
        # written after every round, so a long run interrupted later still leaves its figures
        cmd = " ".join([".venv/bin/python", "bench/live.py", *(argv if argv is not None else [])])
        section = report(rounds, plan, info, cmd)
        update_results(opts.results, SECTION, section)
    print()
    print(section)
    print(f"wrote {opts.results}")
    return 0
