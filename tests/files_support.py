"""Test support for stores, sites and FTP: a real S3 endpoint (moto's server), site rows, FTP clients."""

from __future__ import annotations

import ftplib
import io
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from support import PASSWORD, Server, create

S3_KEY, S3_SECRET, S3_REGION = "testkey", "testsecret", "us-east-1"
# every right of a block: peek read create update delete execute refer
ALL = 127


def owner_bits(mask: int) -> int:
    return mask << 7


def group_bits(mask: int) -> int:
    return mask << 14


PEEK, READ, CREATE, UPDATE, DELETE, EXECUTE, REFER = 1, 2, 4, 8, 16, 32, 64


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


@dataclass
class S3:
    endpoint: str
    proc: subprocess.Popen[bytes]

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
            region_name=S3_REGION,
        )


@contextmanager
def moto_server() -> Iterator[S3]:
    """moto's S3 server mode as a subprocess on a free port (a real HTTP S3 endpoint)."""
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield S3(f"http://127.0.0.1:{port}", proc)
    finally:
        proc.terminate()
        proc.wait(10)


def localstore(c: httpx.Client) -> str:
    r = c.get("/api/cloud_store", params={"filter": "localstore"})
    assert r.status_code == 200, r.text
    rows = [x for x in r.json()["data"] if x["attributes"]["name"] == "localstore"]
    assert rows, r.text
    return str(rows[0]["id"])


def s3_store(c: httpx.Client, s3: S3, bucket: str, prefix: str = "portside") -> str:
    """A credential (Daptin's key names) and an S3 cloud_store on `bucket` of the moto endpoint."""
    s3.client().create_bucket(Bucket=bucket)
    name = f"cred-{uuid.uuid4().hex[:6]}"
    content = f'{{"access_key": "{S3_KEY}", "secret_key": "{S3_SECRET}", "region": "{S3_REGION}"}}'
    r = create(c, "credential", name=name, content=content)
    assert r.status_code == 201, r.text
    r = create(
        c,
        "cloud_store",
        name=f"s3-{uuid.uuid4().hex[:6]}",
        store_type="s3",
        store_provider="aws",
        root_path=f"s3:{bucket}/{prefix}",
        credential_name=name,
        store_parameters=f'{{"endpoint_url": "{s3.endpoint}"}}',
    )
    assert r.status_code == 201, r.text
    return str(r.json()["data"]["id"])


def make_site(
    c: httpx.Client,
    store: str,
    hostname: str,
    *,
    permission: int,
    owner: str | None = None,
    group: tuple[str, int] | None = None,
    ftp: bool = True,
    enable: bool = True,
    path: str | None = None,
) -> str:
    r = create(
        c,
        "site",
        name=hostname,
        hostname=hostname,
        path=path if path is not None else hostname.split(".")[0],
        enable=enable,
        ftp_enabled=ftp,
        cloud_store_id=store,
    )
    assert r.status_code == 201, r.text
    ref = str(r.json()["data"]["id"])
    attrs: dict[str, Any] = {"permission": permission}
    if owner is not None:
        attrs["user_account_id"] = owner
    r = c.patch(f"/api/site/{ref}", json={"data": {"type": "site", "id": ref, "attributes": attrs}})
    assert r.status_code == 200, r.text
    if group is not None:
        gref, mask = group
        r = create(c, "site_site_id_has_usergroup_usergroup_id", site_id=ref, usergroup_id=gref, permission=mask)
        assert r.status_code == 201, r.text
    return ref


def set_config(c: httpx.Client, **values: str) -> None:
    for key, value in values.items():
        r = c.post(f"/_config/backend/{key.replace('__', '.')}", content=value)
        assert r.status_code == 200, r.text


def ftp_address(server: Server, name: str = "ftp") -> tuple[str, int]:
    url = server.listeners[name]
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    return host.strip("[]"), int(port)


def ftp_login(server: Server, email: str, password: str = PASSWORD, *, tls: bool = False) -> ftplib.FTP:
    host, port = ftp_address(server)
    f: ftplib.FTP = ftplib.FTP_TLS(timeout=20) if tls else ftplib.FTP(timeout=20)
    f.connect(host, port)
    f.login(email, password)
    if isinstance(f, ftplib.FTP_TLS):
        f.prot_p()
    return f


def put(f: ftplib.FTP, path: str, data: bytes) -> str:
    return f.storbinary(f"STOR {path}", io.BytesIO(data))


def get(f: ftplib.FTP, path: str) -> bytes:
    buf = io.BytesIO()
    f.retrbinary(f"RETR {path}", buf.write)
    return buf.getvalue()


def refused(call: Any, *args: Any) -> str:
    """The 5xx reply text of a refused FTP command (fails if the command succeeds)."""
    try:
        result = call(*args)
    except ftplib.error_perm as exc:
        return str(exc)
    raise AssertionError(f"expected a refusal, got {result!r}")


def eventually(check: Any, timeout: float = 15.0) -> Any:
    """`check()`'s first truthy result, retried until `timeout` (for changes that travel through events)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"{check} never held within {timeout} s")
        time.sleep(0.1)
