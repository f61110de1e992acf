"""Asset columns kept in a cloud store (spec core §10.1) round-trip through /api and /asset on every
database: the row holds metadata only, the bytes are files in the store."""

from __future__ import annotations

import base64
import hashlib
import json

import sqlalchemy as sa

from support import Server, create, new_user, schema_upload, sync_url

SCHEMA = """
Tables:
  - TableName: album
    Columns:
      - ColumnName: title
        ColumnType: label
        DataType: varchar(100)
      - ColumnName: photo
        ColumnType: image
        DataType: text
        IsNullable: true
        IsForeignKey: true
        ForeignKeyData:
          DataSource: cloud_store
          Namespace: localstore
          KeyName: photos
"""
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200)) * 50


def test_asset_column_in_the_store_round_trips(server: Server) -> None:
    _, token = new_user(server, "assets")
    _, other = new_user(server, "other")  # before the administrator exists: sign-up closes then
    with server.client(token) as c:
        r = c.post("/action/world/become_an_administrator")
        assert r.status_code == 200, r.text
        r = schema_upload(c, SCHEMA)
        assert r.status_code == 200, r.text
        data = "data:image/png;base64," + base64.b64encode(PNG).decode()
        r = create(c, "album", title="one", photo=[{"name": "p.png", "file": data, "type": "image/png"}])
        assert r.status_code == 201, r.text
        ref = r.json()["data"]["id"]
        photo = r.json()["data"]["attributes"]["photo"]
        assert photo == [
            {
                "name": "p.png",
                "type": "image/png",
                "size": len(PNG),
                "md5": hashlib.md5(PNG).hexdigest(),
                "path": "",
                "src": "p.png",
            }
        ]
        assert (server.data_dir / "storage" / "photos" / "p.png").read_bytes() == PNG
        assert c.get(f"/api/album/{ref}").json()["data"]["attributes"]["photo"] == photo
        r = c.get(f"/asset/album/{ref}/photo")
        assert r.status_code == 200 and r.content == PNG and r.headers["content-type"] == "image/png"
        # a second file under a path; the first one is echoed back as metadata and kept
        second = base64.b64encode(b"thumb").decode()
        new = [*photo, {"name": "t.png", "contents": second, "type": "image/png", "path": "thumbs"}]
        body = {"data": {"type": "album", "id": ref, "attributes": {"photo": new}}}
        r = c.patch(f"/api/album/{ref}", json=body)
        assert r.status_code == 200, r.text
        names = [(p["name"], p["path"]) for p in r.json()["data"]["attributes"]["photo"]]
        assert names == [("p.png", ""), ("t.png", "thumbs")]
        assert (server.data_dir / "storage" / "photos" / "thumbs" / "t.png").read_bytes() == b"thumb"
        assert c.get(f"/asset/album/{ref}/photo", params={"file": "t.png"}).content == b"thumb"
        assert c.get(f"/asset/album/{ref}/photo", params={"index": "1"}).content == b"thumb"
        assert c.get(f"/asset/album/{ref}/photo", params={"index": "7"}).status_code == 404
        # unsafe names and paths change nothing
        bad = [{"name": "x.png", "contents": second, "path": "../../outside"}]
        r = c.patch(f"/api/album/{ref}", json={"data": {"type": "album", "id": ref, "attributes": {"photo": bad}}})
        assert r.status_code == 400, r.text
        assert not (server.data_dir / "outside").exists()
    # the row holds metadata only, never the bytes
    engine = sa.create_engine(sync_url(server.database_url))
    try:
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT photo FROM album")).scalar_one()
    finally:
        engine.dispose()
    assert base64.b64encode(PNG).decode()[:40] not in stored
    assert json.loads(stored)[0]["md5"] == hashlib.md5(PNG).hexdigest()
    with server.client(other) as c:
        assert c.get(f"/asset/album/{ref}/photo").status_code in (403, 404)
