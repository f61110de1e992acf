"""Change events: appended in the writing transaction, API-visible rows only, grants carried, nothing on
rollback. Read back from the event log of a real server's database."""

from __future__ import annotations

from typing import Any

from support import Server, create, me, new_user, read_events, schema_upload

SCHEMA = """
Tables:
  - TableName: memo
    DefaultPermission: 16256
    AccessGroups:
      - Name: users
        Permission: 2080768
    Columns:
      - Name: text
        DataType: varchar(100)
        ColumnType: label
        IsUnique: true
      - Name: secret
        DataType: text
        ColumnType: encrypted
        IsNullable: true
"""


def last_offset(db_url: str) -> int:
    events = read_events(db_url)
    return events[-1]["offset"] if events else 0


def only(events: list[dict[str, Any]], table: str) -> list[dict[str, Any]]:
    return [e for e in events if e["table"] == table]


def test_events_for_writes(server: Server, db_url: str) -> None:
    start = last_offset(db_url)
    email, token = new_user(server, "ev")
    signup_events = read_events(db_url, start)
    users = only(signup_events, "user_account")
    assert users and users[0]["type"] == "create"
    for e in users:
        assert "password" not in e["data"]  # never the hash
        assert "auth_version" not in e["data"]
        assert e["data"]["email"] == email
    memberships = only(signup_events, "user_account_user_account_id_has_usergroup_usergroup_id")
    assert memberships and memberships[0]["type"] == "create"

    with server.client(token) as c:
        user_ref = me(c)["id"]
    _, admin = new_user(server, "evadmin")
    with server.client(admin) as c:
        r = c.post("/action/world/become_an_administrator")
        assert r.status_code in (200, 403)  # another test module may have made one already
        if r.status_code == 403:
            return
        assert schema_upload(c, SCHEMA).status_code == 200

    # world rows for the new table were written with events (other nodes reload from them)
    assert any(e["table"] == "world" and e["data"].get("table_name") == "memo" for e in read_events(db_url, start))

    before = last_offset(db_url)
    with server.client(token) as c:
        r = create(c, "memo", text="first", secret="hush")
        assert r.status_code == 201, r.text
        ref = r.json()["data"]["id"]
        created = only(read_events(db_url, before), "memo")
        assert [e["type"] for e in created] == ["create"]
        event = created[0]
        assert event["ref"] == ref and event["actor"] == user_ref
        assert event["data"]["text"] == "first" and event["data"]["__type"] == "memo"
        assert "secret" not in event["data"] and "id" not in event["data"] and "version" not in event["data"]
        assert event["grants"]["owner"] == user_ref and event["grants"]["permission"] == 16256

        # a rolled-back write (unique violation) leaves no event behind
        mark = last_offset(db_url)
        assert create(c, "memo", text="first").status_code == 409
        assert last_offset(db_url) == mark

        r = c.patch(f"/api/memo/{ref}", json={"data": {"type": "memo", "id": ref, "attributes": {"text": "second"}}})
        assert r.status_code == 200
        assert c.delete(f"/api/memo/{ref}").status_code == 200
        tail = only(read_events(db_url, mark), "memo")
        assert [e["type"] for e in tail] == ["update", "delete"]
        assert tail[0]["data"]["text"] == "second"
        assert tail[1]["grants"]["owner"] == user_ref  # pre-delete grants
        assert tail[1]["data"]["text"] == "second"
        offsets = [e["offset"] for e in read_events(db_url, start)]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)


def test_event_history_is_bounded(tmp_path: Any) -> None:
    from support import fresh_database, start_server

    url, drop = fresh_database("sqlite")
    try:
        srv = start_server(url, tmp_path)
        new_user(srv, "hist")  # a few more events
        srv.stop()
        assert len(read_events(url)) > 5
        srv = start_server(url, tmp_path, "--event-history", "5")
        try:
            import time

            deadline = time.monotonic() + 10
            while len(read_events(url)) > 5 and time.monotonic() < deadline:
                time.sleep(0.1)
            kept = read_events(url)
            assert len(kept) == 5
            assert [e["offset"] for e in kept] == sorted(e["offset"] for e in kept)
        finally:
            srv.stop()
    finally:
        drop()
