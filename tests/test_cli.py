"""The command line and its documentation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from portside.cli.docs import options_table
from portside.settings import SETTINGS, resolve
from support import start_server

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portside.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_help_documents_every_option() -> None:
    top = run("--help")
    assert top.returncode == 0 and "serve" in top.stdout
    out = run("serve", "--help").stdout
    for s in SETTINGS:
        assert f"--{s.name}" in out and s.env in out


def test_readme_options_table_is_generated() -> None:
    assert options_table() in (ROOT / "README.md").read_text()


def test_environment_and_bad_values(tmp_path: Path) -> None:
    r = run("serve", "--port", "70000")
    assert r.returncode == 2 and "--port" in r.stderr
    r = run("serve", env={"PORTSIDE_LOG_LEVEL": "loud"})
    assert r.returncode == 2 and "PORTSIDE_LOG_LEVEL" in r.stderr
    conf = resolve(None, {"PORTSIDE_PORT": "0", "PORTSIDE_SCHEMA": f"a{os.pathsep}b", "PORTSIDE_DATA_DIR": "/x"})
    assert conf.port == 0 and conf.schema == ("a", "b") and conf.db_url == "sqlite+aiosqlite:////x/portside.db"


def test_serve_from_environment_prints_real_port(tmp_path: Path) -> None:
    srv = start_server("", tmp_path, env={"PORTSIDE_JWT_SECRET": "s" * 32})
    try:
        assert not srv.url.endswith(":0")
        assert httpx.get(f"{srv.url}/ping").text == "pong"
        assert (tmp_path / "portside.db").exists()  # the SQLite default lives in the data dir
    finally:
        srv.stop()


def test_jwt_secret_from_a_file_never_shows_in_errors(tmp_path: Path) -> None:
    secret_file = tmp_path / "jwt"
    secret_file.write_text("file-secret-" + "x" * 30 + "\n")
    assert resolve(None, {"PORTSIDE_JWT_SECRET_FILE": str(secret_file)}).jwt_secret == "file-secret-" + "x" * 30
    both = run("serve", "--jwt-secret", "flag-secret-1234567890", "--jwt-secret-file", str(secret_file))
    assert both.returncode == 2 and "not both" in both.stderr and "file-secret" not in both.stderr + both.stdout
    missing = run("serve", "--jwt-secret-file", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "FileNotFoundError" in missing.stderr
    (tmp_path / "empty").write_text("\n")
    assert run("serve", "--jwt-secret-file", str(tmp_path / "empty")).returncode == 2


def test_serve_lifts_its_open_files_limit_to_the_hard_limit() -> None:
    """Ten thousand /live sockets need ten thousand descriptors: a server started under a soft limit of 256
    raises it to the hard limit before it listens."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(256, hard)

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))

    server = start_server("", None, preexec_fn=lower)
    try:
        limits = Path(f"/proc/{server.proc.pid}/limits").read_text()
        soft = next(ln.split()[3] for ln in limits.splitlines() if ln.startswith("Max open files"))
        assert soft == ("unlimited" if hard == resource.RLIM_INFINITY else str(hard))
        assert hard > low
    finally:
        server.stop()
