"""IMAP: Portside against Dovecot (the reference) in the same run, on the same messages and the same clients.

Method: one Portside (SQLite, fresh data dir, IMAP switched on by config keys) and one private Dovecot
2.3 (Debian `dovecot-imapd`, started from its own config in a temp dir - never /etc/dovecot -, maildir,
passwd-file user) on 127.0.0.1, both over implicit TLS. Each gets a mailbox `bench` filled with the same
`--messages` messages (the 200 of imaptest's sample.mbox, cycled) by pipelined LITERAL+ APPENDs. Then:

1. **load**: imaptest's stress mode (Dovecot's own load tool) with `--clients` clients for `--secs` s on
   that mailbox (`logout=0`: clients log in once, then SELECT / FETCH / FETCH headers / STORE / EXPUNGE /
   APPEND / STATUS / NOOP at imaptest's default mix); operations per second = all commands counted in
   imaptest's totals / seconds;
2. **initial sync**: mbsync (isync) pulls the whole mailbox into an empty Maildir; seconds, messages/s;
3. **IDLE push**: one session IDLEs on INBOX while another APPENDs `--pushes` messages one at a time; the
   latency is from the APPEND's tagged OK (the delivering commit is done) to `* n EXISTS` on the IDLE
   session (negative values are clamped to 0: the push can beat the OK); p50 / p99.

Everything stops by itself; processes are cleaned up in `finally`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, request, update_results
from live import BIN, START_TIMEOUT, Proc, sign_up_and_in, spawn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import dovecot_ref

SECTION = "## imap (bench/imap.py)"
IMAPTEST = Path(__file__).resolve().parents[2] / "shared" / "tools" / "imaptest"
SAMPLE = IMAPTEST / "tests" / "sample.mbox"
USER, PASSWORD = "bench@example.com", "bench-pw-1"


def commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()


# -- servers -----------------------------------------------------------------------------------------------


def start_portside(data: Path) -> tuple[Proc, int]:
    args = [str(BIN / "portside"), "serve", "--port", "0", "--data-dir", str(data), "--log-level", "warning"]
    svc = spawn("portside", args)
    line = svc.wait_line("portside: http listening", START_TIMEOUT)
    svc.url = line.rsplit(" ", 1)[1]
    admin, admin_ref = sign_up_and_in(svc.url, "imap-admin")
    status, body = request("POST", f"{svc.url}/action/world/become_an_administrator", token=admin)
    assert status == 200, body
    server_doc = {"data": {"type": "mail_server", "attributes": {"hostname": "example.com"}}}
    status, body = request("POST", f"{svc.url}/api/mail_server", server_doc, token=admin)
    assert status == 201, body
    server_ref = body["data"]["id"]
    doc = {
        "data": {
            "type": "mail_account",
            "attributes": {"username": USER, "password": PASSWORD, "user_account_id": admin_ref},
            "relationships": {"mail_server_id": {"data": {"type": "mail_server", "id": server_ref}}},
        }
    }
    status, body = request("POST", f"{svc.url}/api/mail_account", doc, token=admin)
    assert status == 201, body
    for key, value in (("imap.tls_listen_interface", "127.0.0.1:0"), ("imap.listen_interface", "off"),
                       ("imap.enabled", "true")):  # fmt: skip
        status, body = request("POST", f"{svc.url}/_config/backend/{key}", value, token=admin)
        assert status == 200, body
    line = svc.wait_line("portside: imaps listening", START_TIMEOUT)
    return svc, int(line.rsplit(":", 1)[1])


# -- IMAP client bits --------------------------------------------------------------------------------------


class Client:
    """A minimal pipelining IMAP client over TLS (the same for both servers)."""

    def __init__(self, port: int):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock = ctx.wrap_socket(raw)
        self.file = self.sock.makefile("rb")
        self.n = 0
        self.file.readline()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def tag(self) -> bytes:
        self.n += 1
        return b"b%d" % self.n

    def command(self, line: bytes) -> list[bytes]:
        tag = self.tag()
        self.send(tag + b" " + line + b"\r\n")
        return self.until(tag)

    def until(self, tag: bytes) -> list[bytes]:
        out = []
        while True:
            got = self.file.readline()
            if not got:
                raise RuntimeError("connection closed")
            out.append(got)
            m = re.search(rb"\{(\d+)\}\r\n$", got)
            if m:
                out.append(self.file.read(int(m.group(1))))
            if got.startswith(tag + b" "):
                if not got.startswith(tag + b" OK"):
                    raise RuntimeError(got.decode(errors="replace"))
                return out

    def login(self) -> None:
        self.command(f'LOGIN "{USER}" "{PASSWORD}"'.encode())


def sample_messages() -> list[bytes]:
    text = SAMPLE.read_bytes()
    parts = re.split(rb"^From [^\n]*\n", text, flags=re.M)
    return [p.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") for p in parts if p.strip()]


def fill(port: int, count: int, box: str = "bench") -> None:
    msgs = sample_messages()
    c = Client(port)
    c.login()
    c.command(f"CREATE {box}".encode())
    batch = 200
    for start in range(0, count, batch):
        tags = []
        for i in range(start, min(count, start + batch)):
            msg = msgs[i % len(msgs)]
            tag = c.tag()
            tags.append(tag)
            c.send(tag + f" APPEND {box} {{{len(msg)}+}}\r\n".encode() + msg + b"\r\n")
        c.until(tags[-1])
    c.command(b"LOGOUT")


def stress(port: int, clients: int, secs: int, count: int) -> dict[str, float]:
    r = subprocess.run(
        [str(IMAPTEST / "bin" / "imaptest"), "host=127.0.0.1", f"port={port}", "ssl=any-cert", f"user={USER}",
         f"pass={PASSWORD}", f"mbox={SAMPLE}", "box=bench", f"clients={clients}", f"secs={secs}", "logout=0",
         f"msgs={count}", "no_tracking"],
        capture_output=True, text=True, timeout=secs + 300,
    )  # fmt: skip
    out = r.stdout + r.stderr
    if "Totals:" not in out:
        raise RuntimeError("imaptest output not understood:\n" + out[-3000:])
    tail = [line for line in out.split("Totals:")[-1].strip().splitlines() if line.strip()]
    names = tail[0].split()
    values = [int(v) for v in next(line for line in tail[1:] if re.fullmatch(r"[\d ]+", line.strip())).split()]
    result = {n: float(v) for n, v in zip(names, values, strict=False)}
    result["errors"] = float(len(re.findall(r"^Error:", out, re.M)))
    return result


def mbsync_time(port: int, work: Path, cert: Path) -> float:
    local = work / "maildir"
    local.mkdir()
    conf = work / "mbsyncrc"
    conf.write_text(
        f"IMAPAccount a\nHost 127.0.0.1\nPort {port}\nUser {USER}\nPass {PASSWORD}\nSSLType IMAPS\n"
        f"CertificateFile {cert}\n\nIMAPStore r\nAccount a\n\nMaildirStore l\nPath {local}/\nInbox {local}/INBOX\n"
        "SubFolders Verbatim\n\nChannel c\nFar :r:\nNear :l:\nPatterns bench\nCreate Near\nSyncState *\n"
    )
    t0 = time.monotonic()
    r = subprocess.run(["mbsync", "-c", str(conf), "-a"], capture_output=True, text=True, timeout=1800)
    took = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError(r.stdout + r.stderr)
    return took


def push_latency(port: int, pushes: int) -> list[float]:
    watcher, writer = Client(port), Client(port)
    watcher.login()
    writer.login()
    watcher.command(b"SELECT INBOX")
    watcher.send(b"I IDLE\r\n")
    assert watcher.file.readline().startswith(b"+")
    msg = sample_messages()[0]
    out = []
    for _ in range(pushes):
        tag = writer.tag()
        writer.send(tag + f" APPEND INBOX {{{len(msg)}+}}\r\n".encode() + msg + b"\r\n")
        writer.until(tag)
        committed = time.monotonic()
        while True:
            line = watcher.file.readline()
            if line.endswith(b" EXISTS\r\n"):
                break
        out.append(max(0.0, time.monotonic() - committed) * 1000)
    watcher.send(b"DONE\r\n")
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=10_000)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--secs", type=int, default=30)
    p.add_argument("--pushes", type=int, default=200)
    p.add_argument(
        "--only", choices=("portside", "dovecot"), help="run one server and print its figures (no RESULTS.md)"
    )
    opts = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="portside-imap-bench-"))
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    portside: Proc | None = None
    dovecot: dovecot_ref.Dovecot | None = None
    try:
        servers: list[tuple[str, int]] = []
        if opts.only != "portside":
            dovecot = dovecot_ref.start(USER, PASSWORD)
            servers.append(("Dovecot", dovecot.port))
        if opts.only != "dovecot":
            portside, pport = start_portside(work / "portside")
            servers.append(("Portside", pport))
        rows: dict[str, dict[str, float]] = {"Portside": {}, "Dovecot": {}}
        for name, port in servers:
            # Portside's own CPU seconds (utime + stime) per phase: its figures per operation and per
            # message do not depend on what else runs on the machine, unlike the wall-clock ones
            cpu = portside.cpu_seconds if name == "Portside" and portside is not None else lambda: 0.0
            t0, c0 = time.monotonic(), cpu()
            fill(port, opts.messages)
            rows[name]["fill_s"] = time.monotonic() - t0
            rows[name]["fill_cpu"] = cpu() - c0
            cert = work / f"{name}.pem"
            cert.write_text(ssl.get_server_certificate(("127.0.0.1", port)))
            (work / name).mkdir()
            c0 = cpu()
            rows[name]["mbsync_s"] = mbsync_time(port, work / name, cert)
            rows[name]["mbsync_cpu"] = cpu() - c0
            c0 = cpu()
            lat = push_latency(port, opts.pushes)
            rows[name]["push_cpu"] = cpu() - c0
            rows[name]["push_p50"] = statistics.median(lat)
            rows[name]["push_p99"] = pct(lat, 99)
            c0 = cpu()
            load = stress(port, opts.clients, opts.secs, opts.messages)
            rows[name]["load_cpu"] = cpu() - c0
            ops = sum(v for k, v in load.items() if k not in ("errors", "Logi", "Logo"))
            rows[name]["ops"] = ops / opts.secs
            rows[name]["errors"] = load["errors"]
            rows[name]["detail"] = 0.0
            rows[name].update({f"op_{k}": v for k, v in load.items() if k != "errors"})
            print(name, rows[name], flush=True)
            if name == "Portside":
                r, n = rows[name], opts.messages
                print(
                    f"Portside server CPU: fill {r['fill_cpu']:.1f} s ({r['fill_cpu'] / n * 1000:.2f} ms/message), "
                    f"mbsync {r['mbsync_cpu']:.1f} s ({r['mbsync_cpu'] / n * 1000:.2f} ms/message), "
                    f"push {r['push_cpu']:.1f} s, load {r['load_cpu']:.1f} s "
                    f"({r['load_cpu'] / max(ops, 1) * 1000:.1f} ms/operation)",
                    flush=True,
                )
        if opts.only:
            return 0
        pr, dr = rows["Portside"], rows["Dovecot"]
        lines = [
            SECTION,
            "",
            f"- date: {time.strftime('%a %b %d %H:%M:%S UTC %Y', time.gmtime())}",
            f"- machine: nproc {os.cpu_count()}; load average at start {load_start}, at end "
            + " ".join(f"{x:.2f}" for x in os.getloadavg())
            + " (other processes share the CPUs: compare the two columns, not runs)",
            f"- portside commit: {commit()}",
            f"- dovecot: {subprocess.run(['dovecot', '--version'], capture_output=True, text=True).stdout.strip()}",
            f"- command: `.venv/bin/python bench/imap.py --messages {opts.messages} --clients {opts.clients} "
            f"--secs {opts.secs} --pushes {opts.pushes}`",
            "",
            __doc__.split("\n\n", 1)[1].strip(),
            "",
            "| measure | Portside | Dovecot | ratio (P/D) | goal |",
            "|---|---:|---:|---:|---|",
            f"| load: operations/s ({opts.clients} clients, {opts.messages:,} messages) | {pr['ops']:.0f} | "
            f"{dr['ops']:.0f} | {pr['ops'] / max(dr['ops'], 1e-9):.2f} | >= 0.5 |",
            f"| initial sync by mbsync (s, {opts.messages:,} messages) | {pr['mbsync_s']:.1f} | {dr['mbsync_s']:.1f} "
            f"| {dr['mbsync_s'] / max(pr['mbsync_s'], 1e-9):.2f} (speed) | >= 0.5 |",
            f"| IDLE push p50 (ms) | {pr['push_p50']:.1f} | {dr['push_p50']:.1f} | | |",
            f"| IDLE push p99 (ms) | {pr['push_p99']:.1f} | {dr['push_p99']:.1f} | | <= 100 |",
            f"| filling by pipelined APPEND (s) | {pr['fill_s']:.1f} | {dr['fill_s']:.1f} | | |",
            f"| imaptest errors during load | {pr['errors']:.0f} | {dr['errors']:.0f} | | |",
            "",
            "imaptest totals per command (Portside / Dovecot): "
            + ", ".join(f"{k[3:]} {pr.get(k, 0):.0f}/{dr.get(k, 0):.0f}" for k in sorted(pr) if k.startswith("op_")),
        ]
        print("\n".join(lines))
        update_results(RESULTS, SECTION, "\n".join(lines))
        return 0
    finally:
        if portside is not None:
            portside.stop()
        if dovecot is not None:
            dovecot.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
