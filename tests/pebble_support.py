"""Pebble (Let's Encrypt's test CA; `.ci/deps` installs it) for ACME tests: a CA of its own, every name
resolving to 127.0.0.1, HTTP-01 validated on a Portside node's HTTP port."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write_pebble_certs(d: Path) -> tuple[Path, Path, Path]:
    """A test CA and a leaf for 127.0.0.1/localhost for Pebble's own HTTPS (the WFE)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "portside test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (d / "ca.pem").write_bytes(ca.public_bytes(pem))
    (d / "wfe.pem").write_bytes(leaf.public_bytes(pem))
    (d / "wfe.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return d / "ca.pem", d / "wfe.pem", d / "wfe.key"


def await_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{what} exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{what} did not open port {port}")


@contextmanager
def running_pebble(http_port: int) -> Iterator[dict[str, str]]:
    """pebble-challtestsrv (every name resolves to 127.0.0.1) and pebble validating HTTP-01 on `http_port`
    (a Portside node's HTTP port); yields the directory URL, the CA file, the management URL and the log."""
    d = Path(tempfile.mkdtemp(prefix="portside-pebble-"))
    ca, cert, key = write_pebble_certs(d)
    dns, mgmt, directory, pmgmt, tls = (free_port() for _ in range(5))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        chall = subprocess.Popen(
            [
                "pebble-challtestsrv",
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-dns01",
                f"127.0.0.1:{dns}",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                f"127.0.0.1:{mgmt}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(chall)
        await_port(mgmt, chall, "pebble-challtestsrv")
        conf = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{directory}",
                "managementListenAddress": f"127.0.0.1:{pmgmt}",
                "certificate": str(cert),
                "privateKey": str(key),
                "httpPort": http_port,
                "tlsPort": tls,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        (d / "pebble.json").write_text(json.dumps(conf))
        log = (d / "pebble.log").open("wb")
        peb = subprocess.Popen(
            ["pebble", "-config", str(d / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"},
        )
        procs.append(peb)
        await_port(directory, peb, "pebble")
        yield {
            "directory": f"https://127.0.0.1:{directory}/dir",
            "ca_file": str(ca),
            "management": f"https://127.0.0.1:{pmgmt}",
            "log": str(d / "pebble.log"),
        }
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
