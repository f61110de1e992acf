"""Issue 11 items 5, 9, 12 over real sockets on SQLite, PostgreSQL and MariaDB: numbers range-checked and query
shapes bounded (400, never 500), keyset cursors that do not leak existence, JSON:API details (type mismatch,
duplicate to-many ids, ASCII page numbers) and /live re-subscription with `since`."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets

from support import Server, World, create, events, is_event, recv, setup_world, until

SCHEMA = """
Tables:
  - TableName: gauge
    Permission: 561441
    DefaultPermission: 16256
    AccessGroups: [{Name: users, Permission: 2080768}]
    Columns:
      - {Name: label, DataType: varchar(100), ColumnType: label, IsIndexed: true}
      - {Name: body, DataType: text, ColumnType: content, IsNullable: true}
      - {Name: n, DataType: int(11), ColumnType: measurement, IsNullable: true}
      - {Name: big, DataType: bigint, ColumnType: measurement, IsNullable: true}
      - {Name: ratio, DataType: double, ColumnType: float, IsNullable: true}
      - {Name: flag, DataType: bool, ColumnType: truefalse, IsNullable: true}
      - {Name: seen_at, DataType: timestamp, ColumnType: datetime, IsNullable: true}
  - TableName: tag
    Permission: 561441
    DefaultPermission: 16256
    AccessGroups: [{Name: users, Permission: 2080768}]
    Columns:
      - {Name: name, DataType: varchar(100), ColumnType: label}
Relations:
  - {Subject: gauge, Relation: has_many, Object: tag, SubjectName: gauge_id, ObjectName: tag_id}
"""
INT32, INT64 = 2**31, 2**63


@pytest.fixture(scope="module")
def world(server: Server, db_url: str) -> Iterator[World]:
    w = setup_world(server, db_url, SCHEMA)
    with w.c(w.owner) as c:
        for i in range(3):
            r = create(c, "gauge", label=f"g{i}", n=i, big=i * 10, ratio=i / 2, flag=i % 2 == 0)
            assert r.status_code == 201, r.text
    yield w


def q(c: httpx.Client, filters: Any, **params: Any) -> httpx.Response:
    return c.get("/api/gauge", params={"query": json.dumps(filters), **params})


def error(r: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err: dict[str, Any] = r.json()["errors"][0]
    assert err["status"] == str(status)
    return err


def raw_get(server: Server, target: str, token: str) -> tuple[int, bytes]:
    """A GET with a request target longer than httpx allows."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        head = f"GET {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        s.sendall(head.encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


# -- item 5: numbers out of range and oversized expressions -------------------------------------------------


def test_issue_cases_are_400_with_a_source(world: World) -> None:
    with world.c(world.owner) as c:
        err = error(c.get("/api/gauge", params={"page[number]": "9223372036854775807"}))
        assert err["source"]["parameter"] == "page[number]"
        for column, value in (("n", INT32), ("n", -INT32 - 1), ("big", INT64), ("big", -INT64 - 1)):
            err = error(q(c, [{"column": column, "operator": "is", "value": value}]))
            assert err["source"] == {"pointer": "/query/0/value", "parameter": "query"}, (column, value)
        # the edges of each range are fine
        for column, value in (("n", INT32 - 1), ("n", -INT32), ("big", INT64 - 1), ("big", -INT64)):
            r = q(c, [{"column": column, "operator": "gt", "value": value}])
            assert r.status_code == 200, (column, value, r.text)
        names = ",".join(["label"] * 2000)
        err = error(q(c, [{"column": names, "operator": "fuzzy", "value": "g"}]))
        assert err["source"]["pointer"] == "/query/0/column"
        assert q(c, [{"column": "label,body", "operator": "fuzzy", "value": "g1"}]).json()["meta"]["total"] == 1


BAD_NUMBERS: list[Any] = [
    "1e400",
    "-1e400",
    "NaN",
    "nan",
    "Infinity",
    "inf",
    "\u0661\u0662",
    "1_0",
    "0x10",
    "",
    "abc",
    True,
    {"a": 1},
]
BAD_BIGINTS = [*BAD_NUMBERS, INT64, -INT64 - 1, 2**70, "9223372036854775808", 9.3e18, 1.5, "1.5", "1e3"]
BAD_INTS = [*BAD_BIGINTS, INT32, -INT32 - 1, "2147483648"]
BAD_DATES: list[Any] = [
    "0000-01-01",
    "10000-01-01T00:00:00Z",
    "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59-05:00",
    1e20,
    -1e20,
    "1e400",
    10**30,
    "2026-13-45",
    "",
    True,
]
BAD_BOOLS: list[Any] = ["2", 2, "yes", -1, "", 1.5, "true\x00"]
INVALID = {"n": BAD_INTS, "big": BAD_BIGINTS, "ratio": BAD_NUMBERS, "seen_at": BAD_DATES, "flag": BAD_BOOLS}
COMPARE = ["is", "is not", "more than", "gte", "less than", "lte", "in", "none of"]
# values that are not invalid everywhere but must never cause a 500 on any column and operator
ODD: list[Any] = [
    0,
    -1,
    INT32 - 1,
    INT64 - 1,
    1e308,
    -1e308,
    5e-324,
    "0001-01-01",
    "9999-12-31T23:59:59Z",
    253402300799,
    -62135596800,
    "\U0001f600",
    "x" * 10_000,
    "%",
    "\\",
    "a\\",
    "_%_%_",
    "'; DROP TABLE gauge; --",
    None,
    [1, "a", None],
    [],
]


def test_hostile_values_are_400_never_500(world: World) -> None:
    crashed: list[Any] = []  # every 500, first: the sweep goes on to show the whole class
    wrong: list[Any] = []
    with world.c(world.owner) as c:
        for column, values in INVALID.items():
            for op in COMPARE:
                for v in values:
                    value = [v] if op in ("in", "none of") else v
                    r = q(c, [{"column": column, "operator": op, "value": value}])
                    if r.status_code >= 500:
                        crashed.append((column, op, v))
                    elif r.status_code != 400 or not r.json()["errors"][0]["source"]["pointer"].startswith("/query"):
                        wrong.append((column, op, v, r.status_code))
        operators = [*COMPARE, "contains", "like", "not like", "ilike", "begins with", "is true", "fuzzy"]
        columns = ["label", "body", "n", "big", "ratio", "flag", "seen_at", "reference_id", "permission", "created_at"]
        for column in columns:
            for op in operators:
                for v in ODD + INVALID.get(column, BAD_NUMBERS[:6]):
                    r = q(c, [{"column": column, "operator": op, "value": v}])
                    if r.status_code >= 500:
                        crashed.append((column, op, v))
                    elif r.status_code not in (200, 400):
                        wrong.append((column, op, v, r.status_code))
    assert crashed == [], crashed[:40]
    assert wrong == [], wrong[:40]


def test_query_shapes_are_bounded(world: World) -> None:
    one = {"column": "n", "operator": "is", "value": 1}
    with world.c(world.owner) as c:
        assert q(c, [one] * 50).status_code == 200
        assert error(q(c, [one] * 51))["source"]["pointer"] == "/query"
        assert q(c, [{"column": "n", "operator": "in", "value": list(range(1000))}]).status_code == 200
        assert error(q(c, [{"column": "n", "operator": "in", "value": list(range(1001))}]))["source"]["pointer"]
        # several lists together stay within one budget of bound values
        full = {"column": "n", "operator": "in", "value": list(range(1000))}
        assert q(c, [full, full]).status_code == 200
        assert error(q(c, [full, full, one]))["source"]["pointer"] == "/query/2"
        wide = {"column": ",".join(["label", "body"] * 10), "operator": "fuzzy", "value": " ".join("abcdefghij")}
        assert q(c, [wide]).status_code == 200
        many = {"column": ",".join(f"c{i}" for i in range(21)), "operator": "fuzzy", "value": "x"}
        assert error(q(c, [many]))["source"]["pointer"] == "/query/0/column"
        words = {"column": "label", "operator": "fuzzy", "value": " ".join("abcdefghijk")}
        assert error(q(c, [words]))["source"]["pointer"] == "/query/0/value"
        cols12 = "label,body,n,big,ratio,flag,seen_at,reference_id,created_at,updated_at,permission,user_account_id"
        fuzz = {"column": cols12, "operator": "fuzzy_all", "value": " ".join("abcdefghij")}  # 120 comparisons
        assert q(c, [fuzz, fuzz]).status_code == 200
        assert error(q(c, [fuzz, fuzz, fuzz]))["source"]["pointer"] == "/query/2"  # over the budget of 256
        grouped = [{**one, "logical_group": "a", "value": i} for i in range(50)]
        assert q(c, grouped).status_code == 200
        assert error(q(c, [{"column": "label", "operator": "is", "value": "x" * 10_001}]))
        assert q(c, [{"column": "label", "operator": "contains", "value": "x" * 1000}]).status_code == 200
        for pattern in ("x" * 1001, "%a" * 11, "abc\\", "%\\\\\\"):
            err = error(q(c, [{"column": "label", "operator": "like", "value": pattern}]))
            assert err["source"]["pointer"] == "/query/0/value", pattern
        assert q(c, [{"column": "label", "operator": "like", "value": "ab\\\\"}]).status_code == 200
        assert error(q(c, [{"column": "n", "operator": "in", "value": [[[1]]]}]))["source"]["pointer"] == "/query"
        for spaces in (20_000, 70_000):  # an overlong query: refused (by the HTTP parser past ~64 KiB of URL)
            status, _ = raw_get(world.server, "/api/gauge?query=[" + "%20" * spaces + "]", world.owner)
            assert status in (200, 400) if spaces < 20_001 else status == 400
        assert c.get("/api/gauge", params={"sort": ",".join(["label", "-n"] * 5)}).status_code == 200
        assert error(c.get("/api/gauge", params={"sort": ",".join(["label"] * 11)}))["source"]["parameter"] == "sort"
        assert (
            error(c.get("/api/gauge", params={"fields": ",".join(["label"] * 201)}))["source"]["parameter"] == "fields"
        )
        inc = ",".join(f"r{i}" for i in range(21))
        err = error(c.get("/api/gauge", params={"included_relations": inc}))
        assert err["source"]["parameter"] == "included_relations"
        ref = c.get("/api/gauge").json()["data"][0]["id"]
        assert error(c.get(f"/api/gauge/{ref}", params={"include": inc}))["source"]["parameter"] == "included_relations"
        assert error(c.get("/api/gauge", params={"filter": "y" * 1001}))["source"]["parameter"] == "filter"
        assert c.get("/api/gauge", params={"filter": "g1"}).status_code == 200
        me = c.get("/api/user_account/mine").json()["data"]["id"]
        assert c.get("/api/gauge", params={"user_account_id": ",".join([me] * 1000)}).json()["meta"]["total"] >= 3
        err = error(c.get("/api/gauge", params={"user_account_id": ",".join([me] * 1001)}))
        assert err["source"]["parameter"] == "user_account_id"
        err = error(c.get("/api/gauge", params={"user_account_id": "nope"}))
        assert err["source"]["parameter"] == "user_account_id"


PAGE_BAD = ["\u0661\u0662", "+1", " 1", "1 ", "1_0", "0x10", "1e3", "-1", "0", "abc", "1.0", "\u00b2", "00000000000000"]


def test_page_parameters_take_ascii_digits_in_range(world: World) -> None:
    with world.c(world.owner) as c:
        for name in ("page[number]", "page[size]"):
            for bad in [*PAGE_BAD, "2147483648", "9223372036854775807", "9" * 40]:
                err = error(c.get("/api/gauge", params={name: bad}))
                assert err["source"]["parameter"] == name, (name, bad)
            assert c.get("/api/gauge", params={name: ""}).status_code == 200  # empty: the default
        body = c.get("/api/gauge", params={"page[number]": "2147483647", "page[size]": "500"}).json()
        assert body["data"] == [] and body["meta"]["page"] == 2147483647 and body["meta"]["total"] == 3
        assert c.get("/api/gauge", params={"page[size]": "2147483647"}).json()["meta"]["per_page"] == 500
        assert c.get("/api/gauge", params={"page[number]": "02", "page[size]": "2"}).json()["meta"]["page"] == 2
        rel = c.get("/api/gauge").json()["data"][0]["id"]
        assert error(c.get(f"/api/gauge/{rel}/tag_id", params={"page[number]": "0"}))


# -- item 9: keyset cursors the caller may not see ---------------------------------------------------------


def test_invisible_cursor_answers_like_an_unknown_one(world: World) -> None:
    with world.c(world.stranger) as c:
        hidden = create(c, "gauge", label="private").json()["data"]["id"]
    with world.c(world.owner) as c:
        for i in range(3):
            assert create(c, "gauge", label=f"after{i}").status_code == 201
        tag = create(c, "tag", name="other-table").json()["data"]["id"]
        visible = c.get("/api/gauge", params={"page[size]": 1, "sort": "created_at"}).json()["data"][0]["id"]
        for key in ("page[after]", "page[before]"):
            answers = []
            for cursor in (hidden, str(uuid.uuid4()), tag, hidden.upper()):
                r = c.get("/api/gauge", params={key: cursor, "page[size]": 5})
                answers.append((r.status_code, r.content.replace(cursor.encode(), b"CURSOR")))
            assert answers[0][0] == 400 and answers[0][1] == answers[1][1]
            assert len(set(answers)) == 1, answers
            assert json.loads(answers[0][1])["errors"][0]["source"]["parameter"] == key
        r = c.get("/api/gauge", params={"page[after]": visible, "page[size]": 50})
        assert r.status_code == 200 and "private" not in r.text and r.json()["meta"]["total"] >= 5
    with world.c(world.admin) as c:  # the administrator may see the row: its cursor works
        r = c.get("/api/gauge", params={"page[after]": hidden})
        assert r.status_code == 200 and r.json()["meta"]["total"] >= 3


# -- item 12: JSON:API details -------------------------------------------------------------------------------


def test_type_mismatch_is_409_and_changes_nothing(world: World) -> None:
    with world.c(world.owner) as c:
        total = c.get("/api/gauge").json()["meta"]["total"]
        r = c.post("/api/gauge", json={"data": {"type": "tag", "attributes": {"label": "wrong"}}})
        assert error(r, 409)["source"]["pointer"] == "/data/type"
        r = c.post("/api/gauge", json={"data": {"type": 5, "attributes": {"label": "wrong"}}})
        assert error(r, 400)["source"]["pointer"] == "/data/type"
        assert c.get("/api/gauge").json()["meta"]["total"] == total
        ref = create(c, "gauge", label="keep").json()["data"]["id"]
        tag = create(c, "tag", name="t").json()["data"]["id"]
        r = c.patch(f"/api/gauge/{ref}", json={"data": {"type": "tag", "id": ref, "attributes": {"label": "x"}}})
        assert error(r, 409)["source"]["pointer"] == "/data/type"
        r = c.patch(f"/api/gauge/{ref}", json={"data": {"type": "gauge", "id": ref.upper(), "attributes": {"n": 7}}})
        assert r.status_code == 200 and r.json()["data"]["attributes"]["n"] == 7  # the same id in another spelling
        assert c.get(f"/api/gauge/{ref}").json()["data"]["attributes"]["label"] == "keep"
        # relationship bodies: each identifier's type must be the relation's target
        r = c.post(f"/api/gauge/{ref}/relationships/tag_id", json={"data": [{"type": "gauge", "id": tag}]})
        assert error(r, 409)["source"]["pointer"] == "/data/0/type"
        r = c.patch(
            f"/api/gauge/{ref}/relationships/tag_id", json={"data": [{"type": "tag", "id": tag}, {"type": "x"}]}
        )
        assert error(r, 409)["source"]["pointer"] == "/data/1/type"
        r = c.patch(
            f"/api/gauge/{ref}/relationships/user_account_id", json={"data": {"type": "usergroup", "id": world.team}}
        )
        assert error(r, 409)["source"]["pointer"] == "/data/type"
        r = c.patch(f"/api/gauge/{ref}/relationships/user_account_id", json={"data": [1]})
        assert error(r, 400)
        body = {
            "type": "gauge",
            "attributes": {"label": "rel"},
            "relationships": {"tag_id": {"data": [{"type": "user_account", "id": tag}]}},
        }
        r = c.post("/api/gauge", json={"data": body})
        assert error(r, 409)["source"]["pointer"] == "/data/relationships/tag_id/data/0/type"
        assert c.get(f"/api/gauge/{ref}/relationships/tag_id").json()["data"] == []
        assert c.get("/api/gauge").json()["meta"]["total"] == total + 1


def test_duplicate_to_many_ids_are_linked_once(world: World) -> None:
    with world.c(world.owner) as c:
        ref = create(c, "gauge", label="dups").json()["data"]["id"]
        t1 = create(c, "tag", name="one").json()["data"]["id"]
        t2 = create(c, "tag", name="two").json()["data"]["id"]
        url = f"/api/gauge/{ref}/relationships/tag_id"

        def linked() -> list[str]:
            return sorted(x["id"] for x in c.get(url).json()["data"])

        twice = [{"type": "tag", "id": t1}, {"type": "tag", "id": t1.upper()}, {"type": "tag", "id": t1}]
        r = c.post(url, json={"data": twice})
        assert r.status_code == 204, r.text
        assert linked() == [t1]
        r = c.post(url, json={"data": twice})  # adding what is there is idempotent
        assert r.status_code == 204, r.text
        r = c.patch(url, json={"data": [*twice, {"type": "tag", "id": t2}, {"type": "tag", "id": t2}]})
        assert r.status_code == 204, r.text
        assert linked() == sorted([t1, t2])
        r = c.request("DELETE", url, json={"data": [{"type": "tag", "id": t2}, {"type": "tag", "id": t2}]})
        assert r.status_code == 204 and linked() == [t1]
        body = {"type": "gauge", "attributes": {"label": "made"}, "relationships": {"tag_id": {"data": twice}}}
        r = c.post("/api/gauge", json={"data": body})
        assert r.status_code == 201, r.text
        made = r.json()["data"]["id"]
        assert [x["id"] for x in c.get(f"/api/gauge/{made}/relationships/tag_id").json()["data"]] == [t1]
        r = c.patch(
            f"/api/gauge/{made}",
            json={
                "data": {
                    "type": "gauge",
                    "id": made,
                    "relationships": {
                        "tag_id": {"data": [*twice, {"type": "tag", "id": t2}, {"type": "tag", "id": t2}]}
                    },
                }
            },
        )
        assert r.status_code == 200, r.text
        assert sorted(x["id"] for x in c.get(f"/api/gauge/{made}/relationships/tag_id").json()["data"]) == sorted(
            [t1, t2]
        )


def test_live_resubscribe_with_since_replays_what_was_missed(world: World) -> None:
    server = world.server
    url = server.url.replace("http://", "ws://") + f"/live?token={world.owner}&encoding=json"

    async def subscribe(ws: Any, rid: str, **attrs: Any) -> list[dict[str, Any]]:
        await ws.send(json.dumps({"id": rid, "method": "subscribe", "attributes": {"topicName": "gauge", **attrs}}))
        # requests are handled in order and a replay is out before the next one: the pong ends what it sent
        await ws.send(json.dumps({"method": "ping"}))
        frames = (await until(ws, lambda f: f["type"] == "pong"))[:-1]
        responses = [f for f in frames if f["type"] == "response"]
        assert [(f["id"], f["ok"]) for f in responses] == [(rid, True)], frames
        return [f for f in frames if f["type"] == "event"]

    def labels(frames: list[dict[str, Any]]) -> list[str]:
        return [f["data"]["label"] for f in frames]

    async def main() -> None:
        async with websockets.connect(url) as ws:
            start = (await recv(ws))["data"]["offset"]
            with world.c(world.owner) as c:
                assert create(c, "gauge", label="before").status_code == 201
            with world.c(world.stranger) as c:
                assert create(c, "gauge", label="not-yours").status_code == 201
            assert await subscribe(ws, "s1") == []
            with world.c(world.owner) as c:
                assert create(c, "gauge", label="live1").status_code == 201
                assert create(c, "gauge", label="live2").status_code == 201
            assert labels(events(await until(ws, lambda f: is_event()(f) and f["data"]["label"] == "live2"))) == [
                "live1",
                "live2",
            ]
            # the socket follows `gauge` already: `since` replays what it was not sent, and nothing twice
            assert labels(await subscribe(ws, "s2", since=start)) == ["before"]
            assert await subscribe(ws, "s3", since=start) == []
            with world.c(world.owner) as c:
                assert create(c, "gauge", label="live3").status_code == 201
            live3 = events(await until(ws, is_event()))
            assert labels(live3) == ["live3"]
            assert await subscribe(ws, "s4", since=start) == []  # a duplicate of live3 would show here
            assert await subscribe(ws, "s5", since=live3[-1]["offset"]) == []
        async with websockets.connect(url) as ws:  # a new socket subscribed with `since`, then again lower
            await recv(ws)
            assert labels(await subscribe(ws, "n1", since=live3[-1]["offset"] - 1)) == ["live3"]
            assert labels(await subscribe(ws, "n2", since=start)) == ["before", "live1", "live2"]
            assert await subscribe(ws, "n3", since=start) == []
            for bad in (-1, 2**63, "x", 1.5, True, "\u0661"):
                await ws.send(
                    json.dumps({"id": "b", "method": "subscribe", "attributes": {"topicName": "gauge", "since": bad}})
                )
                r = await recv(ws)
                assert r["type"] == "response" and r["ok"] is False, (bad, r)

    asyncio.run(main())
