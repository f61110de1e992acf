"""FTP session limits (`ftp.max_sessions`, `ftp.max_sessions_per_address`): live config keys, counted over
both listeners, a clear 421 for a refused connection, open sessions never cut; resumed uploads on a local
store that are refused or empty; and the symlink rules of a local store whose site roots are resolved once
(links at any depth, a site folder that is, or becomes, a link out of the store)."""

from __future__ import annotations

import ftplib
import io
import os
import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from files_support import (
    CREATE,
    DELETE,
    PEEK,
    READ,
    UPDATE,
    eventually,
    ftp_address,
    ftp_login,
    get,
    localstore,
    make_site,
    owner_bits,
    put,
    refused,
    set_config,
)
from support import Server, World, me, running_world


@dataclass
class Env:
    world: World
    email: str
    site_dir: Path


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with running_world("sqlite") as world:
        server = world.server
        with world.c(world.owner) as c:
            owner = me(c)
        with world.c(world.admin) as c:
            rights = owner_bits(PEEK | READ | CREATE | UPDATE | DELETE)
            make_site(c, localstore(c), "lim.example.com", permission=rights, owner=owner["id"], path="lim")
            n = len(server.log)
            set_config(c, ftp__listen_interface="127.0.0.1:0", ftp__passive_ports="", ftp__enable="true")
            server.wait_listening("ftp", n)
        yield Env(world, owner["attributes"]["email"], server.data_dir / "storage" / "lim")


def greeting(server: Server, name: str = "ftp") -> str:
    """The first line a new plain connection gets (220 welcome or 421 refusal)."""
    with socket.create_connection(ftp_address(server, name), 10) as s:
        s.settimeout(10)
        return s.makefile("rb").readline().decode("ascii", "replace").strip()


def refused_now(server: Server) -> str:
    line = greeting(server)
    return line if line.startswith("421") else ""


def admitted_now(server: Server) -> bool:
    return greeting(server).startswith("220")


def test_per_address_limit_applies_live_with_a_clear_421(env: Env) -> None:
    server = env.world.server
    held = [ftp_login(server, env.email) for _ in range(2)]
    try:
        with env.world.c(env.world.admin) as c:
            set_config(c, ftp__max_sessions_per_address="2")
        reply = eventually(lambda: refused_now(server))  # the key travels as a change event
        assert reply == "421 Too many FTP sessions from your address: at most 2 at a time. Close one and try again."
        for f in held:  # the sessions already open go on
            assert f.sendcmd("NOOP").startswith("200")
        held.pop().quit()
        assert eventually(lambda: admitted_now(server))  # a closed session frees its place
        with env.world.c(env.world.admin) as c:
            set_config(c, ftp__max_sessions_per_address="3")
        extra = eventually(lambda: _login_or_none(env))
        held.append(extra)
        assert extra.sendcmd("NOOP").startswith("200")
    finally:
        for f in held:
            f.close()
        with env.world.c(env.world.admin) as c:
            set_config(c, ftp__max_sessions_per_address="20")


def _login_or_none(env: Env) -> ftplib.FTP | None:
    try:
        return ftp_login(env.world.server, env.email)
    except (ftplib.error_temp, EOFError, OSError):
        return None


def test_total_limit_counts_both_listeners(env: Env) -> None:
    server = env.world.server
    with env.world.c(env.world.admin) as c:
        n = len(server.log)
        set_config(c, ftp__tls_listen_interface="127.0.0.1:0", ftp__max_sessions="2")
        server.wait_listening("ftps", n)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    plain: ftplib.FTP | None = None
    implicit: ssl.SSLSocket | None = None
    try:
        plain = ftp_login(server, env.email)
        implicit = ctx.wrap_socket(socket.create_connection(ftp_address(server, "ftps"), 10), server_hostname="x")
        assert implicit.recv(100).startswith(b"220")  # the second session, on the implicit-TLS listener
        reply = eventually(lambda: refused_now(server))
        assert reply == "421 Too many FTP sessions: this server allows 2 at a time. Try again later."
        with pytest.raises((ssl.SSLError, OSError, ConnectionError)):  # implicit TLS: closed, no plain-text line
            extra = ctx.wrap_socket(socket.create_connection(ftp_address(server, "ftps"), 10), server_hostname="x")
            if not extra.recv(100):
                raise ConnectionError("closed")
        implicit.close()
        implicit = None
        assert eventually(lambda: admitted_now(server))
    finally:
        if implicit is not None:
            implicit.close()
        if plain is not None:
            plain.close()
        with env.world.c(env.world.admin) as c:
            n = len(server.log)
            set_config(c, ftp__tls_listen_interface="", ftp__max_sessions="100")
            server.wait_line(r"^portside: ftps stopped", n)
    assert eventually(lambda: admitted_now(server))


def test_a_bad_limit_names_the_key_and_a_good_one_restores_ftp(env: Env) -> None:
    server = env.world.server
    with env.world.c(env.world.admin) as c:
        set_config(c, ftp__max_sessions="0")
        deadline = time.monotonic() + 15
        ports = {}
        while time.monotonic() < deadline:
            ports = {p["name"]: p for p in c.get("/_ports").json()}
            if ports.get("ftp", {}).get("state") == "failed":
                break
            time.sleep(0.1)
        assert ports["ftp"]["state"] == "failed" and "ftp.max_sessions" in ports["ftp"]["error"]
        n = len(server.log)
        set_config(c, ftp__max_sessions="100")
        server.wait_listening("ftp", n)
    f = ftp_login(server, env.email)
    assert f.sendcmd("NOOP").startswith("200")
    f.quit()


def test_rest_past_the_end_changes_nothing_and_an_empty_resume_cuts(env: Env) -> None:
    f = ftp_login(env.world.server, env.email)
    f.cwd("/lim.example.com")
    put(f, "keep.bin", b"0123456789")
    f.voidcmd("TYPE I")
    f.sendcmd("REST 50")
    assert refused(f.storbinary, "STOR keep.bin", io.BytesIO(b"tail")).startswith("554")
    assert (env.site_dir / "keep.bin").read_bytes() == b"0123456789"  # refused: untouched (was cut to 0)
    f.storbinary("STOR keep.bin", io.BytesIO(b""), rest=4)
    assert get(f, "keep.bin") == b"0123"
    f.storbinary("STOR keep.bin", io.BytesIO(b"45"), rest=4)
    assert get(f, "keep.bin") == b"012345"
    f.quit()


def test_links_at_any_depth_and_site_folders_that_lead_out(env: Env, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    deep = env.site_dir / "deep" / "er"
    deep.mkdir(parents=True)
    (env.site_dir / "deep" / "ok.txt").write_bytes(b"ok")
    os.symlink(outside, deep / "out")
    os.symlink(env.site_dir / "deep", env.site_dir / "inside")  # a link that stays inside the site
    f = ftp_login(env.world.server, env.email)
    assert get(f, "/lim.example.com/inside/ok.txt") == b"ok"
    assert refused(get, f, "/lim.example.com/deep/er/out/secret.txt").startswith("550")
    assert refused(get, f, "/lim.example.com/inside/er/out/secret.txt").startswith("550")
    assert refused(put, f, "/lim.example.com/deep/er/out/planted.txt", b"x").startswith("550")
    assert refused(f.mkd, "/lim.example.com/deep/er/out/made").startswith("550")
    assert not (outside / "planted.txt").exists() and not (outside / "made").exists()
    store_dir = env.site_dir.parent
    (store_dir / "swap").mkdir()
    (store_dir / "swap" / "page.txt").write_bytes(b"in the store")
    os.symlink(outside, store_dir / "linked")
    with env.world.c(env.world.admin) as c:
        owner = me(env.world.c(env.world.owner))["id"]
        rights = owner_bits(PEEK | READ | CREATE | UPDATE | DELETE)
        make_site(c, localstore(c), "linked.example.com", permission=rights, owner=owner, path="linked")
        make_site(c, localstore(c), "swap.example.com", permission=rights, owner=owner, path="swap")
    assert eventually(lambda: "swap.example.com" in f.nlst("/"))
    assert refused(get, f, "/linked.example.com/secret.txt").startswith("550")  # its folder leads out
    assert refused(put, f, "/linked.example.com/planted.txt", b"x").startswith("550")
    assert get(f, "/swap.example.com/page.txt") == b"in the store"  # its root is resolved (and kept) now
    shutil.rmtree(store_dir / "swap")
    os.symlink(outside, store_dir / "swap")  # swapped for a link out of the store
    assert refused(get, f, "/swap.example.com/secret.txt").startswith("550")
    assert refused(put, f, "/swap.example.com/planted.txt", b"x").startswith("550")
    assert not (outside / "planted.txt").exists()
    f.quit()
