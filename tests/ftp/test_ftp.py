"""FTP/FTPS over the sites' cloud stores, against a real server with ftplib (spec communication §E, §I 46-54).

The permission map (§E.4) and the path rules (§E.5) are regression tests of Daptin's FTP authorization
bypass (H #21): a site the user may not Peek is indistinguishable from a missing one, and no path (`..`,
backslash, encoded, NUL, symlink, another site) reaches a file outside the site's folder.
"""

from __future__ import annotations

import ftplib
import io
import os
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from files_support import (
    ALL,
    CREATE,
    DELETE,
    PEEK,
    READ,
    UPDATE,
    eventually,
    ftp_address,
    ftp_login,
    get,
    group_bits,
    localstore,
    make_site,
    owner_bits,
    put,
    refused,
    set_config,
)
from support import PASSWORD, Server, World, create, fresh_database, me, setup_world, start_server


@dataclass
class Files:
    world: World
    emails: dict[str, str]
    store_dir: Path


def _email(server: Server, token: str) -> str:
    with server.client(token) as c:
        return str(me(c)["attributes"]["email"])


@pytest.fixture(scope="module")
def files() -> Iterator[Files]:
    url, drop = fresh_database("sqlite")
    server = start_server(url)
    try:
        world = setup_world(server, url)
        emails = {n: _email(server, getattr(world, n)) for n in ("admin", "owner", "member", "stranger")}
        with world.c(world.admin) as c:
            store = localstore(c)
            owner_ref = me(world.c(world.owner))["id"]
            own = owner_bits(PEEK | READ | CREATE | UPDATE | DELETE)
            make_site(c, store, "own.example.com", permission=own, owner=owner_ref)
            make_site(c, store, "peek.example.com", permission=PEEK)  # every user may see it, nobody read it
            make_site(c, store, "team.example.com", permission=0, group=(world.team, group_bits(PEEK | READ | CREATE)))
            make_site(c, store, "other.example.com", permission=owner_bits(ALL))  # the administrator's own
            make_site(c, store, "off.example.com", permission=PEEK | READ, ftp=False)
            make_site(c, store, "two.example.com,alias.example.com", permission=own, owner=owner_ref, path="two")
            n = len(server.log)
            set_config(c, ftp__listen_interface="127.0.0.1:0", ftp__passive_ports="", ftp__enable="true")
            server.wait_listening("ftp", n)
        yield Files(world, emails, server.data_dir / "storage")
    finally:
        server.stop()
        drop()


def login(files: Files, who: str, *, tls: bool = False) -> ftplib.FTP:
    return ftp_login(files.world.server, files.emails[who], tls=tls)


# -- 46: login -------------------------------------------------------------------------------------------


def test_login_ok_and_wrong_password_disconnects(files: Files) -> None:
    host, port = ftp_address(files.world.server)
    f = ftplib.FTP(timeout=20)
    assert f.connect(host, port).startswith("220")
    assert f.sendcmd(f"USER {files.emails['owner']}").startswith("331")
    assert f.sendcmd(f"PASS {PASSWORD}") == "230 Password ok, continue"
    f.quit()
    f = ftplib.FTP(timeout=20)
    f.connect(host, port)
    f.sendcmd(f"USER {files.emails['owner']}")
    reply = refused(f.sendcmd, "PASS wrong-password")
    assert reply.startswith("530") and "could not authenticate you" in reply.lower()
    with pytest.raises((EOFError, OSError, ftplib.Error)):
        f.sendcmd("NOOP")  # disconnected


def test_commands_before_login_are_refused(files: Files) -> None:
    host, port = ftp_address(files.world.server)
    f = ftplib.FTP(timeout=20)
    f.connect(host, port)
    assert refused(f.sendcmd, "LIST /").startswith("530")
    assert refused(f.sendcmd, "CWD /own.example.com").startswith("530")
    f.close()


# -- 47, 48: the root and what may be seen --------------------------------------------------------------


def test_root_lists_the_sites_the_user_may_peek(files: Files) -> None:
    seen = {}
    for who in ("owner", "member", "stranger", "admin"):
        f = login(files, who)
        seen[who] = set(f.nlst("/"))
        f.quit()
    assert seen["owner"] == {"own.example.com", "peek.example.com", "two.example.com", "alias.example.com"}
    assert seen["member"] == {"team.example.com", "peek.example.com"}
    assert seen["stranger"] == {"peek.example.com"}
    assert "other.example.com" in seen["admin"] and "off.example.com" not in seen["admin"]


def test_a_site_without_peek_looks_like_a_missing_one(files: Files) -> None:
    f = login(files, "owner")
    hidden = refused(f.cwd, "/other.example.com")
    missing = refused(f.cwd, "/nothing.example.com")
    assert hidden.startswith("550 CD issue: no such path")  # Daptin's text
    assert hidden.replace("other", "X") == missing.replace("nothing", "X")
    assert refused(f.retrbinary, "RETR /other.example.com/x", print) == refused(
        f.retrbinary, "RETR /nothing.example.com/x", print
    ).replace("nothing", "other")
    f.quit()


# -- 49, 50: the permission map ---------------------------------------------------------------------------


def test_peek_only_may_not_list_or_read(files: Files) -> None:
    (files.store_dir / "peek").mkdir(exist_ok=True)
    (files.store_dir / "peek" / "secret.txt").write_bytes(b"not for you")
    f = login(files, "owner")
    f.cwd("/peek.example.com")  # Peek is enough to enter
    assert "permission denied" in refused(f.nlst)
    assert "permission denied" in refused(get, f, "secret.txt")
    assert "permission denied" in refused(put, f, "new.txt", b"x")
    f.quit()


def test_create_update_delete_are_separate_rights(files: Files) -> None:
    name = f"f-{uuid.uuid4().hex[:6]}.txt"
    f = login(files, "member")  # the team: Peek, Read, Create
    assert put(f, f"/team.example.com/{name}", b"first").startswith("226")
    assert get(f, f"/team.example.com/{name}") == b"first"
    assert "permission denied" in refused(put, f, f"/team.example.com/{name}", b"second")  # needs Update
    assert "permission denied" in refused(f.delete, f"/team.example.com/{name}")  # needs Delete
    assert "permission denied" in refused(f.rename, f"/team.example.com/{name}", f"/team.example.com/b-{name}")
    f.mkd(f"/team.example.com/d-{name}")  # Create
    f.quit()
    assert (files.store_dir / "team" / name).read_bytes() == b"first"
    f = login(files, "owner")  # own site: everything
    assert put(f, f"/own.example.com/{name}", b"one").startswith("226")
    assert put(f, f"/own.example.com/{name}", b"two").startswith("226")
    f.rename(f"/own.example.com/{name}", f"/own.example.com/r-{name}")
    assert get(f, f"/own.example.com/r-{name}") == b"two"
    f.delete(f"/own.example.com/r-{name}")
    assert not (files.store_dir / "own" / f"r-{name}").exists()
    f.quit()


def test_a_site_row_with_two_hostnames_is_two_folders(files: Files) -> None:
    f = login(files, "owner")
    put(f, "/two.example.com/shared.txt", b"same folder")
    assert get(f, "/alias.example.com/shared.txt") == b"same folder"
    f.quit()


def test_mkd_rmd_and_folder_rules(files: Files) -> None:
    f = login(files, "owner")
    d = f"/own.example.com/dir-{uuid.uuid4().hex[:6]}"
    f.mkd(d)
    assert refused(f.mkd, f"{d}/a/b").startswith("550")  # MKD does not create parents
    put(f, f"{d}/x.txt", b"x")
    assert refused(f.rmd, d).startswith("550")  # not empty
    f.delete(f"{d}/x.txt")
    f.rmd(d)
    assert not (files.store_dir / d.lstrip("/").split("/", 1)[1]).exists()
    f.quit()


# -- 51, 52: path rules -----------------------------------------------------------------------------------


def test_no_path_leaves_the_site(files: Files, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_bytes(b"root:x:0:0")
    own = files.store_dir / "own"
    own.mkdir(exist_ok=True)
    link = own / "escape"
    if not link.exists():
        os.symlink(outside, link)
    (files.store_dir / "team").mkdir(exist_ok=True)
    (files.store_dir / "team" / "team-only.txt").write_bytes(b"team data")
    f = login(files, "owner")
    for path in (
        "/own.example.com/../../etc/passwd",
        "/own.example.com/../../../../../../etc/passwd",
        "/own.example.com/escape/passwd",
        "own.example.com\\..\\..\\etc\\passwd",
        "/own.example.com/%2e%2e/%2e%2e/etc/passwd",
        "/own.example.com/..%2f..%2fetc/passwd",
        "/own.example.com/../team.example.com/team-only.txt",
    ):
        reply = refused(get, f, path)
        assert reply.startswith("550"), (path, reply)
    assert "escape" not in f.nlst("/own.example.com")
    assert refused(f.cwd, "/own.example.com/escape").startswith("550")
    assert refused(put, f, "/own.example.com/escape/planted", b"x").startswith("550")
    assert not (outside / "planted").exists()
    # a NUL byte is refused and the session goes on
    assert refused(f.sendcmd, "SIZE /own.example.com/a\x00b").startswith("5")
    assert f.sendcmd("NOOP").startswith("200")
    f.quit()


def test_site_roots_and_cross_site_renames(files: Files) -> None:
    f = login(files, "admin")
    put(f, "/own.example.com/move-me.txt", b"m")
    reply = refused(f.rename, "/own.example.com/move-me.txt", "/team.example.com/move-me.txt")
    assert "cannot rename across sites" in reply
    assert "cannot rename across sites" in refused(
        f.rename, "/own.example.com/move-me.txt", "/own.example.com/../team.example.com/x"
    )
    assert refused(f.delete, "/own.example.com").startswith("550")
    assert refused(f.rmd, "/own.example.com").startswith("550")
    assert refused(f.rename, "/own.example.com", "/own2.example.com").startswith("550")
    assert "invalid site" in refused(f.mkd, "/newsite.example.com")
    f.quit()
    f = login(files, "owner")  # a site the owner may not see is as invalid as a missing one
    assert refused(f.delete, "/other.example.com") == refused(f.delete, "/nothing.example.com").replace(
        "nothing", "other"
    )
    assert "invalid site" in refused(f.rmd, "/other.example.com")
    assert (files.store_dir / "own" / "move-me.txt").exists()
    f.quit()


# -- transfers ---------------------------------------------------------------------------------------------


def test_rest_appe_mlsd_size_mdtm_utf8_eprt(files: Files) -> None:
    f = login(files, "owner")
    f.cwd("/own.example.com")
    data = os.urandom(300_000)
    put(f, "big.bin", data[:100_000])
    f.storbinary("APPE big.bin", io.BytesIO(data[100_000:200_000]))
    f.storbinary("STOR big.bin", io.BytesIO(data[200_000:]), rest=200_000)
    assert f.size("big.bin") == 300_000
    assert get(f, "big.bin") == data
    buf = bytearray()
    f.retrbinary("RETR big.bin", buf.extend, rest=250_000)
    assert bytes(buf) == data[250_000:]
    assert f.sendcmd("MDTM big.bin").startswith("213 ")
    facts = dict(f.mlsd())
    assert facts["big.bin"]["size"] == "300000" and facts["big.bin"]["type"] == "file"
    assert f.sendcmd("MLST big.bin").startswith("250")
    assert f.sendcmd("OPTS UTF8 ON").startswith("200")
    name = "grüße-日本.txt"
    put(f, name, b"utf8")
    assert name in f.nlst()
    f.set_pasv(False)  # active mode (PORT)
    assert get(f, name) == b"utf8"
    f.set_pasv(True)
    # EPRT: the server connects to our socket
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        assert f.sendcmd(f"EPRT |1|127.0.0.1|{lsock.getsockname()[1]}|").startswith("200")
        f.putcmd(f"RETR {name}")
        conn, _ = lsock.accept()
        with conn:
            assert f.getresp().startswith(("125", "150"))
            assert conn.makefile("rb").read() == b"utf8"
        assert f.voidresp().startswith("226")
    assert f.sendcmd("EPSV").startswith("229")  # and the extended passive reply
    f.quit()
    assert (files.store_dir / "own" / name).read_bytes() == b"utf8"


def test_upload_bound(files: Files) -> None:
    with files.world.c(files.world.admin) as c:
        set_config(c, storage__max_upload_bytes="50000")
    try:
        f = login(files, "owner")
        try:
            put(f, "/own.example.com/too-big.bin", b"x" * 200_000)
            raise AssertionError("an upload over the bound was accepted")
        except ftplib.Error as exc:
            reply = str(exc)
        except OSError:  # the server closed the data connection while we were still sending
            try:
                reply = f.getresp()
            except ftplib.Error as exc:
                reply = str(exc)
        assert reply.startswith(("552", "426")), reply
        assert not (files.store_dir / "own" / "too-big.bin").exists()
        assert put(f, "/own.example.com/small.bin", b"x" * 1000).startswith("226")
        f.quit()
    finally:
        with files.world.c(files.world.admin) as c:
            set_config(c, storage__max_upload_bytes="1073741824")


# -- 53: FTPS ----------------------------------------------------------------------------------------------


class ReusingFTP(ftplib.FTP_TLS):
    """An FTPS client that resumes the control connection's TLS session on data connections."""

    reused: list[bool]

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)  # type: ignore[attr-defined]
            self.reused.append(conn.session_reused)
        return conn, size


def test_explicit_tls_with_session_reuse(files: Files) -> None:
    host, port = ftp_address(files.world.server)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # session ids: resumption without waiting for tickets
    f = ReusingFTP(context=ctx, timeout=20)
    f.reused = []
    f.connect(host, port)
    assert f.auth().startswith("234")
    cert = f.sock.getpeercert(binary_form=True)  # type: ignore[attr-defined]
    assert cert
    f.login(files.emails["owner"], PASSWORD)
    assert f.sendcmd("PBSZ 0").startswith("200")
    assert f.sendcmd("PROT P").startswith("200")
    f._prot_p = True
    put(f, "/own.example.com/tls.txt", b"over tls")
    assert get(f, "/own.example.com/tls.txt") == b"over tls"
    f.quit()
    assert f.reused and all(f.reused)


def test_require_tls_and_implicit_tls(files: Files) -> None:
    server = files.world.server
    with files.world.c(files.world.admin) as c:
        n = len(server.log)
        set_config(c, ftp__require_tls="true", ftp__tls_listen_interface="127.0.0.1:0")
        server.wait_listening("ftps", n)
        ports = {p["name"]: p for p in c.get("/_ports").json()}
        assert ports["ftp"]["tls"] == "starttls" and ports["ftps"]["tls"] == "implicit"
        assert ports["ftps"]["url"].startswith("ftps://127.0.0.1:")
    try:
        host, port = ftp_address(server)
        f = ftplib.FTP(timeout=20)
        f.connect(host, port)
        assert refused(f.login, files.emails["owner"], PASSWORD).startswith(("530", "550"))
        f.close()
        f2 = ftp_login(server, files.emails["owner"], tls=True)
        assert "own.example.com" in f2.nlst("/")
        f2.quit()
        ihost, iport = ftp_address(server, "ftps")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection((ihost, iport), 20)
        tls = ctx.wrap_socket(raw, server_hostname="localhost")
        assert tls.recv(100).startswith(b"220")
        tls.close()
    finally:
        with files.world.c(files.world.admin) as c:
            n = len(server.log)
            set_config(c, ftp__require_tls="false", ftp__tls_listen_interface="")
            server.wait_line(r"^portside: ftps stopped", n)


# -- 54 and live settings ----------------------------------------------------------------------------------


def test_upload_is_in_the_store_at_once_and_store_files_are_visible(files: Files) -> None:
    f = login(files, "owner")
    put(f, "/own.example.com/through.txt", b"write-through")
    assert (files.store_dir / "own" / "through.txt").read_bytes() == b"write-through"
    (files.store_dir / "own" / "dropped-in.txt").write_bytes(b"from elsewhere")
    assert "dropped-in.txt" in f.nlst("/own.example.com")
    assert get(f, "/own.example.com/dropped-in.txt") == b"from elsewhere"
    f.quit()


def test_passive_ports_public_host_and_idle_timeout_apply_live(files: Files) -> None:
    base = 40000 + (os.getpid() % 200) * 50
    with files.world.c(files.world.admin) as c:
        set_config(c, ftp__passive_ports=f"{base}-{base + 9}", ftp__public_host="127.0.0.9", ftp__idle_timeout="2")
    try:
        f = login(files, "owner")

        def pasv() -> list[int]:
            reply = f.sendcmd("PASV")
            return [int(x) for x in reply[reply.index("(") + 1 : reply.index(")")].split(",")]

        nums = eventually(lambda: (n := pasv())[:4] == [127, 0, 0, 9] and n)  # config travels as an event
        assert base <= nums[4] * 256 + nums[5] <= base + 9
        f.quit()
        f = login(files, "owner")  # a session that started with the 2 s idle timeout
        time.sleep(3.5)
        with pytest.raises((EOFError, OSError, ftplib.Error)):
            f.sendcmd("NOOP")  # closed by the idle timeout (421)
    finally:
        with files.world.c(files.world.admin) as c:
            set_config(c, ftp__passive_ports="", ftp__public_host="", ftp__idle_timeout="300")


def test_site_rights_change_live(files: Files) -> None:
    with files.world.c(files.world.admin) as c:
        store = localstore(c)
        ref = make_site(c, store, "late.example.com", permission=PEEK | READ)
    f = login(files, "stranger")
    assert "late.example.com" in f.nlst("/")
    with files.world.c(files.world.admin) as c:
        r = c.patch(f"/api/site/{ref}", json={"data": {"type": "site", "id": ref, "attributes": {"permission": 0}}})
        assert r.status_code == 200, r.text
    assert "late.example.com" not in f.nlst("/")  # the write's own commit already refreshed the sites
    assert "no such path" in refused(f.cwd, "/late.example.com")
    f.quit()


def test_changed_password_ends_the_session(files: Files) -> None:
    server = files.world.server
    email = f"pw-{uuid.uuid4().hex[:6]}@example.com"
    with files.world.c(files.world.admin) as c:
        r = create(c, "user_account", name="Pw", email=email, password="initial-pass1")
        assert r.status_code == 201, r.text
        ref = r.json()["data"]["id"]
    f = ftp_login(server, email, "initial-pass1")
    assert f.sendcmd("NOOP").startswith("200")
    with files.world.c(files.world.admin) as c:
        r = c.patch(
            f"/api/user_account/{ref}",
            json={"data": {"type": "user_account", "id": ref, "attributes": {"password": "another-pass-1"}}},
        )
        assert r.status_code == 200, r.text
    assert "421" in ended(f)


def ended(f: ftplib.FTP) -> str:
    """The reply (or error) that shows a session was ended by the server, waiting for the event."""

    def check() -> str:
        try:
            f.sendcmd("NOOP")
        except ftplib.error_temp as exc:
            return str(exc) or "421"
        except (EOFError, OSError) as exc:
            return f"421 (closed: {exc!r})"
        return ""

    return str(eventually(check))


def test_disabling_ftp_stops_the_listener(files: Files) -> None:
    server = files.world.server
    host, port = ftp_address(server)
    with files.world.c(files.world.admin) as c:
        n = len(server.log)
        set_config(c, ftp__enable="false")
        server.wait_line(r"^portside: ftp stopped", n)
        with pytest.raises(OSError):
            socket.create_connection((host, port), 2).close()
        assert "ftp" not in {p["name"] for p in c.get("/_ports").json()}
        n = len(server.log)
        set_config(c, ftp__enable="true")
        server.wait_listening("ftp", n)
        ports = {p["name"]: p for p in c.get("/_ports").json()}
        assert ports["ftp"]["state"] == "running" and ports["ftp"]["url"].startswith("ftp://127.0.0.1:")
        set_config(c, ftp__listen_interface="not-an-address")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ports = {p["name"]: p for p in c.get("/_ports").json()}
            if ports.get("ftp", {}).get("state") == "failed":
                break
            time.sleep(0.1)
        assert ports["ftp"]["state"] == "failed" and "ftp.listen_interface" in ports["ftp"]["error"]
        n = len(server.log)
        set_config(c, ftp__listen_interface="127.0.0.1:0")
        server.wait_listening("ftp", n)


def test_malformed_commands_get_errors_and_the_session_survives(files: Files) -> None:
    f = login(files, "owner")
    assert refused(f.sendcmd, "X" * 5000).startswith("5")  # an over-long line (its rest is a second command)
    f.putcmd("NOOP")
    while not f.getline().startswith("200"):
        pass
    f.voidcmd("TYPE I")
    assert refused(f.sendcmd, "REST -5").startswith("5")
    assert refused(f.sendcmd, "REST 99999999999999999999999").startswith("5")
    assert refused(f.sendcmd, "PORT 10,0,0,1,0,21").startswith("5")  # another host: FXP bounce refused
    assert refused(f.sendcmd, "PORT 127,0,0,1,0,21").startswith("5")  # a privileged port
    assert refused(f.sendcmd, "EPRT |9|x|y|").startswith("5")
    assert refused(f.sendcmd, "BOGUS").startswith("5")
    assert refused(f.sendcmd, "SITE EXEC /bin/sh").startswith("5")
    assert refused(f.cwd, "/OWN.EXAMPLE.COM.evil").startswith("550")
    f.cwd("/OWN.example.com")  # host names are case-insensitive
    assert f.sendcmd("NOOP").startswith("200")
    f.quit()


def test_many_parallel_sessions_of_one_user(files: Files) -> None:
    """Clients open several sessions at once (lftp --parallel, FileZilla): all of them log in."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> bytes:
        f = login(files, "owner")
        try:
            put(f, f"/own.example.com/par-{i}.txt", str(i).encode())
            return get(f, f"/own.example.com/par-{i}.txt")
        finally:
            f.quit()

    with ThreadPoolExecutor(20) as pool:
        assert list(pool.map(one, range(20))) == [str(i).encode() for i in range(20)]


def test_application_password_login_and_revocation(files: Files) -> None:
    with files.world.c(files.world.owner) as c:
        r = c.post("/action/user_account/create_app_password", json={"attributes": {"name": "ftp-client"}})
        assert r.status_code == 200, r.text
        attrs = next(x for x in r.json() if x["ResponseType"] == "action.response")["Attributes"]
    f = ftp_login(files.world.server, files.emails["owner"], attrs["secret"])
    assert "own.example.com" in f.nlst("/")
    with files.world.c(files.world.owner) as c:
        assert c.delete(f"/api/app_password/{attrs['reference_id']}").status_code in (200, 204)
    assert "421" in ended(f)
    host, port = ftp_address(files.world.server)
    g = ftplib.FTP(timeout=20)
    g.connect(host, port)
    assert refused(g.login, files.emails["owner"], attrs["secret"]).startswith("530")
