"""Stock FTP clients against Portside's FTP server (VERIFIERS §6): curl and lftp over plain, explicit and
implicit TLS, passive and active; `lftp mirror -R` and `mirror --parallel` round trips of a tree."""

from __future__ import annotations

import filecmp
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from files_support import CREATE, DELETE, PEEK, READ, UPDATE, ftp_address, localstore, make_site, owner_bits, set_config
from support import PASSWORD, World, fresh_database, me, setup_world, start_server

SITE = "tools.example.com"


@dataclass
class Env:
    world: World
    email: str
    cafile: Path
    store_dir: Path
    port: int
    tls_port: int


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    url, drop = fresh_database("sqlite")
    server = start_server(url)
    try:
        world = setup_world(server, url)
        with world.c(world.owner) as c:
            owner = me(c)
        with world.c(world.admin) as c:
            rights = owner_bits(PEEK | READ | CREATE | UPDATE | DELETE)
            make_site(c, localstore(c), SITE, permission=rights, owner=owner["id"], path="tools")
            n = len(server.log)
            set_config(c, ftp__listen_interface="127.0.0.1:0", ftp__tls_listen_interface="127.0.0.1:0")
            set_config(c, ftp__enable="true")
            server.wait_listening("ftp", n)
            server.wait_listening("ftps", n)
            certs = c.get("/api/certificate").json()["data"]
            pem = next(x for x in certs if x["attributes"]["hostname"] == "localhost")["attributes"]["certificate_pem"]
        cafile = tmp_path_factory.mktemp("ca") / "localhost.pem"
        cafile.write_text(pem)
        yield Env(
            world,
            owner["attributes"]["email"],
            cafile,
            server.data_dir / "storage" / "tools",
            ftp_address(server)[1],
            ftp_address(server, "ftps")[1],
        )
    finally:
        server.stop()
        drop()


def curl(env: Env, *args: str) -> subprocess.CompletedProcess[bytes]:
    cmd = ["curl", "-sS", "--max-time", "30", "--user", f"{env.email}:{PASSWORD}", *args]
    return subprocess.run(cmd, capture_output=True, timeout=60, check=False)


def lftp(env: Env, script: str, *, implicit: bool = False) -> subprocess.CompletedProcess[str]:
    url = f"ftps://localhost:{env.tls_port}" if implicit else f"ftp://localhost:{env.port}"
    setup = (
        f"set ssl:ca-file {env.cafile}; set ftp:ssl-force true; set ftp:ssl-protect-data true; "
        "set net:max-retries 1; set net:timeout 15; set dns:order inet; "
    )
    cmd = ["lftp", "-u", f"{env.email},{PASSWORD}", "-e", setup + script + "; bye", url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


# curl 7.88's active-mode FTPS is broken against every server (VERIFIERS §6): lftp and ftplib cover that cell
@pytest.mark.parametrize(
    ("mode", "active"), [("plain", False), ("plain", True), ("explicit", False), ("implicit", False)]
)
def test_curl_matrix(env: Env, tmp_path: Path, mode: str, active: bool) -> None:
    name = f"c-{mode}-{int(active)}-{uuid.uuid4().hex[:4]}.bin"
    data = os.urandom(70_000)
    src = tmp_path / "up.bin"
    src.write_bytes(data)
    base = {
        "plain": f"ftp://localhost:{env.port}/{SITE}/",
        "explicit": f"ftp://localhost:{env.port}/{SITE}/",
        "implicit": f"ftps://localhost:{env.tls_port}/{SITE}/",
    }[mode]
    extra = ["--cacert", str(env.cafile)] + (["--ssl-reqd"] if mode == "explicit" else [])
    extra += ["-P", "-"] if active else []
    r = curl(env, *extra, "-T", str(src), base + name)
    assert r.returncode == 0, r.stderr
    assert (env.store_dir / name).read_bytes() == data
    r = curl(env, *extra, base + name)
    assert r.returncode == 0 and r.stdout == data, r.stderr
    r = curl(env, *extra, "-l", base)
    assert name in r.stdout.decode().split(), r.stderr
    r = curl(env, *extra, "-C", "-", "-T", str(src), base + name)  # resume: nothing left to send
    assert r.returncode == 0, r.stderr
    r = curl(env, *extra, "-I", base + name)  # SIZE and MDTM
    assert r.returncode == 0 and f"Content-Length: {len(data)}" in r.stdout.decode(), r.stdout
    r = curl(env, *extra, "-Q", f"-RNFR {name}", "-Q", f"-RNTO r-{name}", "-Q", f"-DELE r-{name}", base)
    assert r.returncode == 0, r.stderr
    assert not (env.store_dir / name).exists() and not (env.store_dir / f"r-{name}").exists()


def test_curl_wrong_password_and_forbidden_paths(env: Env) -> None:
    r = subprocess.run(
        ["curl", "-sS", "--user", f"{env.email}:wrong", f"ftp://localhost:{env.port}/{SITE}/"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 67, r.stderr  # login denied
    r = curl(env, "--path-as-is", f"ftp://localhost:{env.port}/{SITE}/../../../etc/passwd")
    assert r.returncode != 0 and b"root:" not in r.stdout


def _tree(root: Path) -> None:
    (root / "a" / "b").mkdir(parents=True)
    for i in range(12):
        (root / ("a" if i % 2 else "a/b") / f"f{i}.txt").write_bytes(os.urandom(1000 + i * 3000))
    (root / "top.txt").write_text("top")


@pytest.mark.parametrize("implicit", [False, True])
def test_lftp_mirror_round_trip(env: Env, tmp_path: Path, implicit: bool) -> None:
    local = tmp_path / "src"
    _tree(local)
    remote = f"/{SITE}/mirror-{int(implicit)}-{uuid.uuid4().hex[:4]}"
    r = lftp(env, f"mkdir {remote}; mirror -R {local} {remote}", implicit=implicit)
    assert r.returncode == 0, r.stderr
    stored = env.store_dir / remote.rsplit("/", 1)[1]
    assert not filecmp.dircmp(local, stored).diff_files
    assert sorted(p.relative_to(stored) for p in stored.rglob("*")) == sorted(
        p.relative_to(local) for p in local.rglob("*")
    )
    back = tmp_path / "back"
    r = lftp(env, f"mirror --parallel=4 {remote} {back}", implicit=implicit)
    assert r.returncode == 0, r.stderr
    for p in local.rglob("*"):
        if p.is_file():
            assert (back / p.relative_to(local)).read_bytes() == p.read_bytes()


def test_lftp_active_mode_tls(env: Env, tmp_path: Path) -> None:
    (tmp_path / "act.txt").write_bytes(b"active over tls")
    r = lftp(
        env, f"set ftp:passive-mode off; cd /{SITE}; put {tmp_path / 'act.txt'}; get act.txt -o {tmp_path / 'g.txt'}"
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "g.txt").read_bytes() == b"active over tls"
    assert (env.store_dir / "act.txt").read_bytes() == b"active over tls"
