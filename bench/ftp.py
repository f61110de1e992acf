"""FTP throughput: Portside's FTP edge against pyftpdlib's own server and vsftpd, in the same run.

Portside serves a site on the `localstore` (and, with `--s3`, on an S3 store in moto's server); the
references serve a plain folder: pyftpdlib 2.x (`ThreadedFTPServer`, the same server mode Portside uses,
DummyAuthorizer, a local folder: the cost measured is Portside's file system layer, rights and login) and
vsftpd (Debian, anonymous upload into a folder, run from a private config as root). All on 127.0.0.1,
passive mode, binary, no TLS. Workloads (each a fresh session; `--big-mb` and `--small` scale them):

- one big file up, then down (MB/s each way);
- `--small` files of 10 KB up, then down, in one session (files/s);
- 20 parallel clients, each uploading then downloading one `--parallel-mb` MB file (aggregate MB/s).

Servers run one after another, `--rounds` times, alternating, and the order rotates from round to round (no
server always runs first, after another's writes); before each workload the page cache's dirty data is
written out (`os.sync`), so no server pays for the previous one's writes. Each cell is the median. Results
are printed and written to bench/RESULTS.md, section `## ftp (bench/ftp.py)`; other sections are kept.

pyftpdlib runs with its defaults for the data path (sendfile(2) for plain binary downloads, as Portside uses
for a local store); vsftpd uses sendfile too.
"""

from __future__ import annotations

import argparse
import contextlib
import ftplib
import io
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, expect, request, update_results

PASSWORD = "bench-pass-1"
SMALL = 10 * 1024


@dataclass
class Target:
    name: str
    host: str
    port: int
    user: str
    password: str
    folder: str  # where files go, relative to the login's root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


# -- servers -----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def portside(tmp: Path, s3: bool) -> Iterator[list[Target]]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")}
    db = tmp / "portside.db"
    args = [sys.executable, "-m", "portside.cli.main", "serve", "--port", "0", "--data-dir", str(tmp / "data")]
    args += ["--database-url", f"sqlite+aiosqlite:///{db}", "--log-level", "warning"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    moto: subprocess.Popen[bytes] | None = None
    try:
        url = ""
        for line in proc.stdout:
            m = re.match(r"portside: http listening on (\S+)", line)
            if m:
                url = m.group(1)
                break
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True).start()
        email = f"bench-{uuid.uuid4().hex[:6]}@example.com"
        body = {"attributes": {"name": "Bench", "email": email, "password": PASSWORD, "passwordConfirm": PASSWORD}}
        status, out = request("POST", url + "/action/user_account/signup", body)
        expect(status, 200, "signup", out)
        _, out = request(
            "POST", url + "/action/user_account/signin", {"attributes": {"email": email, "password": PASSWORD}}
        )
        token = next(x for x in out if x["ResponseType"] == "client.store.set")["Attributes"]["value"]
        expect(request("POST", url + "/action/world/become_an_administrator", None, token)[0], 200, "admin", None)
        _, stores = request("GET", url + "/api/cloud_store", None, token)
        local = next(x["id"] for x in stores["data"] if x["attributes"]["name"] == "localstore")
        sites = [("local.bench", local)]
        if s3:
            moto, store = _s3_store(url, token)
            sites.append(("s3.bench", store))
        for host, store in sites:
            attrs = {"name": host, "hostname": host, "path": "site", "enable": True, "ftp_enabled": True}
            attrs["cloud_store_id"] = store
            status, _ = request("POST", url + "/api/site", {"data": {"type": "site", "attributes": attrs}}, token)
            expect(status, 201, "site", None)
        for key, value in (
            ("ftp.listen_interface", "127.0.0.1:0"),
            ("ftp.passive_ports", "30300-30399"),
            ("ftp.enable", "true"),
        ):
            _set(url, token, key, value)
        deadline = time.monotonic() + 30
        port = 0
        while not port and time.monotonic() < deadline:
            for line in list(lines):
                m = re.match(r"portside: ftp listening on ftp://127\.0\.0\.1:(\d+)", line)
                if m:
                    port = int(m.group(1))
            time.sleep(0.05)
        targets = [Target("Portside (local store)", "127.0.0.1", port, email, PASSWORD, "/local.bench")]
        if s3:
            targets.append(Target("Portside (S3 via moto)", "127.0.0.1", port, email, PASSWORD, "/s3.bench"))
        yield targets
    finally:
        proc.terminate()
        proc.wait(10)
        if moto is not None:
            moto.terminate()
            moto.wait(10)


def _set(url: str, token: str, key: str, value: str) -> None:
    import urllib.request

    req = urllib.request.Request(f"{url}/_config/backend/{key}", data=value.encode(), method="POST")
    req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        expect(resp.status, 200, key, None)


def _s3_store(url: str, token: str) -> tuple[subprocess.Popen[bytes], str]:
    import boto3

    port = free_port()
    moto = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
    ).create_bucket(Bucket="bench")
    content = '{"access_key": "k", "secret_key": "s", "region": "us-east-1"}'
    request(
        "POST",
        url + "/api/credential",
        {"data": {"type": "credential", "attributes": {"name": "b", "content": content}}},
        token,
    )
    attrs = {
        "name": "s3bench",
        "store_type": "s3",
        "root_path": "s3:bench/root",
        "credential_name": "b",
        "store_parameters": f'{{"endpoint_url": "{endpoint}"}}',
    }
    status, out = request(
        "POST", url + "/api/cloud_store", {"data": {"type": "cloud_store", "attributes": attrs}}, token
    )
    expect(status, 201, "s3 store", out)
    return moto, out["data"]["id"]


@contextlib.contextmanager
def pyftpd(tmp: Path) -> Iterator[list[Target]]:
    root = tmp / "pyftpd"
    (root / "site").mkdir(parents=True)
    port = free_port()
    code = f"""
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import ThreadedFTPServer
import logging; logging.disable(logging.CRITICAL)
a = DummyAuthorizer(); a.add_user("alice", "secret", {str(root)!r}, perm="elradfmwMT")
FTPHandler.authorizer = a; FTPHandler.passive_ports = list(range(30400, 30500))
s = ThreadedFTPServer(("127.0.0.1", {port}), FTPHandler); s.max_cons = 512; s.serve_forever()
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield [Target("pyftpdlib (threaded)", "127.0.0.1", port, "alice", "secret", "/site")]
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def vsftpd(tmp: Path) -> Iterator[list[Target]]:
    exe = shutil.which("vsftpd") or "/usr/sbin/vsftpd"
    if not Path(exe).exists() or os.geteuid() != 0:
        yield []
        return
    root = tmp / "vsftpd"
    (root / "site").mkdir(parents=True)
    root.chmod(0o755)
    shutil.chown(root / "site", "ftp", "ftp")
    port = free_port()
    conf = tmp / "vsftpd.conf"
    conf.write_text(
        f"listen=YES\nlisten_address=127.0.0.1\nlisten_port={port}\nbackground=NO\nanonymous_enable=YES\n"
        f"local_enable=NO\nwrite_enable=YES\nanon_upload_enable=YES\nanon_mkdir_write_enable=YES\n"
        f"anon_other_write_enable=YES\nanon_root={root}\nno_anon_password=YES\nanon_umask=022\n"
        "pasv_enable=YES\npasv_min_port=30600\npasv_max_port=30699\npasv_address=127.0.0.1\nseccomp_sandbox=NO\n"
        "secure_chroot_dir=/var/run/vsftpd/empty\nxferlog_enable=NO\nmax_clients=200\nmax_per_ip=100\n"
    )
    Path("/var/run/vsftpd/empty").mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([exe, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield [Target("vsftpd", "127.0.0.1", port, "anonymous", "", "/site")]
    finally:
        proc.terminate()
        proc.wait(10)


# -- workloads ---------------------------------------------------------------------------------------------


class Crc:
    """A received stream's CRC-32 and size, kept as it arrives (the client must not be the bottleneck)."""

    def __init__(self) -> None:
        self.crc, self.size = 0, 0

    def add(self, chunk: bytes) -> None:
        self.crc = zlib.crc32(chunk, self.crc)
        self.size += len(chunk)


def session(t: Target) -> ftplib.FTP:
    f = ftplib.FTP(timeout=120)
    f.connect(t.host, t.port)
    f.login(t.user, t.password)
    f.cwd(t.folder)
    return f


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def big(t: Target, mb: int) -> dict[str, float]:
    data = os.urandom(mb * 1024 * 1024)
    f = session(t)
    name = f"big-{uuid.uuid4().hex[:6]}.bin"
    up = timed(lambda: f.storbinary(f"STOR {name}", io.BytesIO(data), blocksize=256 * 1024))
    check = Crc()
    down = timed(lambda: f.retrbinary(f"RETR {name}", check.add, blocksize=256 * 1024))
    assert (check.crc, check.size) == (zlib.crc32(data), len(data)), f"{t.name}: big file differs"
    f.delete(name)
    f.quit()
    return {"big up MB/s": mb / up, "big down MB/s": mb / down}


def small(t: Target, count: int) -> dict[str, float]:
    payload = os.urandom(SMALL)
    f = session(t)
    folder = f"small-{uuid.uuid4().hex[:6]}"
    f.mkd(folder)
    f.cwd(folder)
    up = timed(lambda: [f.storbinary(f"STOR f{i}", io.BytesIO(payload)) for i in range(count)] and None)
    sink: list[int] = []
    down = timed(lambda: [f.retrbinary(f"RETR f{i}", lambda b: sink.append(len(b))) for i in range(count)] and None)
    assert sum(sink) == count * SMALL, f"{t.name}: small files differ"
    for i in range(count):
        f.delete(f"f{i}")
    f.cwd("..")
    f.rmd(folder)
    f.quit()
    return {"10 KB up files/s": count / up, "10 KB down files/s": count / down}


def parallel(t: Target, clients: int, mb: int) -> dict[str, float]:
    data = os.urandom(mb * 1024 * 1024)
    crc = zlib.crc32(data)
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients + 1)

    def one(i: int) -> None:
        try:
            f = session(t)
            barrier.wait()
            f.storbinary(f"STOR p{i}.bin", io.BytesIO(data), blocksize=256 * 1024)
            check = Crc()
            f.retrbinary(f"RETR p{i}.bin", check.add, blocksize=256 * 1024)
            assert (check.crc, check.size) == (crc, len(data))
            f.delete(f"p{i}.bin")
            f.quit()
        except BaseException as exc:
            errors.append(exc)
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.abort()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for th in threads:
        th.start()
    barrier.wait()
    start = time.perf_counter()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{t.name}: {errors[0]!r}")
    return {f"{clients} clients MB/s": 2 * clients * mb / elapsed}


def measure(t: Target, opts: argparse.Namespace) -> dict[str, float]:
    s3 = "S3" in t.name  # moto is slow: smaller workloads, the same rates
    os.sync()
    out = big(t, opts.s3_big_mb if s3 else opts.big_mb)
    os.sync()
    out.update(small(t, opts.s3_small if s3 else opts.small))
    os.sync()
    out.update(parallel(t, opts.clients, opts.parallel_mb))
    return out


# -- report ------------------------------------------------------------------------------------------------


def render(opts: argparse.Namespace, cells: dict[str, dict[str, list[float]]], cmd: str, load: str) -> str:
    metrics = list(next(iter(cells.values())).keys())
    names = list(cells)
    med = {n: {m: statistics.median(v) for m, v in cells[n].items()} for n in names}
    lines = [
        "## ftp (bench/ftp.py)",
        "",
        f"- date: {time.strftime('%a %b %d %H:%M:%S UTC %Y', time.gmtime())}",
        f"- machine: nproc {os.cpu_count()}, {platform.processor() or platform.machine()}",
        f"- python: {platform.python_version()}",
        f"- portside commit: {_commit()}",
        f"- load average at start: {load}",
        f"- command: `{cmd}`",
        "",
        f"Setup: 127.0.0.1, passive, binary, no TLS; big file {opts.big_mb} MB, {opts.small} files of 10 KB in one "
        f"session, {opts.clients} parallel clients x {opts.parallel_mb} MB up + down (S3 through moto: big file "
        f"{opts.s3_big_mb} MB, {opts.s3_small} small files, the same rates); {opts.rounds} round(s), servers "
        "alternating in an order that rotates per round, `os.sync` before each workload, median per cell. "
        "pyftpdlib runs ThreadedFTPServer with its default data path (sendfile) on a plain folder (the server "
        "mode Portside uses); vsftpd anonymous upload into a folder. Method: bench/ftp.py docstring.",
        "",
        "| metric | " + " | ".join(names) + " | Portside local / pyftpdlib | Portside local / vsftpd |",
        "|---|" + "---:|" * (len(names) + 2),
    ]
    for m in metrics:
        row = [f"{med[n][m]:,.1f}" for n in names]
        ps = med.get("Portside (local store)", {}).get(m)
        ref = med.get("pyftpdlib (threaded)", {}).get(m)
        vs = med.get("vsftpd", {}).get(m)
        ratios = [f"{ps / ref:.2f}" if ps and ref else "—", f"{ps / vs:.2f}" if ps and vs else "—"]
        lines.append(f"| {m} | " + " | ".join(row + ratios) + " |")
    spread = [f"{n} {m} {min(v):,.1f} to {max(v):,.1f}" for n in names for m, v in cells[n].items() if len(v) > 1]
    if spread:
        lines += ["", "Range over the rounds: " + "; ".join(spread) + "."]
    lines += [
        "",
        "The machine is shared (2 cores, other jobs running: see the load average), so single cells move by "
        "tens of percent between runs; compare the ratios of one run, where the servers alternated.",
    ]
    return "\n".join(lines) + "\n"


def _load() -> str:
    path = Path("/proc/loadavg")
    return path.read_text().strip() if path.exists() else "?"


def _commit() -> str:
    with contextlib.suppress(Exception):
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            check=True,
        ).stdout.strip()
    return "?"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--big-mb", type=int, default=200)
    p.add_argument("--small", type=int, default=1000)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--parallel-mb", type=int, default=5)
    p.add_argument("--s3-big-mb", type=int, default=20)
    p.add_argument("--s3-small", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--s3", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--results", type=Path, default=RESULTS)
    opts = p.parse_args(argv)
    cells: dict[str, dict[str, list[float]]] = {}
    load = _load()
    with tempfile.TemporaryDirectory(prefix="bench-ftp-") as raw:
        tmp = Path(raw)
        servers = [portside, pyftpd, vsftpd]
        for r in range(opts.rounds):
            for i, server in enumerate(servers[r % 3 :] + servers[: r % 3]):
                sub = tmp / f"r{r}-{i}"
                sub.mkdir()
                ctx = portside(sub, opts.s3) if server is portside else server(sub)
                with ctx as targets:
                    for t in targets:
                        print(f"round {r + 1}: {t.name} ...", flush=True)
                        for m, v in measure(t, opts).items():
                            cells.setdefault(t.name, {}).setdefault(m, []).append(v)
    cmd = "python bench/ftp.py " + " ".join(argv if argv is not None else sys.argv[1:])
    section = render(opts, cells, cmd.strip(), load)
    print(section)
    update_results(opts.results, "## ftp (bench/ftp.py)", section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
