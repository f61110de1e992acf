"""Feeds (RSS 2.0, Atom 1.0, JSON Feed 1.1) and the WebSub hub, over a real server on SQLite.

Feed documents are checked with feedparser (bozo must be 0) and the JSON Feed 1.1 schema in
tests/data (written from the spec); WebSub with a real HTTP subscriber listening on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import feedparser
import httpx
import jsonschema
import pytest

from support import (
    Server,
    World,
    create,
    fresh_database,
    me,
    setup_world,
    signin,
    start_server,
)

OWNER_ALL, GROUP_READ, PUBLIC = 16256, 32768, 3  # PUBLIC: guest peek + read
SCHEMA = json.loads((Path(__file__).parent.parent / "data" / "jsonfeed-1.1.schema.json").read_text())
CONSUMERS = Path(__file__).parent.parent / "js" / "feeds"
POST_SCHEMA = f"""
Tables:
  - TableName: post
    Permission: 561441
    DefaultPermission: {OWNER_ALL | GROUP_READ}
    AccessGroups:
      - Name: users
        Permission: 2080768
    Columns:
      - Name: title
        DataType: varchar(500)
        ColumnType: label
      - Name: content
        DataType: text
        ColumnType: content
        IsNullable: true
      - Name: writer
        DataType: varchar(200)
        ColumnType: label
        IsNullable: true
      - Name: published_at
        DataType: timestamp
        ColumnType: datetime
        IsNullable: true
"""


def feeds_world(server: Server, db_url: str) -> World:
    return setup_world(server, db_url, POST_SCHEMA, ("websub.allowed_callbacks", "127.0.0.0/8"))


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    url, drop = fresh_database("sqlite")
    srv = start_server(url)
    try:
        yield feeds_world(srv, url)
    finally:
        srv.stop()
        drop()


def new_feed(w: World, **attrs: Any) -> str:
    name = attrs.pop("feed_name", f"f{uuid.uuid4().hex[:8]}")
    values = {"feed_name": name, "title": "Posts", "enable": True, "table_name": "post", **attrs}
    with w.c(w.admin) as c:
        r = create(c, "feed", **values)
        assert r.status_code == 201, r.text
    return name


def post(w: World, token: str, title: str, public: bool = True, **attrs: Any) -> str:
    with w.c(token) as c:
        r = create(c, "post", title=title, **attrs)
        assert r.status_code == 201, r.text
        ref: str = r.json()["data"]["id"]
        if public:
            r = c.patch(
                f"/api/post/{ref}",
                json={"data": {"type": "post", "id": ref, "attributes": {"permission": OWNER_ALL | PUBLIC}}},
            )
            assert r.status_code == 200, r.text
    return ref


def parsed(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    d = feedparser.parse(r.content)
    assert d.bozo == 0, d.get("bozo_exception")
    return d


def check_json(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/feed+json; charset=utf-8"
    doc: dict[str, Any] = r.json()
    jsonschema.validate(doc, SCHEMA)
    return doc


def titles(w: World, name: str, token: str | None = None, fmt: str = "atom") -> list[str]:
    with w.c(token) as c:
        r = c.get(f"/feed/{name}.{fmt}")
    if fmt == "json":
        return [i["title"] for i in check_json(r)["items"]]
    return [e.title for e in parsed(r).entries]


# -- documents ------------------------------------------------------------------------------------


def test_three_formats_round_trip(world: World) -> None:
    name = new_feed(
        world,
        description="All the posts",
        link="https://example.org/",
        author_name="Ed",
        author_email="ed@example.org",
        author_column="writer",
    )
    first = post(
        world,
        world.owner,
        "First post",
        content="<p>Hello <b>world</b></p>",
        writer="Ann",
        published_at="2026-01-02T03:04:05Z",
    )
    second = post(world, world.owner, "Second post", content="<p>Again</p>", published_at="2026-02-03T04:05:06Z")
    with world.c() as c:
        rss = c.get(f"/feed/{name}.rss")
        atom = c.get(f"/feed/{name}.atom")
        js = c.get(f"/feed/{name}.json")
    assert rss.headers["content-type"] == "application/rss+xml; charset=utf-8"
    assert atom.headers["content-type"] == "application/atom+xml; charset=utf-8"
    d = parsed(rss)
    assert d.version == "rss20"
    assert d.feed.title == "Posts" and d.feed.link == "https://example.org/"
    assert [e.title for e in d.entries] == ["Second post", "First post"]  # newest first
    assert [e.id for e in d.entries] == [f"urn:uuid:{second}", f"urn:uuid:{first}"]
    assert d.entries[1].published_parsed[:6] == (2026, 1, 2, 3, 4, 5)
    assert "<b>world</b>" in d.entries[1].summary
    assert d.entries[1].author == "Ann"
    assert any(link.rel == "hub" and link.href.endswith("/websub") for link in d.feed.links)
    a = parsed(atom)
    assert a.version == "atom10"
    assert a.feed.id.startswith("urn:uuid:") and a.feed.subtitle == "All the posts"
    assert [e.id for e in a.entries] == [f"urn:uuid:{second}", f"urn:uuid:{first}"]
    assert a.entries[0].link == f"{world.server.url}/api/post/{second}"
    assert a.entries[1].content[0].value == "<p>Hello <b>world</b></p>"
    assert a.entries[1].published == "2026-01-02T03:04:05Z"
    assert a.feed.author_detail.email == "ed@example.org"
    doc = check_json(js)
    assert [i["id"] for i in doc["items"]] == [f"urn:uuid:{second}", f"urn:uuid:{first}"]
    assert doc["items"][1]["date_published"] == "2026-01-02T03:04:05Z"
    assert doc["items"][1]["authors"] == [{"name": "Ann"}]
    assert doc["hubs"][0]["type"] == "WebSub" and doc["feed_url"] == f"{world.server.url}/feed/{name}.json"
    # stable ids: the same document twice
    with world.c() as c:
        assert c.get(f"/feed/{name}.atom").content == atom.content


def test_mapping_columns_and_link_template(world: World) -> None:
    name = new_feed(
        world,
        title_column="writer",
        content_column="title",
        published_column="created_at",
        author_column="writer",
        link_template="https://example.org/posts/{reference_id}?t={title}",
        filter=json.dumps([{"column": "writer", "operator": "is", "value": "mapped"}]),
        sort="+created_at",
    )
    ref1 = post(world, world.owner, "a & b", writer="mapped")
    post(world, world.owner, "other", writer="unmapped")
    ref2 = post(world, world.owner, "c", writer="mapped")
    with world.c() as c:
        d = parsed(c.get(f"/feed/{name}.atom"))
    assert [e.id for e in d.entries] == [f"urn:uuid:{ref1}", f"urn:uuid:{ref2}"]  # filter + ascending sort
    assert d.entries[0].title == "mapped" and d.entries[0].content[0].value == "a & b"
    assert d.entries[0].link == f"https://example.org/posts/{ref1}?t=a%20%26%20b"


def test_stream_feed(world: World) -> None:
    contract = {
        "StreamName": "renamed",
        "RootEntityName": "post",
        "Columns": ["title", "content"],
        "QueryParams": {"sort": "+created_at"},
        "Transformations": [{"Operation": "rename", "Attributes": {"OldName": "writer", "NewName": "headline"}}],
    }
    with world.c(world.admin) as c:
        r = create(c, "stream", stream_name="renamed", stream_contract=json.dumps(contract))
        assert r.status_code == 201, r.text
        stream = r.json()["data"]["id"]
        name = f"s{uuid.uuid4().hex[:8]}"
        r = create(c, "feed", feed_name=name, title="Stream", enable=True, stream_id=stream, title_column="headline")
        assert r.status_code == 201, r.text
    post(world, world.owner, "via stream", writer="Streamed headline")
    assert "Streamed headline" in titles(world, name, fmt="rss")


# -- permissions ----------------------------------------------------------------------------------


def test_items_follow_row_permissions(world: World) -> None:
    name = new_feed(world, filter=json.dumps([{"column": "writer", "operator": "is", "value": "perm"}]))
    post(world, world.owner, "public", writer="perm")
    post(world, world.owner, "private", public=False, writer="perm")
    shared = post(world, world.owner, "shared", public=False, writer="perm")
    with world.c(world.admin) as c:
        r = c.post(
            f"/api/post/{shared}/relationships/usergroup_id", json={"data": [{"type": "usergroup", "id": world.team}]}
        )
        assert r.status_code == 204, r.text
    assert titles(world, name) == ["public"]
    assert titles(world, name, world.stranger) == ["public"]
    assert titles(world, name, world.owner) == ["shared", "private", "public"]
    assert titles(world, name, world.member, fmt="json") == ["shared", "public"]
    assert sorted(titles(world, name, world.admin, fmt="rss")) == ["private", "public", "shared"]
    # a private feed URL for a feed reader: ?token= and the token cookie work like the header
    with world.c() as c:
        d = parsed(c.get(f"/feed/{name}.atom", params={"token": world.owner}))
        assert [e.title for e in d.entries] == ["shared", "private", "public"]
    with world.c() as c:
        c.cookies.set("token", world.member)
        r = c.get(f"/feed/{name}.atom")
        assert [e.title for e in parsed(r).entries] == ["shared", "public"]
    with world.c() as c:
        r = c.get(f"/feed/{name}.atom", params={"token": "not-a-token"})
        assert r.status_code == 401 and "Traceback" not in r.text


# -- paging, caching ------------------------------------------------------------------------------


def test_paging(world: World) -> None:
    name = new_feed(world, page_size=2, filter=json.dumps([{"column": "writer", "operator": "is", "value": "pg"}]))
    for i in range(5):
        post(world, world.owner, f"p{i}", writer="pg")
    base = f"{world.server.url}/feed/{name}"
    with world.c() as c:
        p1 = parsed(c.get(f"/feed/{name}.atom"))
        assert [e.title for e in p1.entries] == ["p4", "p3"]
        rels = {link.rel: link.href for link in p1.feed.links}
        assert rels["next"] == f"{base}.atom?page=2" and "previous" not in rels
        p2 = parsed(c.get(f"/feed/{name}.atom", params={"page": "2"}))
        rels = {link.rel: link.href for link in p2.feed.links}
        assert [e.title for e in p2.entries] == ["p2", "p1"]
        assert rels["next"] == f"{base}.atom?page=3" and rels["previous"] == rels["prev"] == f"{base}.atom"
        assert rels["self"] == f"{base}.atom?page=2"
        p3 = parsed(c.get(f"/feed/{name}.rss", params={"page": "3"}))
        assert [e.title for e in p3.entries] == ["p0"]
        assert "next" not in {link.rel for link in p3.feed.links}
        beyond = parsed(c.get(f"/feed/{name}.atom", params={"page": "9"}))
        assert (
            beyond.entries == [] and {lk.rel: lk.href for lk in beyond.feed.links}["previous"] == f"{base}.atom?page=3"
        )
        j1 = check_json(c.get(f"/feed/{name}.json"))
        assert j1["next_url"] == f"{base}.json?page=2"
        assert "next_url" not in check_json(c.get(f"/feed/{name}.json?page=3"))
        for bad in ("0", "-1", "abc", "1.5", "", "99999999999", "\u00b2", "\u0663"):
            r = c.get(f"/feed/{name}.atom", params={"page": bad})
            assert r.status_code == 400, (bad, r.text)
            assert r.json()["errors"][0]["status"] == "400"


def test_conditional_get_and_invalidation(world: World) -> None:
    name = new_feed(world, filter=json.dumps([{"column": "writer", "operator": "is", "value": "cache"}]))
    post(world, world.owner, "before", writer="cache")
    with world.c() as c:
        r = c.get(f"/feed/{name}.rss")
        assert r.status_code == 200
        etag, modified = r.headers["etag"], r.headers["last-modified"]
        assert etag.startswith('"') and not etag.startswith("W/")
        assert etag == '"' + hashlib.sha256(r.content).hexdigest()[:40] + '"'
        head = c.head(f"/feed/{name}.rss")
        assert head.status_code == 200 and head.content == b"" and head.headers["etag"] == etag
        r2 = c.get(f"/feed/{name}.rss", headers={"If-None-Match": etag})
        assert r2.status_code == 304 and r2.content == b"" and r2.headers["etag"] == etag
        assert c.get(f"/feed/{name}.rss", headers={"If-Modified-Since": modified}).status_code == 304
        assert c.get(f"/feed/{name}.rss", headers={"If-None-Match": '"other"'}).status_code == 200
        assert c.get(f"/feed/{name}.rss", headers={"If-Modified-Since": "garbage"}).status_code == 200
        # a private view of the same feed has its own validator
        r3 = c.get(f"/feed/{name}.rss", params={"token": world.owner})
        assert r3.headers["etag"] != etag or r3.content == r.content
    post(world, world.owner, "after", writer="cache")  # the write invalidates the cached render
    with world.c() as c:
        r4 = c.get(f"/feed/{name}.rss", headers={"If-None-Match": etag})
        assert r4.status_code == 200 and "after" in r4.text and r4.headers["etag"] != etag
        # a private write changes nothing a guest sees: the guest's validator still matches
        post(world, world.owner, "hidden", public=False, writer="cache")
        r5 = c.get(f"/feed/{name}.rss", headers={"If-None-Match": r4.headers["etag"]})
        assert r5.status_code == 304
        # deleting an item: new content even for a client that only sends If-Modified-Since
        ref = parsed(c.get(f"/feed/{name}.rss")).entries[0].id.removeprefix("urn:uuid:")
        lm = c.get(f"/feed/{name}.rss").headers["last-modified"]
    time.sleep(1.1)
    with world.c(world.owner) as oc:
        assert oc.delete(f"/api/post/{ref}").status_code == 200
    with world.c() as c:
        r6 = c.get(f"/feed/{name}.rss", headers={"If-Modified-Since": lm})
        assert r6.status_code == 200 and "after" not in r6.text


def test_feed_row_changes_take_effect_next_request(world: World) -> None:
    name = new_feed(world)
    with world.c(world.admin) as c:
        ref = c.get("/api/feed", params={"query": json.dumps([{"column": "feed_name", "value": name}])}).json()["data"][
            0
        ]["id"]

        def patch(**attrs: Any) -> None:
            r = c.patch(f"/api/feed/{ref}", json={"data": {"type": "feed", "id": ref, "attributes": attrs}})
            assert r.status_code == 200, r.text

        with world.c() as g:
            assert parsed(g.get(f"/feed/{name}.atom")).feed.title == "Posts"
            patch(title="Renamed")
            assert parsed(g.get(f"/feed/{name}.atom")).feed.title == "Renamed"
            patch(enable_atom=False)
            assert g.get(f"/feed/{name}.atom").status_code == 404
            assert g.get(f"/feed/{name}.rss").status_code == 200
            patch(enable=False)
            assert g.get(f"/feed/{name}.rss").status_code == 404
            patch(enable=True, table_name="no_such_table")
            assert g.get(f"/feed/{name}.rss").status_code == 404


def test_errors_are_small_documents(world: World) -> None:
    name = new_feed(world)
    with world.c() as c:
        for path in (
            "/feed/nope.rss",
            f"/feed/{name}",
            f"/feed/{name}.xml",
            f"/feed/{name}.rss.foo",
            "/feed/.rss",
            "/feed/%00.atom",
            "/feed/%0A.rss",
            f"/feed/{'x' * 300}.json",
        ):
            r = c.get(path)
            assert r.status_code == 404, (path, r.status_code, r.text)
            assert len(r.content) < 500 and r.json()["errors"][0]["status"] == "404"
        assert c.get(f"/feed/{name}.ATOM").status_code == 200


def test_hostile_content(world: World) -> None:
    name = new_feed(world, filter=json.dumps([{"column": "writer", "operator": "is", "value": "evil"}]))
    nasty = 'x]]><script>alert("1")</script>&amp;\x01\x0b\x1f\ufffe end'
    ref = post(world, world.owner, nasty, content=f"<![CDATA[{nasty}]]>", writer="evil")
    raw = post(world, world.owner, "raw bytes", writer="evil")
    # invalid UTF-8 stored straight into the database, as another program might leave it
    path = world.db_url.split("///", 1)[1]
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE post SET content = X'48E9FF28C328' WHERE reference_id = ?", (raw,))
    with world.c(world.owner) as c:  # a write through the API so caches see the change
        r = c.patch(f"/api/post/{raw}", json={"data": {"type": "post", "id": raw, "attributes": {"writer": "evil"}}})
        assert r.status_code == 200, r.text
    with world.c() as c:
        for fmt in ("rss", "atom"):
            d = parsed(c.get(f"/feed/{name}.{fmt}"))
            entry = next(e for e in d.entries if e.id == f"urn:uuid:{ref}")
            assert entry.title == 'x]]><script>alert("1")</script>&amp; end'
            assert len(d.entries) == 2
        doc = check_json(c.get(f"/feed/{name}.json"))
        item = next(i for i in doc["items"] if i["id"] == f"urn:uuid:{ref}")
        assert item["title"] == 'x]]><script>alert("1")</script>&amp; end'
        assert "\ufffd" in next(i for i in doc["items"] if i["id"] == f"urn:uuid:{raw}")["content_html"]


@pytest.fixture(scope="session")
def consumers() -> Path:
    """Three independent JS feed consumers, installed into tests/js/feeds/node_modules (git-ignored)."""
    if not (CONSUMERS / "node_modules" / "rss-parser").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=CONSUMERS, check=True, timeout=300)
    return CONSUMERS


def test_js_consumers_read_all_formats(world: World, consumers: Path, tmp_path: Path) -> None:
    name = new_feed(world, filter=json.dumps([{"column": "writer", "operator": "is", "value": "js"}]))
    for title in ("one", "two & <three>", "four"):
        post(world, world.owner, title, content="<p>body ]]> x</p>", writer="js")
    for fmt in ("rss", "atom", "json"):
        with world.c() as c:
            body = c.get(f"/feed/{name}.{fmt}").content
        doc = tmp_path / f"feed.{fmt}"
        doc.write_bytes(body)
        done = subprocess.run(
            ["node", str(consumers / "parse_feed.mjs"), str(doc), fmt], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        found = json.loads(done.stdout)
        assert len(found) == (1 if fmt == "json" else 3)
        for consumer, got in found.items():
            assert [str(t).strip() for t in got] == ["four", "two & <three>", "one"], (fmt, consumer, got)


# -- WebSub ---------------------------------------------------------------------------------------


@dataclass
class Subscriber:
    url: str
    gets: list[dict[str, list[str]]] = field(default_factory=list)
    posts: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    fail_next: int = 0
    server: ThreadingHTTPServer | None = None

    def wait_posts(
        self, path: str, count: int, timeout: float = 5.0, containing: str = ""
    ) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [(h, b) for p, h, b in self.posts if p == path and containing.encode() in b]
            if len(got) >= count:
                return got
            time.sleep(0.02)
        raise AssertionError(f"{count} deliveries to {path} expected, got {len(self.posts)}: {self.posts}")


@pytest.fixture(scope="module")
def subscriber() -> Iterator[Subscriber]:
    sub = Subscriber("")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def do_GET(self) -> None:
            q = parse_qs(urlsplit(self.path).query)
            sub.gets.append({**q, "path": [urlsplit(self.path).path]})
            answer = q.get("hub.challenge", [""])[0]
            if urlsplit(self.path).path.startswith("/refuse"):
                answer = "not-the-challenge"
            body = answer.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = 200
            if sub.fail_next > 0:
                sub.fail_next -= 1
                status = 500
            else:
                sub.posts.append((urlsplit(self.path).path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sub.server = httpd
    sub.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield sub
    httpd.shutdown()


def subscribe(w: World, callback: str, topic: str, token: str | None = None, **extra: str) -> httpx.Response:
    form = {"hub.mode": "subscribe", "hub.callback": callback, "hub.topic": topic, **extra}
    with w.c(token) as c:
        return c.post("/websub", data=form)


def subscriptions(w: World, callback: str) -> list[dict[str, Any]]:
    with w.c(w.admin) as c:
        q = json.dumps([{"column": "callback", "value": callback}])
        r = c.get("/api/websub_sub", params={"query": q})
        assert r.status_code == 200, r.text
        return [d["attributes"] for d in r.json()["data"]]


def wait_subscribed(w: World, callback: str, count: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = subscriptions(w, callback)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no subscription stored for {callback}")


def test_websub_signed_delivery(world: World, subscriber: Subscriber) -> None:
    name = new_feed(world, filter=json.dumps([{"column": "writer", "operator": "is", "value": "push"}]))
    topic = f"{world.server.url}/feed/{name}.atom"
    callback = f"{subscriber.url}/cb-{name}"
    r = subscribe(world, callback, topic, **{"hub.secret": "s3cret", "hub.lease_seconds": "3600"})
    assert r.status_code == 202, r.text
    stored = wait_subscribed(world, callback)
    assert stored[0]["state"] == "active" and stored[0]["lease_seconds"] == 3600
    assert "secret" not in stored[0]  # never returned by the API
    check = next(g for g in subscriber.gets if g["path"] == [f"/cb-{name}"])
    assert check["hub.mode"] == ["subscribe"] and check["hub.topic"] == [topic]
    assert check["hub.lease_seconds"] == ["3600"]
    # a write the subscriber cannot see delivers nothing; a visible one arrives within a second
    post(world, world.owner, "invisible", public=False, writer="push")
    post(world, world.owner, "pushed item", writer="push")
    written = time.monotonic()  # the write that made the item visible has committed
    (headers, body), *_ = subscriber.wait_posts(f"/cb-{name}", 1, timeout=3)
    assert time.monotonic() - written < 1.0
    assert headers["content-type"] == "application/atom+xml; charset=utf-8"
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["x-hub-signature"] == f"sha256={expected}"
    assert f'<{topic}>; rel="self"' in headers["link"] and 'rel="hub"' in headers["link"]
    d = feedparser.parse(body)
    assert d.bozo == 0 and [e.title for e in d.entries] == ["pushed item"]
    # a failing callback is retried with backoff until it accepts
    subscriber.fail_next = 2
    post(world, world.owner, "retried item", writer="push")
    deliveries = subscriber.wait_posts(f"/cb-{name}", 2, timeout=8)
    assert "retried item" in deliveries[-1][1].decode()
    # unsubscribe: verified, then removed
    with world.c() as c:
        form = {"hub.mode": "unsubscribe", "hub.callback": callback, "hub.topic": topic}
        assert c.post("/websub", data=form).status_code == 202
    deadline = time.monotonic() + 5
    while subscriptions(world, callback) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert subscriptions(world, callback) == []


def test_websub_private_subscription_renders_as_subscriber(world: World, subscriber: Subscriber) -> None:
    name = new_feed(world, filter=json.dumps([{"column": "writer", "operator": "is", "value": "mine"}]))
    topic = f"{world.server.url}/feed/{name}.rss"
    callback = f"{subscriber.url}/private-{name}"
    assert subscribe(world, callback, topic, token=world.owner).status_code == 202
    wait_subscribed(world, callback)
    post(world, world.owner, "owner only", public=False, writer="mine")
    (_, body), *_ = subscriber.wait_posts(f"/private-{name}", 1, timeout=3, containing="owner only")
    assert feedparser.parse(body).bozo == 0
    # a stranger's private write is not in the owner's view: nothing new is delivered
    before = len(subscriber.posts)
    post(world, world.stranger, "stranger only", public=False, writer="mine")
    time.sleep(0.5)
    assert not any(b"stranger only" in b for _, _, b in subscriber.posts[before:])


def test_websub_refusals(world: World, subscriber: Subscriber) -> None:
    name = new_feed(world)
    topic = f"{world.server.url}/feed/{name}.rss"
    # the callback does not echo the challenge: nothing stored, nothing delivered
    bad = f"{subscriber.url}/refuse-{name}"
    assert subscribe(world, bad, topic).status_code == 202
    deadline = time.monotonic() + 3
    while not any(g["path"] == [f"/refuse-{name}"] for g in subscriber.gets) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert subscriptions(world, bad) == []
    # bad requests are 400 at once
    cases = [
        {"hub.mode": "subscribe", "hub.callback": f"{subscriber.url}/x", "hub.topic": "https://elsewhere/feed/a.rss"},
        {"hub.mode": "subscribe", "hub.callback": "ftp://x/y", "hub.topic": topic},
        {"hub.mode": "publish", "hub.callback": f"{subscriber.url}/x", "hub.topic": topic},
        {"hub.mode": "subscribe", "hub.callback": f"{subscriber.url}/x", "hub.topic": topic, "hub.secret": "s" * 200},
        {"hub.mode": "subscribe", "hub.callback": f"{subscriber.url}/x", "hub.topic": topic, "hub.lease_seconds": "x"},
        {
            "hub.mode": "subscribe",
            "hub.callback": f"{subscriber.url}/x",
            "hub.topic": topic,
            "hub.lease_seconds": "\u00b2",
        },
        {"hub.mode": "subscribe", "hub.callback": "http://user:pw@127.0.0.1/x", "hub.topic": topic},
        {"hub.mode": "subscribe", "hub.callback": "http://127.0.0.1:99999/x", "hub.topic": topic},
        {"hub.mode": "subscribe", "hub.callback": f"{subscriber.url}/x", "hub.topic": topic + "?token=x"},
    ]
    with world.c() as c:
        for form in cases[1:]:
            r = c.post("/websub", data=form)
            assert r.status_code == 400, (form, r.text)
        r = c.post("/websub", data=cases[0])
        assert r.status_code in (400, 404), r.text
        r = c.post(
            "/websub",
            data={
                "hub.mode": "subscribe",
                "hub.callback": f"{subscriber.url}/x",
                "hub.topic": f"{world.server.url}/feed/missing.rss",
            },
        )
        assert r.status_code == 404
    # the default allow-list refuses loopback and private callbacks
    with world.c(world.admin) as c:
        assert c.delete("/_config/backend/websub.allowed_callbacks").status_code in (200, 204)
    try:
        for cb in (f"{subscriber.url}/x", "http://10.1.2.3/x", "http://[::1]:9/x", "http://169.254.169.254/x"):
            r = subscribe(world, cb, topic)
            assert r.status_code == 400 and "allowed_callbacks" in r.text, (cb, r.text)
    finally:
        with world.c(world.admin) as c:
            assert c.post("/_config/backend/websub.allowed_callbacks", content="127.0.0.0/8").status_code == 200


def test_websub_subscription_survives_restart(subscriber: Subscriber) -> None:
    url, drop = fresh_database("sqlite")
    srv = start_server(url)
    try:
        w = feeds_world(srv, url)
        name = new_feed(w)
        topic = f"{srv.url}/feed/{name}.json"
        callback = f"{subscriber.url}/restart-{name}"
        assert subscribe(w, callback, topic, **{"hub.secret": "k"}).status_code == 202
        wait_subscribed(w, callback)
        srv.stop()
        srv = start_server(url, srv.data_dir)
        w.server = srv
        post(w, w.owner, "after restart")
        (headers, body), *_ = subscriber.wait_posts(f"/restart-{name}", 1, timeout=3, containing="after restart")
        assert headers["x-hub-signature"] == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
        doc = json.loads(body)
        jsonschema.validate(doc, SCHEMA)
        assert doc["items"][0]["title"] == "after restart"
        # the topic URL names the old port; deliveries use the topic's base for links, as subscribed
        assert doc["feed_url"] == topic
    finally:
        srv.stop()
        drop()


def test_websub_subscription_ends_when_its_subscriber_changes_password(subscriber: Subscriber) -> None:
    """A private subscription renders as the user who made it; their password change ends it (the token that
    made it is revoked), so a leaked feed token stops leaking through the hub too."""
    url, drop = fresh_database("sqlite")
    srv = start_server(url)
    try:
        w = feeds_world(srv, url)
        name = new_feed(w, filter=json.dumps([{"column": "writer", "operator": "is", "value": "pw"}]))
        callback = f"{subscriber.url}/pw-{name}"
        assert subscribe(w, callback, f"{srv.url}/feed/{name}.rss", token=w.owner).status_code == 202
        wait_subscribed(w, callback)
        post(w, w.owner, "before the change", public=False, writer="pw")
        subscriber.wait_posts(f"/pw-{name}", 1, timeout=3, containing="before the change")
        with w.c(w.owner) as c:
            mine = me(c)
            change = {"type": "user_account", "id": mine["id"], "attributes": {"password": "another-pass1"}}
            r = c.patch(f"/api/user_account/{mine['id']}", json={"data": change})
            assert r.status_code == 200, r.text
        with w.c() as c:
            fresh = signin(c, mine["attributes"]["email"], "another-pass1")
        before = len(subscriber.posts)
        post(w, fresh, "after the change", public=False, writer="pw")
        deadline = time.monotonic() + 5
        while subscriptions(w, callback) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert subscriptions(w, callback) == []
        time.sleep(0.3)
        assert not any(b"after the change" in b for _, _, b in subscriber.posts[before:])
    finally:
        srv.stop()
        drop()


# -- other databases ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_round_trip_other_databases(kind: str) -> None:
    url, drop = fresh_database(kind)
    srv = start_server(url)
    try:
        w = feeds_world(srv, url)
        name = new_feed(w, page_size=1)
        post(w, w.owner, "older")
        post(w, w.owner, "<newer> &\x02 x", content="x]]>y")
        post(w, w.owner, "private", public=False)
        assert titles(w, name, fmt="rss") == ["<newer> & x"]
        assert titles(w, name, w.owner, fmt="atom") == ["private"]
        with w.c() as c:
            doc = check_json(c.get(f"/feed/{name}.json", params={"page": "2"}))
            assert [i["title"] for i in doc["items"]] == ["older"]
            r = c.get(f"/feed/{name}.atom")
            assert c.get(f"/feed/{name}.atom", headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    finally:
        srv.stop()
        drop()
