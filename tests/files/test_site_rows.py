"""Sites for users who are not administrators (ordinary rights through auth/access), the path form of a site
(`http://main-host/<site hostname>/<rest>`, spec core §10.3), and the sync actions, which copy nothing and
report what the store holds."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from files_support import EXECUTE, PEEK, READ, REFER, UPDATE, localstore, make_site, owner_bits
from support import World, create, me, running_world


@dataclass
class Env:
    world: World
    root: Path  # the data directory
    localstore: str
    userstore: str  # a local store the `owner` user owns with Update (not Create/Delete through the API)
    owner_ref: str


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with running_world("sqlite") as world:
        server = world.server
        with world.c(world.owner) as c:
            owner_ref = me(c)["id"]
        with world.c(world.admin) as c:
            store = localstore(c)
            r = create(c, "cloud_store", name="userstore", store_type="local", root_path="userstore")
            assert r.status_code == 201, r.text
            userstore = r.json()["data"]["id"]
            rights = owner_bits(PEEK | READ | UPDATE | EXECUTE | REFER)
            body = {"permission": rights, "user_account_id": owner_ref}
            r = c.patch(
                f"/api/cloud_store/{userstore}",
                json={"data": {"type": "cloud_store", "id": userstore, "attributes": body}},
            )
            assert r.status_code == 200, r.text
            make_site(c, store, "www.example.com", permission=EXECUTE | PEEK | READ, path="www")
            make_site(
                c, store, "private.example.com", permission=owner_bits(EXECUTE | READ), owner=owner_ref, path="private"
            )
        (server.data_dir / "storage" / "www" / "docs").mkdir(parents=True)
        (server.data_dir / "storage" / "www" / "index.html").write_text("<h1>home</h1>")
        (server.data_dir / "storage" / "www" / "docs" / "a.txt").write_text("aaaa")
        (server.data_dir / "storage" / "private").mkdir()
        (server.data_dir / "storage" / "private" / "index.html").write_text("members only")
        yield Env(world, server.data_dir, store, userstore, owner_ref)


def act(c: httpx.Client, on: str, action: str, ref: str | None, **attrs: Any) -> httpx.Response:
    body: dict[str, Any] = {"attributes": attrs}
    if ref is not None:
        body[f"{on}_id"] = ref
    return c.post(f"/action/{on}/{action}", json=body)


def site_of(c: httpx.Client, hostname: str) -> str:
    rows = c.get("/api/site", params={"page[size]": "100"}).json()["data"]
    return str(next(x["id"] for x in rows if x["attributes"]["hostname"] == hostname))


def patch(c: httpx.Client, ref: str, **attrs: Any) -> httpx.Response:
    return c.patch(f"/api/site/{ref}", json={"data": {"type": "site", "id": ref, "attributes": attrs}})


def test_path_form_serves_the_site(env: Env) -> None:
    with httpx.Client(base_url=env.world.server.url, timeout=30) as c:
        r = c.get("/www.example.com/")
        assert r.status_code == 200 and r.text == "<h1>home</h1>"
        assert c.get("/www.example.com/docs/a.txt").text == "aaaa"
        assert c.get("/www.example.com/docs/a.txt", headers={"Range": "bytes=1-2"}).content == b"aa"
        # Execute decides, with 403 (no Basic challenge) in the path form
        r = c.get("/private.example.com/")
        assert r.status_code == 403 and "www-authenticate" not in r.headers
        r = c.get("/private.example.com/", headers={"Authorization": f"Bearer {env.world.owner}"})
        assert r.status_code == 200 and r.text == "members only"
        r = c.get("/private.example.com/", headers={"Authorization": f"Bearer {env.world.stranger}"})
        assert r.status_code == 403
        # unknown names, API paths, a bare first segment and escapes are not sites
        assert c.get("/nosuch.example.com/").status_code == 404
        assert "home" not in c.get("/www.example.com").text
        assert c.get("/api/site").status_code in (200, 401, 403)
        raw = env.world.server.url + "/www.example.com/%2e%2e/%2e%2e/private/index.html"
        r = c.send(c.build_request("GET", httpx.URL(raw)))
        assert r.status_code == 404 and "members" not in r.text


def test_user_creates_and_manages_own_site(env: Env) -> None:
    w = env.world
    with w.c(w.owner) as c:
        r = act(c, "cloud_store", "create_site", env.userstore, hostname="mine.example.com", path="mine")
        assert r.status_code == 200, r.text
        ref = site_of(c, "mine.example.com")
        row = c.get(f"/api/site/{ref}").json()["data"]
        assert row["attributes"]["user_account_id"] == env.owner_ref
        assert patch(c, ref, name="My site").status_code == 200
        assert patch(c, ref, path="mine/public").status_code == 200  # moving inside a store they may change
        r = act(
            c,
            "cloud_store",
            "upload_file",
            env.userstore,
            file=[{"name": "index.html", "contents": "aGk="}],
            path="mine/public",
        )
        assert r.status_code == 200, r.text
        listing = act(c, "site", "list_files", ref, path="")
        assert listing.status_code == 200 and "index.html" in listing.text
    assert (env.root / "userstore" / "mine" / "public" / "index.html").read_bytes() == b"hi"
    with httpx.Client(base_url=w.server.url, timeout=30) as c:  # anyone may visit a new site, as before
        assert c.get("/", headers={"Host": "mine.example.com"}).text == "hi"
    with w.c(w.stranger) as c:  # another user may neither change nor delete it
        assert patch(c, ref, name="taken").status_code in (403, 404)
        assert c.delete(f"/api/site/{ref}").status_code in (403, 404)
        assert act(c, "site", "delete_file", ref, path="index.html").status_code in (403, 404)
    assert (env.root / "userstore" / "mine" / "public" / "index.html").exists()
    with w.c(w.owner) as c:
        assert c.delete(f"/api/site/{ref}").status_code in (200, 204)


def test_users_cannot_publish_what_is_not_theirs(env: Env) -> None:
    w = env.world
    with w.c(w.owner) as c:
        # a store they may not change: neither through create_site nor by a row pointing at it
        r = act(c, "cloud_store", "create_site", env.localstore, hostname="grab.example.com", path="")
        assert r.status_code in (403, 404), r.text
        r = create(c, "site", name="g", hostname="grab2.example.com", path="", cloud_store_id=env.localstore)
        assert r.status_code in (403, 404), r.text
        assert (
            act(c, "cloud_store", "create_site", env.userstore, hostname="ok.example.com", path="ok").status_code == 200
        )
        ref = site_of(c, "ok.example.com")
        assert patch(c, ref, cloud_store_id=env.localstore).status_code in (403, 404)
        # hostnames of other sites or of the server itself are not theirs to take
        assert patch(c, ref, hostname="www.example.com").status_code == 409
        assert patch(c, ref, hostname="ok.example.com,www.example.com").status_code == 409
        assert patch(c, ref, hostname="localhost").status_code == 403
        for bad in ("nodot", "bad_name.example.com", "a..b", "-x.example.com", "x.example.com/evil"):
            assert patch(c, ref, hostname=bad).status_code == 400, bad
        # cloud stores (root folders, credentials) stay administrators'
        r = create(c, "cloud_store", name="mystore", store_type="local", root_path="/")
        assert r.status_code == 403, r.text
        r = c.patch(
            f"/api/cloud_store/{env.userstore}",
            json={"data": {"type": "cloud_store", "id": env.userstore, "attributes": {"root_path": "/"}}},
        )
        assert r.status_code == 403, r.text
    with w.c(w.admin) as c:
        # a store everyone may refer to but not change, and a site on localstore given to the user whole
        r = create(c, "cloud_store", name="shared", store_type="local", root_path="shared")
        shared = r.json()["data"]["id"]
        everyone = PEEK | READ | EXECUTE | REFER
        r = c.patch(
            f"/api/cloud_store/{shared}",
            json={"data": {"type": "cloud_store", "id": shared, "attributes": {"permission": everyone}}},
        )
        assert r.status_code == 200, r.text
        given = make_site(c, env.localstore, "given.example.com", permission=owner_bits(127), owner=env.owner_ref)
    with w.c(w.owner) as c:
        r = create(c, "site", name="s", hostname="shared.example.com", path="", cloud_store_id=shared)
        assert r.status_code == 403, r.text  # Refer is not enough: a site publishes the folder
        assert patch(c, given, name="renamed").status_code == 200  # their own row
        assert patch(c, given, path="").status_code == 403  # but not the whole store behind it
        assert patch(c, given, path="private").status_code == 403
        assert patch(c, given, cloud_store_id=env.userstore, path="given").status_code == 200  # their store: fine
    with w.c(w.stranger) as c:  # no rights on the user's store at all
        r = act(c, "cloud_store", "create_site", env.userstore, hostname="s.example.com", path="")
        assert r.status_code in (403, 404), r.text
    with w.c(w.admin) as c:
        hosts = [x["attributes"]["hostname"] for x in c.get("/api/site", params={"page[size]": "100"}).json()["data"]]
        assert "grab.example.com" not in hosts and "grab2.example.com" not in hosts and "s.example.com" not in hosts
        assert site_of(c, "ok.example.com")  # unchanged by the refused writes
        row = c.get(f"/api/site/{ref}").json()["data"]["attributes"]
        assert row["hostname"] == "ok.example.com" and row["cloud_store_id"] == env.userstore


def test_sync_site_storage_reports_and_copies_nothing(env: Env) -> None:
    with env.world.c(env.world.admin) as c:
        ref = site_of(c, "www.example.com")
        r = act(c, "site", "sync_site_storage", ref)
        assert r.status_code == 200, r.text
        summary = next(x for x in r.json() if x["ResponseType"] == "site.storage.sync")["Attributes"]
        assert summary == {"path": "", "files": 2, "bytes": len("<h1>home</h1>") + 4, "copied": 0}
        r = act(c, "site", "sync_site_storage", ref, path="docs")
        assert next(x for x in r.json() if x["ResponseType"] == "site.storage.sync")["Attributes"]["files"] == 1
        assert act(c, "site", "sync_site_storage", ref, path="../x").status_code == 400
        private = site_of(c, "private.example.com")
    with env.world.c(env.world.stranger) as c:  # no Read on the private site
        assert act(c, "site", "sync_site_storage", private).status_code in (403, 404)
    assert (env.root / "storage" / "www" / "docs" / "a.txt").read_text() == "aaaa"


GALLERY = """
Tables:
  - TableName: shelf
    Columns:
      - ColumnName: cover
        ColumnType: image
        DataType: text
        IsNullable: true
        IsForeignKey: true
        ForeignKeyData:
          DataSource: cloud_store
          Namespace: localstore
          KeyName: shelf
"""


def test_sync_column_storage_reports_and_is_for_administrators(env: Env) -> None:
    from support import schema_upload

    folder = env.root / "storage" / "shelf"
    folder.mkdir(parents=True)
    (folder / "one.png").write_bytes(b"1" * 7)
    (folder / "sub").mkdir()
    (folder / "sub" / "two.png").write_bytes(b"2" * 5)
    attrs = {"table_name": "shelf", "column_name": "cover", "credential_name": ""}
    with env.world.c(env.world.admin) as c:
        assert schema_upload(c, GALLERY).status_code == 200
        r = c.post("/action/world/sync_column_storage", json={"attributes": attrs})
        assert r.status_code == 200, r.text
        summary = next(x for x in r.json() if x["ResponseType"] == "column.storage.sync")["Attributes"]
        assert summary["files"] == 2 and summary["bytes"] == 12 and summary["copied"] == 0
        bad = {**attrs, "column_name": "nosuch"}
        assert c.post("/action/world/sync_column_storage", json={"attributes": bad}).status_code == 400
    with env.world.c(env.world.owner) as c:
        r = c.post("/action/world/sync_column_storage", json={"attributes": attrs})
        assert r.status_code in (403, 404), r.text
    assert (folder / "one.png").read_bytes() == b"1" * 7 and (folder / "sub" / "two.png").read_bytes() == b"2" * 5
