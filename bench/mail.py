"""Mail benchmark (issue 13): inbound (Postfix's `smtp-source` against Portside's MX listener and, in the
same run, against aiosmtpd's `Sink`) and outbound (one `mail.send` to 2,000 recipients delivered by the
courier to a local sink, against aiosmtplib straight to the sink: bench/mail_outbound.py).

Run: `PYTHONPATH=src .venv/bin/python bench/mail.py [--inbound] [--outbound]` (both when neither is given)
`[--sessions 20] [--messages 2000] [--size 4096] [--repeat 3] [--database-url URL] [--smtp-source PATH]
[--recipients 2000] [--outbound-database sqlite|postgresql]`. Results are printed and written to
bench/RESULTS.md, section `## mail (bench/mail.py)`: one table with the inbound and the outbound rows (a
part not run this time keeps its rows from the last run).

Getting `smtp-source` (a new user needs nothing installed): it comes from Debian's `postfix` package. The
script looks for `--smtp-source`, then `smtp-source` on PATH, then its cache
(`$XDG_CACHE_HOME/portside-bench/postfix`, default `~/.cache/...`); failing all three it runs
`apt-get download postfix` (no root needed) and unpacks the package there with `dpkg -x`, so no mail
daemon is installed or started. The libraries the tool needs sit beside it (`usr/lib/postfix`) and are put
on `LD_LIBRARY_PATH` for it.

Profile notes (py-spy, 2026-12-06, 20 sessions, SQLite). Before issue 13's performance pass the single
writer task was busy the whole run: about five statements per delivery (UID bump, INSERT, re-read, group
grants, event log INSERT), each built by SQLAlchemy and handed to aiosqlite's thread, and `policy.default`
parsed every header field (~1.3 ms of a 4 KB message). Now (commits of branch i13-perf): a group-commit
batch (about 9 messages on average in the bench) is one UID bump per mailbox, one executemany INSERT
(without RETURNING: SQLAlchemy sends one INSERT per row on SQLite when asked for ids in parameter order),
one re-read by the new reference ids and one multi-row event-log INSERT (`core.bulk`,
`MailStore.deliver_many`); the writer task's busy time fell from ~9.8 ms to ~5 ms per message; plain
header values skip the header registry (0.24 ms per message); checks share one resolver per setting and
skip dkimpy's body split for unsigned mail; EHLO's reply is one write; aiosmtpd's per-connection dispatch
tables are built from a short `dir`. Same-run A/B at load 7-9 (process CPU time / messages, 2,000 messages
each): main 8.5 ms per message and 0.19x the Sink, this branch 4.2 ms and 0.36x (the Sink 1.4 ms); the
bench's three alternating rounds then gave 0.43-0.44x. Where the main thread's GIL time went before the
executemany change (py-spy --gil, 1,500 messages): socket writes of the replies 28% (send() on loopback, inflated by
preemption under load; the Sink makes more of them), group-commit SQL 15%, event loop 14%, aiosmtpd's
dialogue 10%, DATA handling 9% (mostly the hop to the checks thread), new connections 7%, aiosmtpd's
MAIL/RCPT address parsing 6%, SPF/DKIM/DMARC 5%, parse + encode 4%. What is left is mostly the SMTP
dialogue the Sink has too; the next step would be the checks and the parse in a second process.

Inbound method
  1. Portside (`portside serve`, SQLite by default) with one `mail_server` row (MX: no AUTH, plaintext,
     `max_clients` above the session count) and one account `rcpt@bench.test`; config `mail.dns_resolver`
     points at a dnslib server in this process answering the sender domain's SPF (`ip4:127.0.0.1 -all`) and
     DMARC (`p=reject`) records, so every message is checked (SPF, DKIM none, DMARC) and gets its
     Authentication-Results header, then stored durably (committed before the 250).
  2. The reference: `python -m aiosmtpd -n -c aiosmtpd.handlers.Sink` on another port.
  3. `smtp-source -s SESSIONS -m MESSAGES -l SIZE` against each, alternating, `--repeat` rounds; the median
     messages/s is reported. Afterwards the account's INBOX must hold every message Portside accepted.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import mail_outbound
from common import RESULTS, expect, request, update_results

from mailsupport import start_dns

SECTION = "## mail (bench/mail.py)"
BIN = Path(sys.executable).parent
ANY_LISTEN = re.compile(r"^portside: (\S+) listening on (\S+://\S+)$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "portside-bench" / "postfix"


def fetch_smtp_source(cache: Path = CACHE) -> str:
    """`smtp-source` from Debian's postfix package, downloaded and unpacked into `cache` (once)."""
    tool = cache / "root" / "usr" / "sbin" / "smtp-source"
    if tool.exists():
        return str(tool)
    cache.mkdir(parents=True, exist_ok=True)
    print(f"fetching smtp-source: apt-get download postfix into {cache}", flush=True)
    r = subprocess.run(["apt-get", "download", "postfix"], cwd=cache, capture_output=True, text=True)
    debs = sorted(cache.glob("postfix_*.deb"))
    if r.returncode != 0 or not debs:
        raise SystemExit(f"apt-get download postfix failed: {r.stderr[-400:]} (pass --smtp-source PATH)")
    subprocess.run(["dpkg", "-x", str(debs[-1]), str(cache / "root")], check=True)
    if not tool.exists():
        raise SystemExit(f"{debs[-1].name} holds no usr/sbin/smtp-source")
    return str(tool)


def smtp_source(path: str | None) -> tuple[str, dict[str, str]]:
    found = path or shutil.which("smtp-source") or ""
    if not found or not Path(found).exists():
        found = fetch_smtp_source()
    env = dict(os.environ)
    libs = Path(found).resolve().parent.parent / "lib" / "postfix"
    if libs.is_dir():
        env["LD_LIBRARY_PATH"] = str(libs)
    return found, env


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(10).startswith(b"220"):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answers on port {port}")


def start_portside(data: Path, database_url: str) -> tuple[subprocess.Popen[str], str]:
    args = [
        str(BIN / "python"),
        *(os.environ.get("BENCH_PORTSIDE_PREFIX", "-m portside.cli.main").split()),
        "serve",
        "--port",
        "0",
        "--data-dir",
        str(data),
    ]
    args += ["--log-level", "warning"] + (["--database-url", database_url] if database_url else [])
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        m = ANY_LISTEN.match(line.strip())
        if m and m.group(1) == "http":
            # keep reading: a full pipe would stop the server at its next log line
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, m.group(2)
    raise RuntimeError("portside did not start")


def setup(url: str, dns_setting: str, port: int, sessions: int) -> str:
    expect(
        *request(
            "POST",
            f"{url}/action/user_account/signup",
            {
                "attributes": {
                    "name": "Bench",
                    "email": "bench@bench.test",
                    "password": "bench-pass-1",
                    "passwordConfirm": "bench-pass-1",
                }
            },
        )[:1],
        200,
        "signup",
        None,
    )
    status, body = request(
        "POST",
        f"{url}/action/user_account/signin",
        {"attributes": {"email": "bench@bench.test", "password": "bench-pass-1"}},
    )
    expect(status, 200, "signin", body)
    token = next(x["Attributes"]["value"] for x in body if x["ResponseType"] == "client.store.set")
    expect(*request("POST", f"{url}/action/world/become_an_administrator", {}, token)[:1], 200, "admin", None)
    for key, value in (("mail.dns_resolver", dns_setting),):
        req_status, _ = request_text(f"{url}/_config/backend/{key}", value, token)
        expect(req_status, 200, key, None)
    status, me = request("GET", f"{url}/api/user_account/mine", token=token)
    expect(status, 200, "me", me)
    status, srv = request(
        "POST",
        f"{url}/api/mail_server",
        {
            "data": {
                "type": "mail_server",
                "attributes": {
                    "hostname": "bench.test",
                    "is_enabled": True,
                    "listen_interface": f"127.0.0.1:{port}",
                    "authentication_required": False,
                    "always_on_tls": False,
                    "max_clients": sessions + 10,
                },
            }
        },
        token,
    )
    expect(status, 201, "mail_server", srv)
    status, acc = request(
        "POST",
        f"{url}/api/mail_account",
        {
            "data": {
                "type": "mail_account",
                "attributes": {
                    "username": "rcpt@bench.test",
                    "password": "x-mail-pw-1",
                    "user_account_id": me["data"]["id"],
                },
                "relationships": {"mail_server_id": {"data": {"type": "mail_server", "id": srv["data"]["id"]}}},
            }
        },
        token,
    )
    expect(status, 201, "mail_account", acc)
    return token


def request_text(url: str, value: str, token: str) -> tuple[int, str]:
    import urllib.request

    req = urllib.request.Request(url, data=value.encode(), method="POST")
    req.add_header("Content-Type", "text/plain")
    req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, resp.read().decode()


def run_source(tool: str, env: dict[str, str], port: int, sessions: int, messages: int, size: int) -> float:
    args = [
        tool,
        "-s",
        str(sessions),
        "-m",
        str(messages),
        "-l",
        str(size),
        "-f",
        "sender@src.test",
        "-t",
        "rcpt@bench.test",
        f"127.0.0.1:{port}",
    ]
    start = time.perf_counter()
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    took = time.perf_counter() - start
    if r.returncode != 0:
        raise RuntimeError(f"smtp-source failed ({r.returncode}): {r.stderr[-500:]}")
    return messages / took


def count_stored(database_url: str, data: Path) -> int:
    if database_url:
        import sqlalchemy as sa

        from support import sync_url

        engine = sa.create_engine(sync_url(database_url))
        with engine.connect() as c:
            n = c.execute(sa.text("SELECT COUNT(*) FROM mail WHERE recipient = 'rcpt@bench.test'")).scalar()
        engine.dispose()
        return int(n or 0)
    with sqlite3.connect(data / "portside.db") as c:
        return int(c.execute("SELECT COUNT(*) FROM mail WHERE recipient = 'rcpt@bench.test'").fetchone()[0])


OUT_HEADING = "## mail outbound (bench/mail_out.py)"  # the old separate section, dropped once folded in


@dataclass
class Inbound:
    sessions: int
    messages: int
    size: int
    repeat: int
    db: str
    sink: float
    ours: float
    stored: int
    sent: int


def run_inbound(opts: argparse.Namespace) -> Inbound:
    tool, env = smtp_source(opts.smtp_source)
    dns = start_dns()
    dns.zone.add("src.test", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    dns.zone.add("_dmarc.src.test", "TXT", "v=DMARC1; p=reject")
    data = Path(tempfile.mkdtemp(prefix="portside-bench-mail-"))
    mx_port, sink_port = free_port(), free_port()
    proc, url = start_portside(data, opts.database_url)
    sink = subprocess.Popen(
        [str(BIN / "python"), "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{sink_port}", "-c", "aiosmtpd.handlers.Sink"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        setup(url, dns.setting, mx_port, opts.sessions)
        wait_port(mx_port)
        wait_port(sink_port)
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(opts.repeat):
            theirs.append(run_source(tool, env, sink_port, opts.sessions, opts.messages, opts.size))
            ours.append(run_source(tool, env, mx_port, opts.sessions, opts.messages, opts.size))
            print(f"round: portside {ours[-1]:.1f} msg/s, sink {theirs[-1]:.1f} msg/s", flush=True)
        stored = count_stored(opts.database_url, data)
    finally:
        proc.terminate()
        sink.terminate()
        proc.wait(30)
        sink.wait(30)
        dns.stop()
    db = "PostgreSQL" if opts.database_url.startswith("postgres") else "SQLite"
    return Inbound(
        opts.sessions,
        opts.messages,
        opts.size,
        opts.repeat,
        db,
        statistics.median(theirs),
        statistics.median(ours),
        stored,
        opts.repeat * opts.messages,
    )


def inbound_rows(r: Inbound) -> str:
    ok = "OK" if r.stored == r.sent else "MISSING"
    goal = "met" if r.ours >= 0.5 * r.sink else "NOT met"
    return (
        f"| inbound | aiosmtpd Sink (reference) | {r.sink:,.1f} msg/s | | | |\n"
        f"| inbound | Portside MX ({r.db}), `smtp-source -s {r.sessions} -m {r.messages} -l {r.size}`, median of "
        f"{r.repeat} | {r.ours:,.1f} msg/s | {r.ours / r.sink:.2f} | >= 0.5x sink: {goal} | "
        f"{ok}: {r.stored:,}/{r.sent:,} in the INBOX |\n"
    )


def outbound_rows(r: mail_outbound.Outbound, kind: str) -> str:
    done = "yes" if r.complete else f"no ({r.delivered}/{r.recipients})"
    goal = "met" if r.complete and r.rate >= 500 and r.first <= 1 else "NOT met"
    return (
        f"| outbound | aiosmtplib -> sink (reference), 50 rcpt/transaction | {r.ref_rate:,.0f} deliveries/s | | | "
        f"{r.ref_seconds:.2f} s total |\n"
        f"| outbound | aiosmtplib -> sink (reference), 1 rcpt/transaction | {r.one_rate:,.0f} deliveries/s | | | "
        f"{r.one_seconds:.2f} s total |\n"
        f"| outbound | Portside `mail.send` to {r.recipients:,} ({kind}), courier -> sink | {r.rate:,.0f} deliveries/s "
        f"| {r.rate / r.ref_rate:.2f} | >= 500/s, first <= 1 s: {goal} | delivered once: {done}; first "
        f"{r.first:.3f} s, last {r.last:.2f} s after commit |\n"
    )


def previous_rows(kind: str) -> str:
    """The rows of `kind` (inbound/outbound) in the current table, kept when that part is not re-run."""
    text = RESULTS.read_text() if RESULTS.exists() else ""
    m = re.search(rf"^{re.escape(SECTION)}\n.*?(?=^##+ |\Z)", text, re.S | re.M)  # not an earlier run's rows
    rows = [line for line in (m.group(0) if m else "").splitlines() if line.startswith(f"| {kind} |")]
    return "".join(line + "\n" for line in rows) or f"| {kind} | (not run yet) | | | | |\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--inbound", action="store_true", help="run the inbound part (default: both)")
    p.add_argument("--outbound", action="store_true", help="run the outbound part (default: both)")
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--database-url", default="", help="inbound: Portside's database (default: SQLite)")
    p.add_argument("--smtp-source", default=None)
    p.add_argument("--recipients", type=int, default=2000)
    p.add_argument("--outbound-database", choices=("sqlite", "postgresql"), default="sqlite")
    opts = p.parse_args()
    both = not opts.inbound and not opts.outbound
    load = Path("/proc/loadavg").read_text().strip()
    inbound = run_inbound(opts) if opts.inbound or both else None
    outbound = mail_outbound.run(opts.recipients, opts.outbound_database) if opts.outbound or both else None
    load_end = Path("/proc/loadavg").read_text().strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    rows = (inbound_rows(inbound) if inbound else previous_rows("inbound")) + (
        outbound_rows(outbound, opts.outbound_database) if outbound else previous_rows("outbound")
    )
    table = (
        f"{SECTION}\n\n"
        f"- last run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, portside commit {commit}, "
        f"parts: {'both' if both else ('inbound' if opts.inbound else '') + ('outbound' if opts.outbound else '')}\n"
        f"- machine: nproc {os.cpu_count()}, {platform.machine()}, python {platform.python_version()}; "
        f"load average at start {load}, at end {load_end} (2 cores shared with other work: rates vary)\n\n"
        "Inbound: smtp-source to one local account over the MX listener; Portside checks SPF/DKIM/DMARC against "
        "a local\ndnslib DNS and commits every message before its 250 (concurrent sessions' messages share "
        "commits: group\ncommit). Reference in the same run: aiosmtpd's `Sink` (no checks, no storage), "
        "alternating rounds.\nOutbound: one `mail.send` (4 KB, DKIM-signed), the courier looks up the MX on the "
        "local DNS and delivers\nto an aiosmtpd sink, 50 recipients per SMTP transaction; reference: aiosmtplib "
        "straight to the same sink.\n\n"
        "| part | run | rate | ratio | goal | check |\n|---|---|---:|---:|---|---|\n" + rows
    )
    print(table)
    update_results(RESULTS, SECTION, table)
    text = RESULTS.read_text()
    old = re.compile(rf"^{re.escape(OUT_HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    if old.search(text):
        RESULTS.write_text(old.sub("", text).rstrip() + "\n")


if __name__ == "__main__":
    main()
