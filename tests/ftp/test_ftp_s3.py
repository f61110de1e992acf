"""FTP over an S3 cloud store: moto's S3 server as a real endpoint, PostgreSQL as the database.

The store is authoritative (spec H #22): an FTP upload is an object in the bucket at once, an object put
there by other means is listed and served at once, and a change to the `cloud_store` row applies live.
"""

from __future__ import annotations

import ftplib
import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from files_support import (
    CREATE,
    DELETE,
    EXECUTE,
    PEEK,
    READ,
    S3,
    UPDATE,
    ftp_login,
    get,
    make_site,
    moto_server,
    owner_bits,
    put,
    refused,
    s3_store,
    set_config,
)
from support import World, fresh_database, me, setup_world, start_server

BUCKET = "sites"


@dataclass
class Env:
    world: World
    s3: S3
    store: str
    owner_email: str


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    url, drop = fresh_database("postgresql")
    with moto_server() as s3:
        server = start_server(url)
        try:
            world = setup_world(server, url)
            with world.c(world.owner) as c:
                owner = me(c)
            with world.c(world.admin) as c:
                store = s3_store(c, s3, BUCKET, "root")
                rights = owner_bits(PEEK | READ | CREATE | UPDATE | DELETE)
                make_site(c, store, "cloud.example.com", permission=rights, owner=owner["id"], path="web")
                n = len(server.log)
                set_config(c, ftp__listen_interface="127.0.0.1:0", ftp__enable="true")
                server.wait_listening("ftp", n)
            yield Env(world, s3, store, owner["attributes"]["email"])
        finally:
            server.stop()
            drop()


def objects(env: Env, prefix: str = "root/web/") -> dict[str, bytes]:
    client = env.s3.client()
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}


def test_upload_is_an_object_in_the_bucket_at_once(env: Env) -> None:
    f = ftp_login(env.world.server, env.owner_email)
    assert put(f, "/cloud.example.com/index.html", b"<h1>hi</h1>").startswith("226")
    assert objects(env)["root/web/index.html"] == b"<h1>hi</h1>"
    assert get(f, "/cloud.example.com/index.html") == b"<h1>hi</h1>"
    f.quit()


def test_objects_put_elsewhere_are_visible_at_once(env: Env) -> None:
    f = ftp_login(env.world.server, env.owner_email)
    assert "outside.txt" not in f.nlst("/cloud.example.com")
    env.s3.client().put_object(Bucket=BUCKET, Key="root/web/outside.txt", Body=b"put by boto3")
    assert "outside.txt" in f.nlst("/cloud.example.com")
    assert get(f, "/cloud.example.com/outside.txt") == b"put by boto3"
    assert f.size("/cloud.example.com/outside.txt") == len(b"put by boto3")
    f.quit()


def test_folders_renames_deletes_and_append(env: Env) -> None:
    f = ftp_login(env.world.server, env.owner_email)
    f.mkd("/cloud.example.com/docs")
    assert "docs" in f.nlst("/cloud.example.com")
    assert "docs" in {name for name, facts in f.mlsd("/cloud.example.com") if facts["type"] == "dir"}
    put(f, "/cloud.example.com/docs/a.txt", b"abc")
    f.storbinary("APPE /cloud.example.com/docs/a.txt", io.BytesIO(b"def"))
    assert objects(env)["root/web/docs/a.txt"] == b"abcdef"
    f.rename("/cloud.example.com/docs/a.txt", "/cloud.example.com/docs/b.txt")
    assert "root/web/docs/a.txt" not in objects(env)
    assert refused(f.rmd, "/cloud.example.com/docs").startswith("550")  # not empty
    f.delete("/cloud.example.com/docs/b.txt")
    f.rmd("/cloud.example.com/docs")
    assert not [k for k in objects(env) if k.startswith("root/web/docs")]
    assert "docs" not in f.nlst("/cloud.example.com")
    f.quit()


def test_resumed_upload_rewrites_the_object(env: Env) -> None:
    """REST + STOR on an object store: the first bytes are kept, the object is replaced on completion, and
    a resume past the end, or one over the upload bound, leaves the object as it was."""
    data = os.urandom(300_000)
    f = ftp_login(env.world.server, env.owner_email)
    f.cwd("/cloud.example.com")
    put(f, "resume.bin", data[:120_000] + b"x" * 5000)  # an interrupted upload left a wrong tail
    f.storbinary("STOR resume.bin", io.BytesIO(data[100_000:]), rest=100_000)
    assert objects(env)["root/web/resume.bin"] == data
    assert f.size("resume.bin") == len(data)
    assert not [k for k in objects(env) if ".portside-" in k]  # no sibling left over
    assert "resume.bin" in f.nlst() and not [n for n in f.nlst() if n.startswith(".portside-")]
    f.voidcmd("TYPE I")
    f.sendcmd(f"REST {len(data) + 1}")
    assert refused(f.storbinary, "STOR resume.bin", io.BytesIO(b"tail")).startswith("554")
    with env.world.c(env.world.admin) as c:
        set_config(c, storage__max_upload_bytes="310000")
    try:
        with pytest.raises((ftplib.Error, OSError)):
            f.storbinary("STOR resume.bin", io.BytesIO(b"y" * 50_000), rest=len(data))
            f.voidcmd("NOOP")  # the refusal may arrive after the data connection closed
    finally:
        with env.world.c(env.world.admin) as c:
            set_config(c, storage__max_upload_bytes="1073741824")
    f.close()
    assert objects(env)["root/web/resume.bin"] == data  # refused resumes: the object as it was
    assert not [k for k in objects(env) if ".portside-" in k]


def test_large_files_stream_both_ways(env: Env) -> None:
    data = os.urandom(12 * 1024 * 1024)  # past s3fs's multipart block size
    f = ftp_login(env.world.server, env.owner_email)
    put(f, "/cloud.example.com/big.bin", data)
    stored = env.s3.client().get_object(Bucket=BUCKET, Key="root/web/big.bin")["Body"].read()
    assert hashlib.sha256(stored).digest() == hashlib.sha256(data).digest()
    assert hashlib.sha256(get(f, "/cloud.example.com/big.bin")).digest() == hashlib.sha256(data).digest()
    f.delete("/cloud.example.com/big.bin")
    f.quit()


def test_a_changed_store_row_applies_live(env: Env) -> None:
    client = env.s3.client()
    client.put_object(Bucket=BUCKET, Key="moved/web/elsewhere.txt", Body=b"new root")
    f = ftp_login(env.world.server, env.owner_email)
    assert "elsewhere.txt" not in f.nlst("/cloud.example.com")
    with env.world.c(env.world.admin) as c:
        body = {"data": {"type": "cloud_store", "id": env.store, "attributes": {"root_path": f"s3:{BUCKET}/moved"}}}
        r = c.patch(f"/api/cloud_store/{env.store}", json=body)
        assert r.status_code == 200, r.text
    try:
        assert "elsewhere.txt" in f.nlst("/cloud.example.com")  # the write's commit already dropped the old store
    finally:
        with env.world.c(env.world.admin) as c:
            body["data"]["attributes"]["root_path"] = f"s3:{BUCKET}/root"
            assert c.patch(f"/api/cloud_store/{env.store}", json=body).status_code == 200
    f.quit()


def test_wrong_credentials_fail_cleanly(env: Env) -> None:
    with env.world.c(env.world.admin) as c:
        r = c.get(f"/api/cloud_store/{env.store}")
        cred_name = r.json()["data"]["attributes"]["credential_name"]
        creds = c.get("/api/credential").json()["data"]
        cred = next(x for x in creds if x["attributes"]["name"] == cred_name)["id"]
        body = {"data": {"type": "credential", "id": cred, "attributes": {"content": '{"access_key": 5}'}}}
        assert c.patch(f"/api/credential/{cred}", json=body).status_code == 200
    f = ftp_login(env.world.server, env.owner_email)
    try:
        # a credential of the wrong shape is a clear refusal; the session goes on
        assert refused(f.nlst, "/cloud.example.com").startswith("550")
        assert f.sendcmd("NOOP").startswith("200")
    finally:
        with env.world.c(env.world.admin) as c:
            good = '{"access_key": "testkey", "secret_key": "testsecret", "region": "us-east-1"}'
            body["data"]["attributes"]["content"] = good
            assert c.patch(f"/api/credential/{cred}", json=body).status_code == 200
    env.s3.client().put_object(Bucket=BUCKET, Key="root/web/repaired.txt", Body=b"ok")
    assert "repaired.txt" in f.nlst("/cloud.example.com")  # the repaired credential applies at once
    f.quit()


def test_site_pages_and_asset_columns_over_s3(env: Env) -> None:
    import base64

    import httpx

    from support import create, schema_upload

    env.s3.client().put_object(Bucket=BUCKET, Key="root/web/page.html", Body=b"<p>from s3</p>")
    with env.world.c(env.world.admin) as c:
        site = next(x for x in c.get("/api/site").json()["data"] if x["attributes"]["hostname"] == "cloud.example.com")
        body = {"data": {"type": "site", "id": site["id"], "attributes": {"permission": owner_bits(READ) | EXECUTE}}}
        assert c.patch(f"/api/site/{site['id']}", json=body).status_code == 200
        store_name = c.get(f"/api/cloud_store/{env.store}").json()["data"]["attributes"]["name"]
        schema = SCHEMA.replace("STORE", store_name)
        assert schema_upload(c, schema).status_code == 200
        data = base64.b64encode(b"s3 bytes").decode()
        r = create(c, "doc", scan=[{"name": "s.txt", "contents": data, "type": "text/plain"}])
        assert r.status_code == 201, r.text
        ref = r.json()["data"]["id"]
        assert c.get(f"/asset/doc/{ref}/scan").content == b"s3 bytes"
    stored = env.s3.client().get_object(Bucket=BUCKET, Key="root/scans/s.txt")["Body"].read()
    assert stored == b"s3 bytes"
    with httpx.Client(base_url=env.world.server.url, timeout=30) as h:
        r = h.get("/page.html", headers={"Host": "cloud.example.com"})
        assert r.status_code == 200 and r.text == "<p>from s3</p>" and r.headers["content-type"].startswith("text/html")
        r = h.get("/page.html", headers={"Host": "cloud.example.com", "Range": "bytes=3-6"})
        assert r.status_code == 206 and r.content == b"from"


SCHEMA = """
Tables:
  - TableName: doc
    Columns:
      - ColumnName: scan
        ColumnType: file
        DataType: text
        IsNullable: true
        IsForeignKey: true
        ForeignKeyData:
          DataSource: cloud_store
          Namespace: STORE
          KeyName: scans
"""
