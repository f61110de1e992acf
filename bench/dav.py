"""CalDAV/CardDAV benchmark: Portside against Radicale (the reference server) on the same data, same run.

Run: `.venv/bin/python bench/dav.py [--events 10000] [--contacts 5000] [--clients 20] [--duration 10]`.
Needs `radicale` in the venv (`pip install -e '.[bench]'`). Results are printed and written to
bench/RESULTS.md, section `## dav (bench/dav.py)`; other sections are kept.

Method
  1. Data: one calendar with `--events` events (10% recurring: weekly, half of them endless, half with
     COUNT=20; one-hour events spread over two years from 2026-01-01) and one address book with `--contacts`
     vCards. The same objects, byte for byte, are PUT one by one into Portside (SQLite, `caldav.enable`)
     and uploaded into Radicale 3 (multifilesystem storage, htpasswd `plain`, rights `owner_only`) with one
     PUT per collection, Radicale's bulk path (one by one it stores about 5 objects a second here). Loading
     is not measured (its time is printed). Both serve the objects under the same names (`<UID>.ics`).
  2. Both servers are asked the same requests by the same client (httpx, HTTP/1.1 keep-alive, Basic auth):
     * initial sync, calendar and address book: PROPFIND Depth 1 (getetag) on the collection, then
       multiget of every href in batches of 100 (what DAVx5 and Thunderbird do); the whole sync is timed,
       `--repeat` times, and the p99 is over its single requests;
     * calendar-query for one month (VEVENT time-range, calendar-data returned), repeated `--queries` times;
     * sync-collection after 10 changes: take a token, PUT 10 changed events, ask for the delta (timed);
       repeated `--syncs` times;
     * `--clients` concurrent clients for `--duration` seconds, each looping over getctag PROPFIND,
       a one-week calendar-query and a GET of a random event; requests per second and p99 latency.
  3. The ratio is Radicale's time over Portside's (or Portside's rate over Radicale's): above 1 means
     Portside is faster; the goal in issue 15 is 2 on every row.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, update_results

SECTION = "## dav (bench/dav.py)"
ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bench-secret-1"
PROPFIND_ETAGS = '<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop></D:propfind>'
PROPFIND_CTAG = (
    '<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:CS="http://calendarserver.org/ns/">'
    "<D:prop><CS:getctag/><D:sync-token/></D:prop></D:propfind>"
)
CAL_MULTIGET = (
    '<?xml version="1.0"?><C:calendar-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
    "<D:prop><D:getetag/><C:calendar-data/></D:prop>{hrefs}</C:calendar-multiget>"
)
CARD_MULTIGET = (
    '<?xml version="1.0"?><CR:addressbook-multiget xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav">'
    "<D:prop><D:getetag/><CR:address-data/></D:prop>{hrefs}</CR:addressbook-multiget>"
)
QUERY = (
    '<?xml version="1.0"?><C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
    '<D:prop><D:getetag/><C:calendar-data/></D:prop><C:filter><C:comp-filter name="VCALENDAR">'
    '<C:comp-filter name="VEVENT"><C:time-range start="{start}" end="{end}"/></C:comp-filter>'
    "</C:comp-filter></C:filter></C:calendar-query>"
)
SYNC = (
    '<?xml version="1.0"?><D:sync-collection xmlns:D="DAV:"><D:sync-token>{token}</D:sync-token>'
    "<D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop></D:sync-collection>"
)
HREF_RE = re.compile(r"<(?:\w+:)?href>([^<]+)</(?:\w+:)?href>")
TOKEN_RE = re.compile(r"<(?:\w+:)?sync-token>([^<]+)</(?:\w+:)?sync-token>")


@dataclass
class Target:
    name: str
    base: str  # http://host:port
    auth: tuple[str, str]
    calendar: str  # path of the calendar collection
    book: str  # path of the address book
    proc: subprocess.Popen[str] | None = None
    results: dict[str, Any] = field(default_factory=dict)


def event(i: int, rng: random.Random, rev: int = 0) -> tuple[str, str]:
    uid = f"ev-{i:06d}"
    epoch = 1767225600 + rng.randrange(0, 2 * 365 * 24) * 3600  # 2026-01-01 + up to 2 years
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch))
    end = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch + 3600))
    rule = ""
    if i % 10 == 0:
        rule = "RRULE:FREQ=WEEKLY\r\n" if i % 20 == 0 else "RRULE:FREQ=WEEKLY;COUNT=20\r\n"
    body = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{stamp}\r\nDTEND:{end}\r\n{rule}"
        f"SUMMARY:Event {i} rev {rev}\r\nDESCRIPTION:{'lorem ipsum ' * 8}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    return f"{uid}.ics", body


def contact(i: int) -> tuple[str, str]:
    uid = f"ct-{i:06d}"
    body = (
        f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:Person {i}\r\nN:{i};Person;;;\r\n"
        f"EMAIL;TYPE=INTERNET:person{i}@example.org\r\nTEL;TYPE=CELL:+1555{i:07d}\r\nEND:VCARD\r\n"
    )
    return f"{uid}.vcf", body


# -- servers ----------------------------------------------------------------------------------------------


def start_portside(tmp: Path) -> Target:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    args = [sys.executable, "-m", "portside.cli.main", "serve", "--port", "0", "--data-dir", str(tmp / "portside")]
    args += ["--log-level", "warning"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    url = ""
    for line in proc.stdout:
        m = re.search(r"portside: http listening on (\S+)", line)
        if m:
            url = m.group(1)
            break
    if not url:
        raise RuntimeError("portside did not start")
    threading.Thread(target=lambda: [None for _ in proc.stdout or ()], daemon=True).start()  # keep the pipe drained
    email = f"bench-{uuid.uuid4().hex[:6]}@example.com"
    with httpx.Client(base_url=url, timeout=60) as c:
        attrs = {"name": "Bench", "email": email, "password": PASSWORD, "passwordConfirm": PASSWORD}
        c.post("/action/user_account/signup", json={"attributes": attrs}).raise_for_status()
        r = c.post("/action/user_account/signin", json={"attributes": {"email": email, "password": PASSWORD}})
        token = next(x for x in r.json() if x["ResponseType"] == "client.store.set")["Attributes"]["value"]
        h = {"Authorization": f"Bearer {token}"}
        c.post("/action/world/become_an_administrator", headers=h).raise_for_status()
        c.post("/_config/backend/caldav.enable", content="true", headers=h).raise_for_status()
        ref = c.get("/api/user_account/mine", headers=h).json()["data"]["id"]
    t = Target("Portside", url, (email, PASSWORD), f"/caldav/users/{ref}/calendars/bench/", "")
    t.book = f"/carddav/users/{ref}/addressbooks/contacts/"
    t.proc = proc
    return t


def start_radicale(tmp: Path) -> Target:
    (tmp / "radicale").mkdir()
    (tmp / "users").write_text(f"bench:{PASSWORD}\n")
    port = free_port()
    (tmp / "radicale.conf").write_text(
        f"[server]\nhosts = 127.0.0.1:{port}\n[auth]\ntype = htpasswd\nhtpasswd_filename = {tmp / 'users'}\n"
        f"htpasswd_encryption = plain\n[storage]\nfilesystem_folder = {tmp / 'radicale'}\n"
        "[rights]\ntype = owner_only\n[logging]\nlevel = warning\n"
    )
    args = [sys.executable, "-m", "radicale", "--config", str(tmp / "radicale.conf")]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(base + "/", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    t = Target("Radicale", base, ("bench", PASSWORD), "/bench/calendar/", "/bench/contacts/")
    t.proc = proc
    return t


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def load(t: Target, events: list[tuple[str, str]], contacts: list[tuple[str, str]]) -> None:
    async with httpx.AsyncClient(base_url=t.base, auth=t.auth, timeout=300) as c:
        if t.name == "Radicale":  # its bulk path: one PUT of the whole collection (one by one takes ~5/s)
            inner = "".join(b[b.index("BEGIN:VEVENT") : b.index("END:VCALENDAR")] for _, b in events)
            whole = f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\n{inner}END:VCALENDAR\r\n"
            r = await c.put(t.calendar, content=whole, headers={"Content-Type": "text/calendar"})
            r.raise_for_status()
            r = await c.put(t.book, content="".join(b for _, b in contacts), headers={"Content-Type": "text/vcard"})
            r.raise_for_status()
            return
        (await c.request("MKCALENDAR", t.calendar)).raise_for_status()
        (await c.request("MKCOL", t.book)).raise_for_status()
        sem = asyncio.Semaphore(8)

        async def put(path: str, body: str) -> None:
            async with sem:
                r = await c.put(path, content=body)
                r.raise_for_status()

        await asyncio.gather(*(put(t.calendar + h, b) for h, b in events))
        await asyncio.gather(*(put(t.book + h, b) for h, b in contacts))


# -- measurements -----------------------------------------------------------------------------------------


def p99(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


async def timed(c: httpx.AsyncClient, lat: list[float], method: str, url: str, **kw: Any) -> httpx.Response:
    t0 = time.perf_counter()
    r = await c.request(method, url, **kw)
    lat.append(time.perf_counter() - t0)
    if r.status_code >= 400:
        raise RuntimeError(f"{method} {url}: {r.status_code} {r.text[:300]}")
    return r


async def initial_sync(t: Target, coll: str, template: str, repeat: int) -> tuple[float, float, int]:
    totals, lat = [], []
    count = 0
    async with httpx.AsyncClient(base_url=t.base, auth=t.auth, timeout=300) as c:
        for _ in range(repeat):
            t0 = time.perf_counter()
            r = await timed(c, lat, "PROPFIND", coll, headers={"Depth": "1"}, content=PROPFIND_ETAGS)
            hrefs = [h for h in HREF_RE.findall(r.text) if h.rstrip("/") != coll.rstrip("/")]
            count = 0
            for start in range(0, len(hrefs), 100):
                batch = "".join(f"<D:href>{h}</D:href>" for h in hrefs[start : start + 100])
                r = await timed(c, lat, "REPORT", coll, headers={"Depth": "1"}, content=template.format(hrefs=batch))
                count += r.text.count("getetag>") // 2
            totals.append(time.perf_counter() - t0)
    return statistics.median(totals), p99(lat), count


async def month_query(t: Target, n: int) -> tuple[float, float, int]:
    lat: list[float] = []
    found = 0
    async with httpx.AsyncClient(base_url=t.base, auth=t.auth, timeout=300) as c:
        body = QUERY.format(start="20260601T000000Z", end="20260701T000000Z")
        for _ in range(n):
            r = await timed(c, lat, "REPORT", t.calendar, headers={"Depth": "1"}, content=body)
            found = r.text.count("getetag>") // 2
    return statistics.median(lat), p99(lat), found


async def sync_after_changes(t: Target, n: int, rng: random.Random, events: int) -> tuple[float, float, int]:
    lat: list[float] = []
    got = 0
    async with httpx.AsyncClient(base_url=t.base, auth=t.auth, timeout=300) as c:
        r = await c.request("PROPFIND", t.calendar, headers={"Depth": "0"}, content=PROPFIND_CTAG)
        token = TOKEN_RE.findall(r.text)[0]
        for rev in range(1, n + 1):
            for i in rng.sample(range(events), 10):
                href, body = event(i, random.Random(i), rev)
                (await c.put(t.calendar + href, content=body)).raise_for_status()
            r = await timed(c, lat, "REPORT", t.calendar, headers={"Depth": "1"}, content=SYNC.format(token=token))
            got = r.text.count("getetag>") // 2
            token = TOKEN_RE.findall(r.text)[-1]
    return statistics.median(lat), p99(lat), got


async def concurrent(t: Target, clients: int, duration: float, events: int) -> tuple[float, float, int]:
    lat: list[float] = []
    errors = 0
    stop = time.monotonic() + duration
    week = QUERY.format(start="20260601T000000Z", end="20260608T000000Z")

    async def one(seed: int) -> None:
        nonlocal errors
        rng = random.Random(seed)
        async with httpx.AsyncClient(base_url=t.base, auth=t.auth, timeout=300) as c:
            while time.monotonic() < stop:
                for method, url, kw in (
                    ("PROPFIND", t.calendar, {"headers": {"Depth": "0"}, "content": PROPFIND_CTAG}),
                    ("REPORT", t.calendar, {"headers": {"Depth": "1"}, "content": week}),
                    ("GET", t.calendar + f"ev-{rng.randrange(events):06d}.ics", {}),
                ):
                    try:
                        await timed(c, lat, method, url, **kw)
                    except (RuntimeError, httpx.HTTPError):
                        errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(clients)))
    return len(lat) / (time.perf_counter() - t0), p99(lat), errors


async def measure(t: Target, opts: argparse.Namespace) -> None:
    r = t.results
    async with httpx.AsyncClient(base_url=t.base, auth=t.auth, timeout=300) as c:  # warm-up: the first login
        (await c.request("PROPFIND", t.calendar, headers={"Depth": "0"}, content=PROPFIND_CTAG)).raise_for_status()
    r["cal_sync"] = await initial_sync(t, t.calendar, CAL_MULTIGET, opts.repeat)
    r["card_sync"] = await initial_sync(t, t.book, CARD_MULTIGET, opts.repeat)
    r["month"] = await month_query(t, opts.queries)
    r["delta"] = await sync_after_changes(t, opts.syncs, random.Random(7), opts.events)
    r["concurrent"] = await concurrent(t, opts.clients, opts.duration, opts.events)


# -- report -----------------------------------------------------------------------------------------------


def render(p: Target, r: Target, opts: argparse.Namespace, cmd: str) -> str:
    rows = []
    labels = {
        "cal_sync": f"initial sync, calendar ({opts.events} events): PROPFIND + multiget",
        "card_sync": f"initial sync, address book ({opts.contacts} contacts)",
        "month": "calendar-query, one month (calendar-data)",
        "delta": "sync-collection after 10 changes",
    }
    for key, label in labels.items():
        pv, pp, pn = p.results[key]
        rv, rp, rn = r.results[key]
        rows.append(
            f"| {label} | {pv * 1000:,.1f} ms | {pp * 1000:,.1f} ms | {rv * 1000:,.1f} ms | {rp * 1000:,.1f} ms "
            f"| {rv / pv:.2f} | {pn} / {rn} |"
        )
    pv, pp, pe = p.results["concurrent"]
    rv, rp, re_ = r.results["concurrent"]
    rows.append(
        f"| {opts.clients} concurrent clients (getctag, week query, GET) | {pv:,.1f} req/s | {pp * 1000:,.1f} ms "
        f"| {rv:,.1f} req/s | {rp * 1000:,.1f} ms | {pv / rv:.2f} | errors {pe} / {re_} |"
    )
    head = [
        SECTION,
        "",
        f"- date: {time.strftime('%a %b %d %H:%M:%S UTC %Y', time.gmtime())}",
        f"- machine: nproc {os.cpu_count()}, {platform.processor() or platform.machine()}",
        f"- python: {platform.python_version()}, radicale: {radicale_version()}",
        f"- portside commit: {commit()}",
        f"- command: `{cmd}`",
        f"- load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (other processes share the CPUs)",
        "",
        "Method: docstring of bench/dav.py. Times are medians (whole initial sync; single requests otherwise),",
        "p99 over the single requests; ratio = Radicale time / Portside time (concurrent: Portside req/s /",
        "Radicale req/s), above 1 means Portside is faster. Last column: objects returned (Portside / Radicale).",
        "",
        "| benchmark | Portside | Portside p99 | Radicale | Radicale p99 | ratio | objects |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    return "\n".join(head + rows) + "\n"


def radicale_version() -> str:
    try:
        import radicale

        return str(getattr(radicale, "VERSION", "?"))
    except ImportError:
        return "?"


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--contacts", type=int, default=5_000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--syncs", type=int, default=10)
    ap.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    opts = ap.parse_args(argv)
    events = [event(i, random.Random(i)) for i in range(opts.events)]
    contacts = [contact(i) for i in range(opts.contacts)]
    with tempfile.TemporaryDirectory(prefix="bench-dav-") as tmp_name:
        tmp = Path(tmp_name)
        portside = start_portside(tmp)
        radicale = start_radicale(tmp)
        try:
            for t in (portside, radicale):
                t0 = time.perf_counter()
                asyncio.run(load(t, events, contacts))
                print(f"{t.name}: loaded in {time.perf_counter() - t0:.1f} s", flush=True)
            for t in (portside, radicale):
                asyncio.run(measure(t, opts))
                print(t.name, t.results, flush=True)
        finally:
            for t in (portside, radicale):
                if t.proc is not None:
                    t.proc.terminate()
                    t.proc.wait(20)
    cmd = "python bench/dav.py " + " ".join(argv if argv is not None else sys.argv[1:])
    section = render(portside, radicale, opts, cmd.strip())
    print(section)
    if not opts.no_write:
        update_results(RESULTS, SECTION, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
