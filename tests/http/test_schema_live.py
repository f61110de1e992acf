"""Schema changes without a restart: a file dropped into the data dir, an uploaded schema, bad uploads,
and schema-declared actions whose outcomes run as the caller."""

from __future__ import annotations

import time

import pytest

from inprocess import InProcessServer
from support import create, me, new_user, schema_upload

PROJECT = """
Tables:
  - TableName: project
    AccessGroups: [{Name: users, Permission: 2080768}]
    DefaultPermission: 16256
    Columns:
      - {Name: name, DataType: varchar(100), ColumnType: label}
  - TableName: task_item
    AccessGroups: [{Name: users, Permission: 2080768}]
    DefaultPermission: 16256
    Columns:
      - {Name: title, DataType: varchar(100), ColumnType: label}
      - {Name: points, DataType: int(11), ColumnType: measurement, IsNullable: true}
  - TableName: audit_note
    Columns:
      - {Name: text, DataType: varchar(200), ColumnType: label}
Relations:
  - {Subject: task_item, Relation: belongs_to, Object: project}
  - {Subject: project, Relation: has_many, Object: task_item, SubjectName: owner_project_id, ObjectName: member_task_id}
Actions:
  - Name: add_task
    Label: Add a task to a project
    OnType: project
    InstanceOptional: false
    InFields:
      - {Name: title, ColumnName: title, ColumnType: label, IsNullable: false}
      - {Name: points, ColumnName: points, ColumnType: measurement, IsNullable: true, DefaultValue: "3"}
    OutFields:
      - Type: task_item
        Method: POST
        Reference: created
        Attributes: {title: "~title", points: "~points", project_id: "~project_id"}
      - Type: client.notify
        Method: ACTIONRESPONSE
        Attributes: {type: success, title: done, message: "created $created.title in $subject.name"}
      - Type: client.notify
        Method: ACTIONRESPONSE
        Condition: "~attributes.loud"
        Attributes: {type: info, title: loud, message: "LOUD"}
      - Type: task_item
        Method: GET_BY_ID
        SkipInResponse: true
        Attributes: {reference_id: "~created.reference_id"}
      - Type: client.notify
        Method: ACTIONRESPONSE
        ContinueOnError: true
        Attributes: {message: "~no_such_value"}
  - Name: escalate
    OnType: project
    InstanceOptional: true
    OutFields:
      - Type: audit_note
        Method: POST
        Attributes: {text: "users may not write here"}
  - Name: broken
    OnType: project
    OutFields:
      - Type: task_item
        Method: POST
        Attributes: {title: "must not survive"}
      - Type: client.notify
        Method: ACTIONRESPONSE
        Attributes: {message: "~no_such_value"}
  - Name: scripted
    OnType: project
    OutFields:
      - Type: client.notify
        Method: ACTIONRESPONSE
        Attributes: {message: "!process.env.HOME"}
"""


@pytest.fixture(scope="module")
def srv(inprocess_server: InProcessServer) -> InProcessServer:
    return inprocess_server  # pure HTTP: the fast in-process tier (tests/inprocess.py)


@pytest.fixture(scope="module")
def tokens(srv: InProcessServer) -> tuple[str, str]:
    _, admin = new_user(srv, "sadmin")
    _, user = new_user(srv, "suser")
    with srv.client(admin) as c:
        assert c.post("/action/world/become_an_administrator").status_code == 200
    return admin, user


def test_schema_file_dropped_into_data_dir_is_served(srv: InProcessServer, tokens: tuple[str, str]) -> None:
    admin, _ = tokens
    with srv.client(admin) as c:
        assert c.get("/api/dropped").status_code == 404
        (srv.data_dir / "schema_dropped.yaml").write_text(
            "Tables:\n  - TableName: dropped\n    Columns:\n      - {Name: label, ColumnType: label}\n"
        )
        deadline = time.monotonic() + 15
        while c.get("/api/dropped").status_code != 200:
            assert time.monotonic() < deadline, "schema file was not picked up"
            time.sleep(0.2)
        assert create(c, "dropped", label="x").status_code == 201
        # a later edit adds a column, live
        (srv.data_dir / "schema_dropped.yaml").write_text(
            "Tables:\n  - TableName: dropped\n    Columns:\n      - {Name: label, ColumnType: label}\n"
            "      - {Name: extra, ColumnType: label, IsNullable: true}\n"
        )
        deadline = time.monotonic() + 15
        while create(c, "dropped", label="y", extra="z").status_code != 201:
            assert time.monotonic() < deadline, "added column was not picked up"
            time.sleep(0.2)


def test_bad_schema_upload_changes_nothing(srv: InProcessServer, tokens: tuple[str, str]) -> None:
    admin, user = tokens
    with srv.client(admin) as c:
        before = c.get("/api/world", params={"page[size]": 1}).json()["links"]["total"]
        for text in [
            "Tables: [{TableName: x!}]",
            "Tables:\n  - TableName: ok_t\nRelations:\n  - {Subject: ok_t, Relation: owns, Object: user_account}",
            "Tables: [{TableName: bad_rel}]\nRelations: [{Subject: bad_rel, Relation: has_one, Object: nowhere}]",
            ": : not yaml [",
        ]:
            r = schema_upload(c, text)
            assert r.status_code == 400, (text, r.text)
            assert r.json()[0]["Attributes"]["type"] == "error"
        assert c.get("/api/world", params={"page[size]": 1}).json()["links"]["total"] == before
        assert c.get("/api/ok_t").status_code == 404
    with srv.client(user) as c:
        assert schema_upload(c, PROJECT).status_code == 403


def test_schema_actions_run_as_the_caller(srv: InProcessServer, tokens: tuple[str, str]) -> None:
    admin, user = tokens
    with srv.client(admin) as c:
        r = schema_upload(c, PROJECT)
        assert r.status_code == 200, r.text
    with srv.client(user) as c:
        project = create(c, "project", name="Apollo").json()["data"]["id"]
        r = c.post("/action/project/add_task", json={"attributes": {"project_id": project, "title": "  Launch "}})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body[0]["ResponseType"] == "task_item"
        assert body[0]["Attributes"]["points"] == 3  # InField DefaultValue applies
        assert body[0]["Attributes"]["project_id"] == project
        assert body[1]["Attributes"]["message"] == "created   Launch  in Apollo"
        assert len(body) == 2  # condition false, GET_BY_ID skipped, the failing ContinueOnError outcome skipped
        r = c.post("/action/project/broken", json={"attributes": {}})
        assert r.status_code == 400 and "no_such_value" in r.json()[0]["Attributes"]["message"]
        # the outcomes share one transaction: the task created before the failure was rolled back
        q = '[{"column":"title","operator":"is","value":"must not survive"}]'
        assert c.get("/api/task_item", params={"query": q}).json()["links"]["total"] == 0
        r = c.post(
            "/action/project/add_task", json={"attributes": {"project_id": project, "title": "t2", "loud": True}}
        )
        assert [x["Attributes"].get("title") for x in r.json()][-1] == "loud"
        # related rows through the FK and through the relationship endpoints
        tasks = c.get(f"/api/project/{project}/task_item_id").json()
        assert tasks["links"]["total"] == 2
        assert {t["attributes"]["title"] for t in tasks["data"]} == {"  Launch ", "t2"}
        r = c.get("/api/task_item", params={"project_id": project})
        assert r.json()["links"]["total"] == 2
        # a has_many relation through its join table, with the relationship endpoints
        task_refs = [t["id"] for t in tasks["data"]]
        r = c.post(
            f"/api/project/{project}/relationships/member_task_id",
            json={"data": [{"type": "task_item", "id": ref} for ref in task_refs]},
        )
        assert r.status_code == 204, r.text
        rel = c.get(f"/api/project/{project}/relationships/member_task_id").json()
        assert sorted(x["id"] for x in rel["data"]) == sorted(task_refs)
        linked = c.get(f"/api/project/{project}/member_task_id").json()
        assert sorted(x["id"] for x in linked["data"]) == sorted(task_refs)
        r = c.patch(
            f"/api/project/{project}/relationships/member_task_id",
            json={"data": [{"type": "task_item", "id": task_refs[0]}]},
        )
        assert r.status_code == 204
        rel = c.get(f"/api/project/{project}/relationships/member_task_id").json()
        assert [x["id"] for x in rel["data"]] == [task_refs[0]]
        inc = c.get(f"/api/project/{project}", params={"included_relations": "member_task_id"}).json()
        assert [x["id"] for x in inc["included"]] == [task_refs[0]]
        assert inc["data"]["relationships"]["member_task_id"]["data"] == [{"type": "task_item", "id": task_refs[0]}]
        # instance actions need their subject
        r = c.post("/action/project/add_task", json={"attributes": {"title": "x"}})
        assert r.status_code == 400
        # outcomes run with the caller's rights: no silent admin escalation
        r = c.post("/action/project/escalate", json={"attributes": {}})
        assert r.status_code == 403, r.text
        # JavaScript expressions are refused with a clear message
        r = c.post("/action/project/scripted", json={"attributes": {}})
        assert r.status_code == 400 and "JavaScript" in r.json()[0]["Attributes"]["message"]
        assert c.post("/action/project/no_such_action", json={}).status_code == 404
        assert me(c)["attributes"]["email"].startswith("suser")


def test_keyset_paging(srv: InProcessServer, tokens: tuple[str, str]) -> None:
    _, user = tokens
    with srv.client(user) as c:
        refs = [create(c, "project", name=f"k{i}").json()["data"]["id"] for i in range(5)]
        r = c.get("/api/project", params={"page[after]": refs[1], "page[size]": 2})
        assert [d["id"] for d in r.json()["data"]] == refs[2:4]
        r = c.get("/api/project", params={"page[before]": refs[3], "page[size]": 2})
        assert [d["id"] for d in r.json()["data"]] == [refs[2], refs[1]]
        assert c.get("/api/project", params={"page[after]": "not-a-uuid"}).status_code == 400
