"""Feed benchmark: RSS/Atom/JSON Feed pages of a 100k-row table against Datasette's JSON for 50 rows.

Run: `.venv/bin/python bench/feeds.py [--rows 100000] [--duration 10] [--connections 32] [--repeat 3]`.
Needs `wrk` and `datasette` in the venv (`pip install -e '.[bench]'`), like bench/api.py, whose data set,
process handling, wrk runs, CPU-noise metering and median-of-runs reporting this script reuses. Results
are printed and written to bench/RESULTS.md, section `## feeds (bench/feeds.py)`; other sections are kept.

Method
  1. Data: bench/api.py's `item` table (20 user columns) with `--rows` rows bulk-loaded, 90% owned by the
     `bench` user. An administrator creates the feed row `bench`: `table_name: item`, `page_size: 50`,
     `title_column: title`, `content_column: body`; items are therefore the bench user's 50 newest rows
     (`-created_at`, the default), through the same row-permission filter as the JSON:API.
  2. Portside requests carry the bench user's token. Datasette serves the same SQLite file anonymously:
     `/{db}/item.json?_size=50&_sort_desc=created_at` (the 50 newest rows, JSON, with its count).
  3. Cells:
     * `rss|atom|json full render`: config `feed.cache` is `false`, so every request runs the list query
       and renders the document (the count is still cached, as in every JSON:API list). Each is measured
       alternating with Datasette, `--repeat` rounds, median run reported; the ratio is per cell.
     * `atom 200 from the render cache`: `feed.cache` on (the default), repeated GETs of one page.
     * `atom 304 (If-None-Match)`: `feed.cache` on, every request sends the page's ETag.
     The 304 goal is measured against the atom full-render cell.
  Fairness: a feed needs only the mapped columns, so Portside's query selects those (title, body,
  created_at, updated_at, reference_id plus permission/owner); Datasette's JSON carries every column of
  the 50 rows. That is what each server does for this request, but it is less work for Portside.
  4. Noise handling as in bench/api.py (wait for quiet CPUs, meter other processes, repeat a noisy run).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import random
import sqlite3
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import api  # bench/api.py: shared data set and wrk machinery
from common import update_results

SECTION = "## feeds (bench/feeds.py)"
FEED = "bench"
FEED_PAGE = 50


def parse_args(argv: Sequence[str] | None) -> api.Options:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--quiet-wait", type=int, default=120)
    p.add_argument("--results", type=Path, default=api.RESULTS)
    a = p.parse_args(argv)
    return api.Options(
        rows=a.rows,
        duration=a.duration,
        connections=a.connections,
        threads=a.threads,
        warmup=max(0, a.warmup),
        seed=a.seed,
        postgres=False,
        profile=0,
        quiet_wait=max(0, a.quiet_wait),
        repeat=max(1, a.repeat),
        results=a.results,
    )


def signin(url: str, name: str) -> str:
    creds = {"attributes": {"email": f"{name}@bench.example", "password": api.PASSWORD}}
    status, body = api.request("POST", f"{url}/action/user_account/signin", creds)
    api.expect(status, 200, f"signin {name}", body)
    token = next(x["Attributes"]["value"] for x in body if x.get("ResponseType") == "client.store.set")
    assert isinstance(token, str)
    return token


def set_config(url: str, admin: str, key: str, value: str) -> None:
    status, body = api.request("POST", f"{url}/_config/backend/{key}", value, token=admin)
    api.expect(status, 200, f"config {key}", body)


def fetch(url: str, token: str, etag: str = "") -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=api.HTTP_TIMEOUT)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if etag:
        headers["If-None-Match"] = etag
    try:
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def check_feed(url: str, fmt: str, token: str) -> str:
    """The page must hold FEED_PAGE items; returns its ETag (and checks that it answers 304)."""
    status, headers, body = fetch(url, token)
    api.expect(status, 200, f"feed {fmt}", body[:300])
    if fmt == "json":
        count = len(json.loads(body)["items"])
    else:
        count = body.count(b"<entry>" if fmt == "atom" else b"<item>")
    if count != FEED_PAGE:
        raise RuntimeError(f"feed {fmt}: {count} items, wanted {FEED_PAGE}")
    etag = headers["etag"]
    status, _, _ = fetch(url, token, etag)
    api.expect(status, 304, f"feed {fmt} conditional", "")
    return etag


def check_datasette(url: str) -> None:
    status, body = api.request("GET", url)
    api.expect(status, 200, "datasette list", body)
    if len(body["rows"]) != FEED_PAGE:
        raise RuntimeError(f"datasette: {len(body['rows'])} rows")


def run(opts: api.Options, stack: contextlib.ExitStack, rng: random.Random) -> dict[str, api.Row]:
    data_dir, token, _bench_id = api.build_sqlite(opts, stack, rng)
    db_file = data_dir / "portside.db"
    portside = api.start_portside(data_dir)
    stack.callback(portside.stop)
    admin = signin(portside.url, "admin")
    feed = {
        "feed_name": FEED,
        "title": "Bench items",
        "enable": True,
        "table_name": api.TABLE,
        "page_size": FEED_PAGE,
        "title_column": "title",
        "content_column": "body",
    }
    status, body = api.request(
        "POST", f"{portside.url}/api/feed", {"data": {"type": "feed", "attributes": feed}}, admin
    )
    api.expect(status, 201, "create feed", body)
    datasette = api.start_datasette(db_file)
    stack.callback(datasette.stop)
    d_url = f"{datasette.url}/{db_file.stem}/{api.TABLE}.json?_size={FEED_PAGE}&_sort_desc=created_at"
    check_datasette(d_url)
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="portside-bench-feeds-")))
    auth = api.write_lua(work, "auth", api.lua_headers(token))
    meter = api.CpuMeter([portside, datasette])
    results: dict[str, api.Row] = {}
    print(f"measuring ({opts.connections} connections, {opts.duration} s each, {opts.warmup} s warm-up)")
    set_config(portside.url, admin, "feed.cache", "false")
    for fmt in ("rss", "atom", "json"):
        url = f"{portside.url}/feed/{FEED}.{fmt}"
        check_feed(url, fmt, token)
        label = f"{fmt} full render (50 items)"
        results[label] = api.measure_cell(
            opts, meter, label, [api.Target("portside", url, auth), api.Target("datasette", d_url, None)]
        )
    set_config(portside.url, admin, "feed.cache", "true")
    url = f"{portside.url}/feed/{FEED}.atom"
    etag = check_feed(url, "atom", token)
    label = "atom 200 from the render cache"
    results[label] = api.measure_cell(opts, meter, label, [api.Target("portside", url, auth)])
    cond = api.write_lua(work, "cond", api.lua_headers(token) + f"wrk.headers[\"If-None-Match\"] = '{etag}'\n")
    label = "atom 304 (If-None-Match)"
    results[label] = api.measure_cell(opts, meter, label, [api.Target("portside", url, cond)])
    status, _, _ = fetch(url, token, etag)
    api.expect(status, 304, "still 304 after the load", "")
    return results


def notes(results: dict[str, api.Row]) -> list[str]:
    out = []
    full = results.get("atom full render (50 items)", {}).get("portside")
    cond = results.get("atom 304 (If-None-Match)", {}).get("portside")
    cached = results.get("atom 200 from the render cache", {}).get("portside")
    if full and cond:
        out.append(f"304 path / atom full render: {cond.rps / full.rps:.2f}x (goal >= 5x).")
    if full and cached:
        out.append(f"Cached 200 / atom full render: {cached.rps / full.rps:.2f}x.")
    worst = min(
        (row["portside"].rps / row["datasette"].rps, label)
        for label, row in results.items()
        if row.get("portside") and row.get("datasette")
    )
    out.append(f"Lowest full-render ratio to Datasette: {worst[0]:.2f}x ({worst[1]}; goal >= 1.0x).")
    return out


def render_section(opts: api.Options, info: dict[str, str], results: dict[str, api.Row], cmd: str) -> str:
    out = [SECTION, ""]
    out += [f"- {k}: {v}" for k, v in info.items()]
    out += [f"- command: `{cmd}`", ""]
    out += [
        f"Setup: {opts.rows} rows in `item` (bench/api.py's data set), feed `bench` on it with page size",
        f"{FEED_PAGE}; Portside as the non-admin bench user (row-permission filter applies, items = its 50",
        "newest rows), Datasette anonymous `item.json?_size=50&_sort_desc=created_at`. Full-render cells run",
        "with config `feed.cache=false` (every request queries and renders); the cache and 304 cells with the",
        f"render cache on. wrk -t{opts.threads} -c{opts.connections} -d{opts.duration}s --latency after",
        f"{opts.warmup} s warm-up, {opts.repeat} rounds, Portside and Datasette alternating, median run reported.",
        "Portside selects only the columns items need (7 of 26 API columns); Datasette returns all of them.",
        "Method: docstring of bench/feeds.py.",
        "",
        *api.table_lines(results),
        "",
        *notes(results),
        "",
        api.range_note(results, opts.repeat),
        "",
        api.error_note(results),
        "",
    ]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    api.preflight(opts)
    rng = random.Random(opts.seed)
    info: dict[str, Any] = api.machine_info()
    info["sqlite"] = sqlite3.sqlite_version
    with contextlib.ExitStack() as stack:
        results = run(opts, stack, rng)
    cmd = " ".join([".venv/bin/python", "bench/feeds.py", *(argv if argv is not None else sys.argv[1:])])
    section = render_section(opts, info, results, cmd)
    print()
    print("\n".join(api.table_lines(results)))
    print("\n".join(notes(results)))
    print(api.error_note(results))
    update_results(opts.results, SECTION, section)
    print(f"\nwrote {opts.results}")
    return 0 if all(r is None or r.valid for row in results.values() for r in row.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
