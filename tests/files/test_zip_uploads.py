"""`.zip` uploads through `upload_file` are unpacked (spec core §10.2), safely: unsafe member names, symlinks,
too many members or too many bytes are refused with a 4xx and leave the store as it was; `extract: false`
keeps the archive as sent. Local store and S3 (moto's server)."""

from __future__ import annotations

import base64
import io
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from files_support import S3, localstore, moto_server, s3_store, set_config
from support import World, fresh_database, setup_world, start_server


@dataclass
class Env:
    world: World
    store: str
    root: Path
    s3: S3
    s3_store: str


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    url, drop = fresh_database("sqlite")
    server = start_server(url)
    try:
        with moto_server() as s3:
            world = setup_world(server, url)
            with world.c(world.admin) as c:
                store = localstore(c)
                remote = s3_store(c, s3, "zips")
            yield Env(world, store, server.data_dir / "storage", s3, remote)
    finally:
        server.stop()
        drop()


def make_zip(members: list[tuple[str, bytes]], *, links: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in links:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, data)
    return buf.getvalue()


def upload(c: httpx.Client, store: str, name: str, data: bytes, **attrs: Any) -> httpx.Response:
    files = [{"name": name, "file": "data:application/zip;base64," + base64.b64encode(data).decode()}]
    return c.post(
        "/action/cloud_store/upload_file", json={"attributes": {"file": files, **attrs}, "cloud_store_id": store}
    )


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_zip_is_unpacked_into_the_folder(env: Env) -> None:
    archive = make_zip([("index.html", b"<h1>hi</h1>"), ("css/site.css", b"body{}"), ("img/", b"")])
    with env.world.c(env.world.admin) as c:
        r = upload(c, env.store, "site.zip", archive, path="unz/one")
        assert r.status_code == 200, r.text
        assert "2 unpacked" in r.text
    target = env.root / "unz" / "one"
    assert (target / "index.html").read_bytes() == b"<h1>hi</h1>"
    assert (target / "css" / "site.css").read_bytes() == b"body{}"
    assert (target / "img").is_dir()
    assert not (target / "site.zip").exists()
    assert not [p for p in tree(target) if ".portside-unzip-" in p]  # the staging folder is gone


def test_extract_false_keeps_the_archive(env: Env) -> None:
    archive = make_zip([("a.txt", b"a")])
    with env.world.c(env.world.admin) as c:
        r = upload(c, env.store, "keep.zip", archive, path="unz/keep", extract=False)
        assert r.status_code == 200, r.text
        assert upload(c, env.store, "x.zip", archive, path="unz/keep", extract="maybe").status_code == 400
    assert (env.root / "unz" / "keep" / "keep.zip").read_bytes() == archive
    assert not (env.root / "unz" / "keep" / "a.txt").exists()


@pytest.mark.parametrize(
    ("members", "links"),
    [
        ([("good.txt", b"g"), ("../evil.txt", b"e")], ()),
        ([("good.txt", b"g"), ("sub/../../evil.txt", b"e")], ()),
        ([("good.txt", b"g"), ("/abs.txt", b"e")], ()),
        ([("good.txt", b"g"), ("dir\\evil.txt", b"e")], ()),
        ([("good.txt", b"g"), ("sub/%2e%2e/evil.txt", b"e")], ()),
        ([("good.txt", b"g"), ("link", b"/etc/passwd")], ("link",)),
        ([("good.txt", b"g"), ("good.txt/inner", b"e")], ()),
    ],
)
def test_unsafe_archives_are_refused_whole(env: Env, members: list[tuple[str, bytes]], links: tuple[str, ...]) -> None:
    before = tree(env.root.parent)
    with env.world.c(env.world.admin) as c:
        r = upload(c, env.store, "bad.zip", make_zip(members, links=links), path="unz/bad")
    assert r.status_code == 400, r.text
    assert tree(env.root.parent) == before  # not even the good member, no staging folder
    assert not (env.root.parent / "evil.txt").exists()


def test_not_a_zip_is_a_clear_error(env: Env) -> None:
    with env.world.c(env.world.admin) as c:
        r = upload(c, env.store, "broken.zip", b"PK\x03\x04 this is not an archive", path="unz/broken")
        assert r.status_code == 400 and "archive" in r.text
        files = [{"name": "b64.zip", "contents": "not base64!"}]
        r = c.post(
            "/action/cloud_store/upload_file",
            json={"attributes": {"file": files, "path": "unz/broken"}, "cloud_store_id": env.store},
        )
        assert r.status_code == 400, r.text
    assert not (env.root / "unz" / "broken").exists() or tree(env.root / "unz" / "broken") == []


def test_zip_bombs_stop_with_413_and_write_nothing(env: Env) -> None:
    with env.world.c(env.world.admin) as c:
        set_config(c, storage__zip__max_total_bytes="100000", storage__zip__max_members="5")
        try:
            bomb = make_zip([("ok.txt", b"x"), ("zeros.bin", b"\x00" * 1_000_000)])
            assert len(bomb) < 5000  # a thousand to one
            r = upload(c, env.store, "bomb.zip", bomb, path="unz/bomb")
            assert r.status_code == 413, r.text
            many = make_zip([(f"f{i}.txt", b"x") for i in range(6)])
            r = upload(c, env.store, "many.zip", many, path="unz/bomb")
            assert r.status_code == 413, r.text
            assert upload(c, env.store, "few.zip", make_zip([("f.txt", b"x")]), path="unz/few").status_code == 200
        finally:
            set_config(c, storage__zip__max_total_bytes="1073741824", storage__zip__max_members="10000")
    assert not (env.root / "unz" / "bomb").exists() or tree(env.root / "unz" / "bomb") == []
    assert (env.root / "unz" / "few" / "f.txt").read_bytes() == b"x"


def test_a_member_over_the_upload_limit_leaves_nothing(env: Env) -> None:
    with env.world.c(env.world.admin) as c:
        set_config(c, storage__max_upload_bytes="1000")
        try:
            r = upload(c, env.store, "big.zip", make_zip([("a.txt", b"a"), ("b.bin", b"b" * 5000)]), path="unz/big")
            assert r.status_code == 413, r.text
        finally:
            set_config(c, storage__max_upload_bytes="1073741824")
    assert not (env.root / "unz" / "big").exists() or tree(env.root / "unz" / "big") == []


def test_zip_unpacks_into_s3(env: Env) -> None:
    archive = make_zip([("docs/readme.md", b"# read me"), ("top.txt", b"top")])
    with env.world.c(env.world.admin) as c:
        r = upload(c, env.s3_store, "bundle.zip", archive, path="site")
        assert r.status_code == 200, r.text
        bad = make_zip([("fine.txt", b"f"), ("../../escape.txt", b"e")])
        assert upload(c, env.s3_store, "bad.zip", bad, path="site").status_code == 400
    client = env.s3.client()
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket="zips").get("Contents", []))
    assert keys == ["portside/site/docs/readme.md", "portside/site/top.txt"], keys
    body = client.get_object(Bucket="zips", Key="portside/site/docs/readme.md")["Body"].read()
    assert body == b"# read me"
