"""Static sites over HTTP by Host header (spec core §10.3): index pages, content types, ETag/304, ranges,
client-side routes, Execute on the site row deciding who may visit, and FTP uploads served at once."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from files_support import CREATE, EXECUTE, PEEK, READ, UPDATE, ftp_login, localstore, make_site, owner_bits, set_config
from support import PASSWORD, World, fresh_database, me, setup_world, start_server


@dataclass
class Env:
    world: World
    root: Path
    owner_email: str


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    url, drop = fresh_database("sqlite")
    server = start_server(url)
    try:
        world = setup_world(server, url)
        with world.c(world.owner) as c:
            owner = me(c)
        with world.c(world.admin) as c:
            store = localstore(c)
            make_site(c, store, "www.example.com", permission=EXECUTE, path="www")  # every visitor
            rights = owner_bits(PEEK | READ | CREATE | UPDATE | EXECUTE)
            make_site(c, store, "private.example.com", permission=rights, owner=owner["id"], path="private")
            make_site(c, store, "off.example.com", permission=EXECUTE, path="www", enable=False)
            n = len(server.log)
            set_config(c, ftp__listen_interface="127.0.0.1:0", ftp__enable="true")
            server.wait_listening("ftp", n)
        root = server.data_dir / "storage"
        (root / "www" / "docs").mkdir(parents=True)
        (root / "www" / "index.html").write_text("<h1>home</h1>")
        (root / "www" / "docs" / "index.html").write_text("<h1>docs</h1>")
        (root / "www" / "style.css").write_text("body{}")
        (root / "www" / "data.bin").write_bytes(bytes(range(256)) * 4)
        (root / "private").mkdir()
        (root / "private" / "index.html").write_text("members only")
        yield Env(world, root, owner["attributes"]["email"])
    finally:
        server.stop()
        drop()


def visit(env: Env, host: str, path: str, **headers: str) -> httpx.Response:
    with httpx.Client(base_url=env.world.server.url, timeout=30) as c:
        return c.get(path, headers={"Host": host, **headers})


def test_index_pages_and_content_types(env: Env) -> None:
    r = visit(env, "www.example.com", "/")
    assert r.status_code == 200 and r.text == "<h1>home</h1>"
    assert r.headers["content-type"].startswith("text/html")
    r = visit(env, "WWW.example.com:8080", "/docs/")
    assert r.status_code == 200 and r.text == "<h1>docs</h1>"
    assert visit(env, "www.example.com", "/docs").text == "<h1>docs</h1>"
    r = visit(env, "www.example.com", "/style.css")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css") and r.text == "body{}"


def test_client_routes_missing_files_and_unsafe_paths(env: Env) -> None:
    assert visit(env, "www.example.com", "/app/route").text == "<h1>home</h1>"
    assert visit(env, "www.example.com", "/missing.png").status_code == 404
    with httpx.Client(base_url=env.world.server.url, timeout=30) as c:
        for raw in ("/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd", "/docs/%00x.html"):
            r = c.send(
                c.build_request("GET", httpx.URL(env.world.server.url + raw), headers={"Host": "www.example.com"})
            )
            assert r.status_code == 404 and "root:" not in r.text, raw


def test_etag_and_ranges(env: Env) -> None:
    r = visit(env, "www.example.com", "/data.bin")
    body = bytes(range(256)) * 4
    assert r.status_code == 200 and r.content == body and r.headers["accept-ranges"] == "bytes"
    etag = r.headers["etag"]
    assert visit(env, "www.example.com", "/data.bin", **{"If-None-Match": etag}).status_code == 304
    r = visit(env, "www.example.com", "/data.bin", Range="bytes=10-19")
    assert r.status_code == 206 and r.content == body[10:20] and r.headers["content-range"] == "bytes 10-19/1024"
    r = visit(env, "www.example.com", "/data.bin", Range="bytes=-4")
    assert r.status_code == 206 and r.content == body[-4:]
    r = visit(env, "www.example.com", "/data.bin", Range="bytes=5000-")
    assert r.status_code == 416 and r.headers["content-range"] == "bytes */1024"


def test_execute_decides_who_may_visit(env: Env) -> None:
    r = visit(env, "private.example.com", "/")
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Basic realm="private.example.com"'
    basic = base64.b64encode(f"{env.owner_email}:{PASSWORD}".encode()).decode()
    assert visit(env, "private.example.com", "/", Authorization=f"Basic {basic}").text == "members only"
    assert visit(env, "private.example.com", "/", Authorization=f"Bearer {env.world.owner}").text == "members only"
    assert visit(env, "private.example.com", "/", Authorization=f"Bearer {env.world.stranger}").status_code == 401
    wrong = base64.b64encode(f"{env.owner_email}:nope".encode()).decode()
    assert visit(env, "private.example.com", "/", Authorization=f"Basic {wrong}").status_code == 401
    assert visit(env, "private.example.com", "/", Authorization="Basic !!!").status_code == 401


def test_api_paths_and_disabled_sites_are_not_sites(env: Env) -> None:
    r = visit(env, "www.example.com", "/api/site", Authorization=f"Bearer {env.world.admin}")
    assert r.status_code == 200 and "data" in r.json()
    r = visit(env, "off.example.com", "/")
    assert r.status_code == 404 and "home" not in r.text
    with httpx.Client(base_url=env.world.server.url, timeout=30) as c:
        assert c.post("/", headers={"Host": "www.example.com"}).status_code == 405


def test_ftp_uploads_are_served_at_once(env: Env) -> None:
    f = ftp_login(env.world.server, env.owner_email)
    f.storbinary("STOR /private.example.com/news.html", io.BytesIO(b"fresh"))
    f.quit()
    r = visit(env, "private.example.com", "/news.html", Authorization=f"Bearer {env.world.owner}")
    assert r.status_code == 200 and r.text == "fresh"
    with env.world.c(env.world.admin) as c:  # and the site's file list has it
        site = next(
            x for x in c.get("/api/site").json()["data"] if x["attributes"]["hostname"] == "private.example.com"
        )
        r = c.post("/action/site/list_files", json={"attributes": {"path": ""}, "site_id": site["id"]})
        listing = next(x for x in r.json() if x["ResponseType"] == "site.file.list")["Attributes"]["files"]
        assert "news.html" in [f["name"] for f in listing]
