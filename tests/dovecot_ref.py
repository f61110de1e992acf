"""A private reference Dovecot 2.3 (Debian `dovecot-imapd`) for differential tests and benchmarks: its own
config in a temp dir (never /etc/dovecot), maildir, one passwd-file user, implicit TLS on a free port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DOVECOT = "/usr/sbin/dovecot"
CONF = """instance_name = portside-ref-{port}
base_dir = {ref}/run
state_dir = {ref}/state
log_path = {ref}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{ref}/cert.pem
ssl_key = <{ref}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {ref}/passwd
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={ref}/home/%n
}}
mail_location = maildir:~/Maildir
first_valid_uid = 1000
mail_max_userip_connections = 500
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {port}
  }}
}}
service imap {{
  process_limit = 512
}}
"""


@dataclass
class Dovecot:
    port: int  # implicit TLS
    ref: Path

    def stop(self) -> None:
        pid = self.ref / "run" / "master.pid"
        if pid.exists():
            subprocess.run(["kill", pid.read_text().strip()], check=False)
            deadline = time.monotonic() + 10
            while pid.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
        shutil.rmtree(self.ref, ignore_errors=True)


def available() -> bool:
    return os.path.exists(DOVECOT) and os.geteuid() == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(user: str, password: str) -> Dovecot:
    """Dovecot serving `user`/`password` from a fresh temp dir (readable by its processes, which run as
    other users)."""
    ref = Path(tempfile.mkdtemp(prefix="portside-dovecot-"))
    os.chmod(ref, 0o755)
    for sub in ("run", "state", "home"):
        (ref / sub).mkdir()
    shutil.chown(ref / "home", 65534, 65534)
    (ref / "passwd").write_text(f"{user}:{{PLAIN}}{password}::::::\n")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-keyout", str(ref / "key.pem"), "-out", str(ref / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    conf = ref / "dovecot.conf"
    conf.write_text(CONF.format(ref=ref, port=port))
    subprocess.run([DOVECOT, "-c", str(conf)], check=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return Dovecot(port, ref)
        time.sleep(0.1)
    raise RuntimeError("dovecot did not start: " + (ref / "dovecot.log").read_text()[-2000:])
