"""List pages on SQLite: read on the event loop's thread within a budget of SQLite steps (actions/crud.py
`LOOP_STEPS`), in a worker thread when longer; and exact totals under the row-permission filter when someone
else writes (the cached total is dropped by the write's event before the writer hears back)."""

from __future__ import annotations

from typing import Any

import pytest

from inprocess import InProcessServer
from portside.actions import crud as crud_module
from portside.actions.crud import Crud, ListPlan
from support import World, create, setup_world

OWNER_ALL, GROUP_READ, GUEST_READ = 16256, 32768, 2 | 1
SCHEMA = f"""
Tables:
  - TableName: memo
    Permission: 561441
    DefaultPermission: {OWNER_ALL | GROUP_READ}
    AccessGroups:
      - Name: users
        Permission: 2080768
    Columns:
      - Name: title
        DataType: varchar(100)
        ColumnType: label
      - Name: n
        DataType: int(11)
        ColumnType: measurement
"""


@pytest.fixture(scope="module")
def world(inprocess_server: InProcessServer) -> World:
    return setup_world(inprocess_server, inprocess_server.database_url, SCHEMA)


def crud(world: World) -> Crud:
    srv = world.server
    assert isinstance(srv, InProcessServer) and srv.app is not None and srv.app.services is not None
    return srv.app.services.crud


def plan_for(world: World, params: dict[str, str]) -> ListPlan:
    """The cached list plan of `params` on memo (one caller in these tests asks with them)."""
    wanted = tuple(sorted(params.items()))
    found = [p for k, p in crud(world).plans.items() if k[1] == "memo" and k[2] == wanted]
    assert len(found) == 1
    return found[0]


def page(c: Any, params: dict[str, str]) -> tuple[int, list[str]]:
    r = c.get("/api/memo", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["meta"]["total"] == body["links"]["total"]
    return body["meta"]["total"], [d["id"] for d in body["data"]]


def test_totals_exact_after_another_users_writes(world: World) -> None:
    params = {"page[size]": "5"}
    with world.c(world.stranger) as s, world.c(world.owner) as o:
        total, _ = page(s, params)
        assert page(s, params)[0] == total  # now from the cached total, the page read on the loop's thread
        assert plan_for(world, params).misses == 0
        r = create(o, "memo", title="public", n=1, permission=OWNER_ALL | GUEST_READ)
        assert r.status_code == 201, r.text
        public = r.json()["data"]["id"]
        assert create(o, "memo", title="private", n=2).status_code == 201  # owner and group only
        after, refs = page(s, params)
        assert after == total + 1 and refs[0] == public  # newest first
        r = o.patch(
            f"/api/memo/{public}",
            json={"data": {"type": "memo", "id": public, "attributes": {"permission": OWNER_ALL}}},
        )
        assert r.status_code == 200, r.text
        after, refs = page(s, params)
        assert after == total and public not in refs
        own_total, _ = page(o, params)
        assert o.delete(f"/api/memo/{public}").status_code == 200
        assert page(o, params)[0] == own_total - 1


def test_a_long_page_moves_to_a_worker_thread(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    params = {"page[size]": "7", "page[number]": "3", "sort": "n"}
    with world.c(world.member) as c:
        for i in range(30):
            assert create(c, "memo", title=f"m{i}", n=100 + i).status_code == 201
        total, expected = page(c, params)  # counts, then the page, in a worker thread
        assert page(c, params) == (total, expected)  # on the loop's thread: same rows
        plan = plan_for(world, params)
        assert plan.misses == 0
        monkeypatch.setattr(crud_module, "LOOP_STEPS", 10)  # every page is longer than that now
        assert page(c, params) == (total, expected)  # interrupted on the loop, read again in a worker thread
        assert plan.misses == 1
        assert page(c, params) == (total, expected)
        assert plan.misses == crud_module.LOOP_MISSES  # two in a row: this plan stays off the loop
        monkeypatch.undo()
        assert page(c, params) == (total, expected)
        assert plan.misses == crud_module.LOOP_MISSES
        # the loop's connection is fine after the interruptions: a point read on it
        assert c.get(f"/api/memo/{expected[0]}").status_code == 200
