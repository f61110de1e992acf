"""Mail benchmark, inbound: Postfix's `smtp-source` against Portside's MX listener and, in the same run,
against aiosmtpd's `Sink` handler (no checks, no storage).

Run: `.venv/bin/python bench/mail.py [--sessions 20] [--messages 2000] [--size 4096] [--database-url URL]
[--smtp-source PATH]`. `smtp-source` comes from Debian's `postfix` package; the script also finds it in a
`dpkg -x` of the package (`--smtp-source /x/usr/sbin/smtp-source`, libraries beside it in
`/x/usr/lib/postfix`), so no mail daemon needs to be installed. Results are printed and written to
bench/RESULTS.md, section `## mail (bench/mail.py)`.

Method
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
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from common import RESULTS, expect, request, update_results

from mailsupport import start_dns

SECTION = "## mail (bench/mail.py)"
BIN = Path(sys.executable).parent
ANY_LISTEN = re.compile(r"^portside: (\S+) listening on (\S+://\S+)$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def smtp_source(path: str | None) -> tuple[str, dict[str, str]]:
    found = path or shutil.which("smtp-source") or ""
    if not found or not Path(found).exists():
        raise SystemExit("smtp-source not found: install postfix or pass --smtp-source (see the module text)")
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--database-url", default="")
    p.add_argument("--smtp-source", default=None)
    opts = p.parse_args()
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
        sent = opts.repeat * opts.messages
    finally:
        proc.terminate()
        sink.terminate()
        proc.wait(30)
        sink.wait(30)
        dns.stop()
    o, t = statistics.median(ours), statistics.median(theirs)
    db = "PostgreSQL" if opts.database_url.startswith("postgres") else "SQLite"
    correct = "OK" if stored == sent else "MISSING"
    table = (
        f"{SECTION}\n\n"
        f"Inbound: `smtp-source -s {opts.sessions} -m {opts.messages} -l {opts.size}` to one local account over\n"
        f"the MX listener ({db}); Portside checks SPF/DKIM/DMARC against a local dnslib DNS and commits every message\n"
        "before its 250. Reference in the same run: aiosmtpd's `Sink` (no checks, no storage). Median of\n"
        f"{opts.repeat} alternating rounds. Goal: Portside >= 0.5x the sink.\n\n"
        "| run | messages/s | ratio (Portside/sink) | stored |\n|---|---:|---:|---|\n"
        f"| aiosmtpd Sink | {t:,.1f} | | |\n"
        f"| Portside MX ({db}) | {o:,.1f} | {o / t:.2f} | {correct}: {stored:,}/{sent:,} in the INBOX |\n\n"
        f"Goal {'met' if o >= 0.5 * t else 'NOT met'}. Each message is its own transaction (UID taken under the\n"
        "mailbox row lock, row + change event written, commit before the 250); on SQLite those commits are\n"
        "serialised, which bounds the rate (batching concurrent deliveries into one commit is the next step).\n"
    )
    print(table)
    update_results(RESULTS, SECTION, table)


if __name__ == "__main__":
    main()
