"""Reads of store-kept asset columns: `included_relations` adds the file contents as `included` items
(spec core §10.1, bounded, Yjs files only when asked for), and `/asset/...?processImage=true` applies image
filters with Pillow (bounded, 415 for non-images, ETag/304)."""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from files_support import set_config
from support import World, create, running_world

SCHEMA = """
Tables:
  - TableName: poster
    Columns:
      - ColumnName: title
        ColumnType: label
        DataType: varchar(100)
      - ColumnName: art
        ColumnType: image
        DataType: text
        IsNullable: true
        IsForeignKey: true
        ForeignKeyData:
          DataSource: cloud_store
          Namespace: localstore
          KeyName: posters
"""


def png(size: tuple[int, int] = (40, 20), color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class Env:
    world: World
    root: Path
    ref: str  # a poster owned by the administrator with art.png, notes.txt and a Yjs file


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with running_world("sqlite", SCHEMA) as world:
        server = world.server
        with world.c(world.admin) as c:
            files = [
                {"name": "art.png", "contents": b64(png()), "type": "image/png"},
                {"name": "notes.txt", "contents": b64(b"not an image"), "type": "text/plain"},
                {"name": "doc.yjs", "contents": "", "type": "x-crdt/yjs"},
            ]
            r = create(c, "poster", title="one", art=files)
            assert r.status_code == 201, r.text
            ref = r.json()["data"]["id"]
            r = c.patch(
                f"/api/poster/{ref}", json={"data": {"type": "poster", "id": ref, "attributes": {"permission": 0}}}
            )
            assert r.status_code == 200, r.text
        yield Env(world, server.data_dir / "storage", ref)


def included(r: httpx.Response) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    return [x for x in r.json().get("included", []) if x["type"] == "image"]


def test_included_relations_adds_file_contents(env: Env) -> None:
    with env.world.c(env.world.admin) as c:
        assert included(c.get(f"/api/poster/{env.ref}")) == []
        items = included(c.get(f"/api/poster/{env.ref}", params={"included_relations": "art"}))
        assert [i["attributes"]["name"] for i in items] == ["art.png", "notes.txt"]  # the Yjs file is hidden
        first = items[0]
        assert first["id"] == f"{env.ref}/art/0" and first["attributes"]["reference_id"] == env.ref
        assert base64.b64decode(first["attributes"]["contents"]) == png()
        assert first["attributes"]["md5"] == hashlib.md5(png()).hexdigest()
        assert base64.b64decode(items[1]["attributes"]["contents"]) == b"not an image"
        # `*` too, on lists as on single rows; Yjs files only when named
        listed = included(c.get("/api/poster", params={"included_relations": "*"}))
        assert [i["attributes"]["name"] for i in listed] == ["art.png", "notes.txt"]
        both = included(c.get(f"/api/poster/{env.ref}", params={"included_relations": "art,x-crdt/yjs"}))
        assert [i["attributes"]["name"] for i in both] == ["art.png", "notes.txt", "doc.yjs"]


def test_included_contents_are_bounded(env: Env) -> None:
    with env.world.c(env.world.admin) as c:
        set_config(c, storage__include__max_file_bytes="20")
        try:
            items = included(c.get(f"/api/poster/{env.ref}", params={"included_relations": "art"}))
        finally:
            set_config(c, storage__include__max_file_bytes="1048576")
        big, small = items
        assert big["attributes"]["contents"] is None and "limit" in big["attributes"]["omitted"]
        assert base64.b64decode(small["attributes"]["contents"]) == b"not an image"
        set_config(c, storage__include__max_bytes="20")  # the whole response's budget
        try:
            items = included(c.get(f"/api/poster/{env.ref}", params={"included_relations": "art"}))
        finally:
            set_config(c, storage__include__max_bytes="8388608")
        assert items[0]["attributes"]["contents"] is None and items[1]["attributes"]["contents"] is not None
        # a file gone from the store is listed as missing, not a 500
        (env.root / "posters" / "notes.txt").rename(env.root / "posters" / "notes.bak")
        try:
            items = included(c.get(f"/api/poster/{env.ref}", params={"included_relations": "art"}))
        finally:
            (env.root / "posters" / "notes.bak").rename(env.root / "posters" / "notes.txt")
        assert items[1]["attributes"]["omitted"] == "missing"


def test_included_contents_follow_read_rights(env: Env) -> None:
    with env.world.c(env.world.stranger) as c:
        r = c.get(f"/api/poster/{env.ref}", params={"included_relations": "art"})
        assert r.status_code in (403, 404) and b64(png())[:20] not in r.text
        r = c.get("/api/poster", params={"included_relations": "*"})
        assert b64(png())[:20] not in r.text


def asset(c: httpx.Client, ref: str, **params: str) -> httpx.Response:
    return c.get(f"/asset/poster/{ref}/art", params={"processImage": "true", **params})


def test_process_image_filters(env: Env) -> None:
    with env.world.c(env.world.admin) as c:
        r = asset(c, env.ref, width="10")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(r.content)).size == (10, 5)
        r = asset(c, env.ref, width="10", height="10", grayscale="true", format="jpeg", quality="70")
        img = Image.open(io.BytesIO(r.content))
        assert r.headers["content-type"] == "image/jpeg" and img.format == "JPEG" and img.mode == "L"
        assert img.size == (10, 5)
        img = Image.open(io.BytesIO(asset(c, env.ref, crop="0,0,8,6", rotate="90").content))
        assert img.size == (6, 8)
        # the ETag of a result: a repeated request is a 304
        r = asset(c, env.ref, width="12")
        again = c.get(
            f"/asset/poster/{env.ref}/art",
            params={"processImage": "true", "width": "12"},
            headers={"If-None-Match": r.headers["etag"]},
        )
        assert again.status_code == 304 and again.content == b""
        assert asset(c, env.ref, width="13").headers["etag"] != r.headers["etag"]
        # without processImage the file is as stored
        assert c.get(f"/asset/poster/{env.ref}/art").content == png()


def test_process_image_refuses_bad_input(env: Env) -> None:
    with env.world.c(env.world.admin) as c:
        r = asset(c, env.ref, file="notes.txt", width="10")
        assert r.status_code == 415, r.text
        for bad in ({"width": "0"}, {"width": "99999"}, {"width": "ten"}, {"crop": "1,2"}, {"format": "bmpx"}):
            assert asset(c, env.ref, **bad).status_code == 400, bad
        assert asset(c, env.ref, crop="30,10,20,20").status_code == 400  # outside the image
        # a decompression bomb: small file, huge canvas
        buf = io.BytesIO()
        Image.new("1", (12000, 12000)).save(buf, "PNG")
        assert len(buf.getvalue()) < 100_000
        r = create(c, "poster", title="bomb", art=[{"name": "bomb.png", "contents": b64(buf.getvalue())}])
        assert r.status_code == 201, r.text
        r = asset(c, r.json()["data"]["id"], width="10")
        assert r.status_code == 413, r.text
    with env.world.c(env.world.stranger) as c:
        assert asset(c, env.ref, width="10").status_code in (403, 404)
