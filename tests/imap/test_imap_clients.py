"""Real IMAP clients against Portside: imapclient's livetest suite, mbsync (isync) two-way sync with upload,
flag changes and expunge, and offlineimap3. Each talks implicit TLS to the `imaps` listener and trusts the
server's self-signed certificate through a file (as VERIFIERS.md §4 describes)."""

from __future__ import annotations

import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imap_support import ALICE, ALICE_PW, BOB, BOB_PW, ImapWorld, connect_tls, message, running_imap_world

# livetest failures that Dovecot shows too (VERIFIERS.md §4.2): client bugs (imaplib has no MOVE, an
# Envelope comparison bug) and timeouts that need a slow network to fail as the test expects
KNOWN_CLIENT_FAILURES = {
    "test_move",
    "test_fetch",
    "test_small_read_timeout_fail",
    "test_small_connection_timeout_fail",
}


@pytest.fixture(scope="module")
def world() -> Iterator[ImapWorld]:
    with running_imap_world() as w:
        yield w


@pytest.fixture(scope="module")
def cert(world: ImapWorld) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="imap-cert-"))
    path = folder / "server.pem"
    path.write_text(ssl.get_server_certificate(("127.0.0.1", world.port("imaps"))))
    yield path
    shutil.rmtree(folder, ignore_errors=True)


def test_imapclient_livetest(world: ImapWorld, cert: Path, tmp_path: Path) -> None:
    ini = tmp_path / "livetest.ini"
    ini.write_text(
        f"[DEFAULT]\nhost = localhost\nport = {world.port('imaps')}\nssl = true\n"
        f"username = {BOB}\npassword = {BOB_PW}\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "imapclient.livetest", str(ini), "-v"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "SSL_CERT_FILE": str(cert)},
    )
    out = r.stdout + r.stderr
    ran = re.search(r"Ran (\d+) tests", out)
    assert ran is not None and int(ran.group(1)) >= 50, out[-3000:]
    failed = set(re.findall(r"^(?:FAIL|ERROR): (\w+)", out, re.M))
    assert failed <= KNOWN_CLIENT_FAILURES, out[-6000:]
    passed = len(re.findall(r" \.\.\. ok$", out, re.M))
    assert passed >= 30, out[-3000:]


def _mbsync(config: Path) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["mbsync", "-c", str(config), "-a"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def _maildir_files(folder: Path) -> list[Path]:
    return sorted(p for sub in ("cur", "new") for p in (folder / sub).glob("*") if p.is_file())


@pytest.mark.skipif(shutil.which("mbsync") is None, reason="isync (mbsync) is not installed: run .ci/deps")
def test_mbsync_two_way_sync(world: ImapWorld, cert: Path, tmp_path: Path) -> None:
    m = connect_tls(world)
    m.create("Synced")
    for i in range(3):
        m.append("Synced", None, None, message(f"sync {i}"))
    local = tmp_path / "mail"
    local.mkdir()
    config = tmp_path / "mbsyncrc"
    config.write_text(
        f"IMAPAccount portside\nHost localhost\nPort {world.port('imaps')}\nUser {ALICE}\nPass {ALICE_PW}\n"
        f"SSLType IMAPS\nCertificateFile {cert}\n\n"
        "IMAPStore remote\nAccount portside\n\n"
        f"MaildirStore local\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n"
        "Channel sync\nFar :remote:\nNear :local:\nPatterns INBOX Synced\nCreate Both\nExpunge Both\n"
        "SyncState *\n"
    )
    _mbsync(config)
    files = _maildir_files(local / "Synced")
    assert len(files) == 3 and all(b"Subject: sync " in f.read_bytes() for f in files)
    # upload: a message written into the local Maildir reaches the server
    upload = message("written locally")
    (local / "Synced" / "new" / f"{int(time.time())}.local1.host").write_bytes(upload)
    # a flag set on the server reaches the local file name
    m.select("Synced")
    m.store("1", "+FLAGS", "(\\Flagged)")
    _mbsync(config)
    typ, data = m.search(None, "SUBJECT", '"written locally"')
    assert typ == "OK" and len((data[0] or b"").split()) == 1, data
    typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[])")
    bodies = [p[1] for p in data if isinstance(p, tuple)]
    assert any(upload.split(b"\r\n\r\n")[1] in b and b"Subject: written locally" in b for b in bodies)
    flagged = [f for f in _maildir_files(local / "Synced") if re.search(r":2,[A-Z]*F", f.name)]
    assert len(flagged) == 1
    # a local deletion expunges on the server
    victim = next(f for f in _maildir_files(local / "Synced") if b"sync 2" in f.read_bytes())
    victim.unlink()
    _mbsync(config)
    m.noop()
    typ, data = m.search(None, "SUBJECT", '"sync 2"')
    assert data[0] == b"", data
    typ, data = m.search(None, "ALL")
    assert len((data[0] or b"").split()) == 3
    m.logout()


@pytest.mark.skipif(shutil.which("offlineimap") is None, reason="offlineimap3 is not installed: run .ci/deps")
def test_offlineimap_sync(world: ImapWorld, cert: Path, tmp_path: Path) -> None:
    m = connect_tls(world, BOB, BOB_PW)
    m.create("Offline")
    for i in range(2):
        m.append("Offline", None, None, message(f"offline {i}"))
    config = tmp_path / "offlineimaprc"
    config.write_text(
        f"[general]\naccounts = A\nmetadata = {tmp_path}/meta\n\n"
        "[Account A]\nlocalrepository = L\nremoterepository = R\n\n"
        f"[Repository L]\ntype = Maildir\nlocalfolders = {tmp_path}/mail\n\n"
        f"[Repository R]\ntype = IMAP\nremotehost = localhost\nremoteport = {world.port('imaps')}\n"
        f"ssl = yes\nsslcacertfile = {cert}\nremoteuser = {BOB}\nremotepass = {BOB_PW}\n"
        "folderfilter = lambda name: name in ['INBOX', 'Offline']\n"
    )
    (tmp_path / "mail").mkdir()
    r = subprocess.run(
        ["offlineimap", "-c", str(config), "-o", "-u", "basic"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stdout + r.stderr
    files = _maildir_files(tmp_path / "mail" / "Offline")
    assert len(files) == 2 and all(b"Subject: offline " in f.read_bytes() for f in files)
    # and back: a local message is uploaded on the next run
    (tmp_path / "mail" / "Offline" / "new" / f"{int(time.time())}_0.1.host").write_bytes(message("from offline"))
    r = subprocess.run(
        ["offlineimap", "-c", str(config), "-o", "-u", "basic"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stdout + r.stderr
    m.select("Offline")
    typ, data = m.search(None, "SUBJECT", '"from offline"')
    assert typ == "OK" and len((data[0] or b"").split()) == 1, (data, r.stdout + r.stderr)
    m.logout()
