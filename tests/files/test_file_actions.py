"""Actions on cloud stores and sites (spec core §8.8), permission-checked, against a real server."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from files_support import EXECUTE, PEEK, READ, localstore, make_site
from support import World, fresh_database, setup_world, start_server


@dataclass
class Env:
    world: World
    store: str
    root: Path


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    url, drop = fresh_database("sqlite")
    server = start_server(url)
    try:
        world = setup_world(server, url)
        with world.c(world.admin) as c:
            store = localstore(c)
        yield Env(world, store, server.data_dir / "storage")
    finally:
        server.stop()
        drop()


def act(c: httpx.Client, on: str, action: str, ref: str, **attrs: Any) -> httpx.Response:
    return c.post(f"/action/{on}/{action}", json={"attributes": attrs, f"{on}_id": ref})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_store_actions_round_trip(env: Env) -> None:
    with env.world.c(env.world.admin) as c:
        files = [
            {"name": "a.txt", "file": "data:text/plain;base64," + b64(b"alpha")},
            {"name": "b.bin", "contents": b64(b"\x00\x01")},
        ]
        r = act(c, "cloud_store", "upload_file", env.store, file=files, path="up/load")
        assert r.status_code == 200, r.text
        assert (env.root / "up" / "load" / "a.txt").read_bytes() == b"alpha"
        assert (env.root / "up" / "load" / "b.bin").read_bytes() == b"\x00\x01"
        assert act(c, "cloud_store", "create_folder", env.store, path="up", name="new").status_code == 200
        assert (env.root / "up" / "new").is_dir()
        r = act(c, "cloud_store", "move_path", env.store, source="up/load/a.txt", destination="up/new/a.txt")
        assert r.status_code == 200, r.text
        assert (env.root / "up" / "new" / "a.txt").read_bytes() == b"alpha"
        r = act(c, "cloud_store", "create_site", env.store, hostname="made.example.com", path="up", site_type="static")
        assert r.status_code == 200, r.text
        site = next(x for x in c.get("/api/site").json()["data"] if x["attributes"]["hostname"] == "made.example.com")
        r = act(c, "site", "list_files", site["id"], path="new")
        assert r.status_code == 200, r.text
        listing = next(x for x in r.json() if x["ResponseType"] == "site.file.list")["Attributes"]["files"]
        assert [f["name"] for f in listing] == ["a.txt"] and listing[0]["size"] == 5
        r = act(c, "site", "get_file", site["id"], path="new/a.txt")
        download = next(x for x in r.json() if x["ResponseType"] == "client.file.download")["Attributes"]
        assert base64.b64decode(download["content"]) == b"alpha" and download["name"] == "a.txt"
        assert act(c, "site", "delete_file", site["id"], path="new/a.txt").status_code == 200
        assert not (env.root / "up" / "new" / "a.txt").exists()
        assert act(c, "cloud_store", "delete_path", env.store, path="up").status_code == 200
        assert not (env.root / "up").exists()


def test_unsafe_paths_are_refused_and_change_nothing(env: Env, tmp_path: Path) -> None:
    with env.world.c(env.world.admin) as c:
        for bad in ("../outside", "/etc", "a/../../b", "a\\b", "a/%2e%2e/b", "a\x00b"):
            r = act(c, "cloud_store", "create_folder", env.store, path="", name=bad)
            assert r.status_code == 400, (bad, r.text)
            r = act(c, "cloud_store", "delete_path", env.store, path=bad)
            assert r.status_code == 400, (bad, r.text)
        files = [{"name": "../x.txt", "contents": b64(b"x")}]
        assert act(c, "cloud_store", "upload_file", env.store, file=files, path="").status_code == 400
    assert not (env.root.parent / "outside").exists() and not (env.root.parent / "x.txt").exists()


def test_rights_are_checked(env: Env) -> None:
    (env.root / "ro").mkdir(exist_ok=True)
    (env.root / "ro" / "keep.txt").write_bytes(b"keep")
    with env.world.c(env.world.admin) as c:
        site = make_site(c, env.store, "ro.example.com", permission=PEEK | READ | EXECUTE, path="ro")
    with env.world.c(env.world.stranger) as c:
        # the site's grants decide: everyone may read it (list), nobody but administrators delete in it
        assert act(c, "site", "list_files", site, path="").status_code == 200
        assert act(c, "site", "delete_file", site, path="keep.txt").status_code in (403, 404)
        r = act(c, "cloud_store", "upload_file", env.store, file=[{"name": "n.txt", "contents": b64(b"n")}])
        assert r.status_code in (403, 404)
        assert act(c, "cloud_store", "delete_path", env.store, path="ro").status_code in (403, 404)
    assert (env.root / "ro" / "keep.txt").read_bytes() == b"keep"
    assert not (env.root / "n.txt").exists()


GALLERY = """
Tables:
  - TableName: gallery
    Columns:
      - ColumnName: picture
        ColumnType: image
        DataType: text
        IsNullable: true
        IsForeignKey: true
        ForeignKeyData:
          DataSource: cloud_store
          Namespace: localstore
          KeyName: gallery
"""


def test_import_files_from_store(env: Env) -> None:
    from support import schema_upload

    folder = env.root / "gallery"
    (folder / "2026").mkdir(parents=True)
    (folder / "a.png").write_bytes(b"a" * 10)
    (folder / "2026" / "b.jpg").write_bytes(b"b" * 20)
    with env.world.c(env.world.admin) as c:
        assert schema_upload(c, GALLERY).status_code == 200
        r = c.post("/action/world/import_files_from_store", json={"attributes": {"table_name": "gallery"}})
        assert r.status_code == 200, r.text
        rows = c.get("/api/gallery").json()["data"]
        got = sorted((x["attributes"]["picture"][0]["src"], x["attributes"]["picture"][0]["size"]) for x in rows)
        assert got == [("2026/b.jpg", 20), ("a.png", 10)]
        md5s = {x["attributes"]["picture"][0]["name"]: x["attributes"]["picture"][0]["md5"] for x in rows}
        assert md5s == {"a.png": hashlib.md5(b"a" * 10).hexdigest(), "b.jpg": hashlib.md5(b"b" * 20).hexdigest()}
        ref = next(x["id"] for x in rows if x["attributes"]["picture"][0]["name"] == "b.jpg")
        assert c.get(f"/asset/gallery/{ref}/picture").content == b"b" * 20
        # a second import adds only what is new
        (folder / "c.gif").write_bytes(b"c")
        r = c.post("/action/world/import_files_from_store", json={"attributes": {"table_name": "gallery"}})
        assert r.status_code == 200, r.text
        assert len(c.get("/api/gallery").json()["data"]) == 3
        r = c.post("/action/world/import_files_from_store", json={"attributes": {"table_name": "user_account"}})
        assert r.status_code == 400
    with env.world.c(env.world.stranger) as c:
        r = c.post("/action/world/import_files_from_store", json={"attributes": {"table_name": "gallery"}})
        assert r.status_code in (403, 404)
