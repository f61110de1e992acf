"""Issue 11, items 1 (Yjs room names compared exactly, look-alikes of row-bound rooms refused) and 13 (Yjs state
in `x-crdt/yjs` file entries), over real sockets on SQLite, PostgreSQL and MariaDB (utf8mb4_unicode_ci)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from pycrdt import Doc, Map, Text

from support import Server, World, create, setup_world
from yclient import YClient

SCHEMA = """
Tables:
  - TableName: todo
    AccessGroups: [{Name: users, Permission: 2080768}]
    DefaultPermission: 16256
    Columns:
      - {Name: title, DataType: varchar(100), ColumnType: label}
      - {Name: body, DataType: text, ColumnType: file.txt, IsNullable: true}
"""


@pytest.fixture(scope="module")
def world(server: Server, db_url: str) -> Iterator[World]:
    yield setup_world(server, db_url, SCHEMA)


def ws(world: World) -> str:
    return world.server.url.replace("http://", "ws://")


def text_file(text: str) -> list[dict[str, str]]:
    return [{"name": "body.txt", "type": "text/plain", "contents": base64.b64encode(text.encode()).decode()}]


def new_todo(world: World, body: Any) -> str:
    with world.c(world.owner) as c:
        r = create(c, "todo", title="t", body=body)
        assert r.status_code == 201, r.text
        return str(r.json()["data"]["id"])


async def refused(url: str) -> int:
    """The HTTP status a WebSocket upgrade is refused with (fails the test if it is accepted)."""
    with pytest.raises(websockets.InvalidStatus) as err:
        async with websockets.connect(url):
            pass
    return err.value.response.status_code


def lookalikes(ref: str) -> list[str]:
    """Names that read as the row-bound room `todo.{ref}.body` without being its canonical spelling."""
    dots = ["\uff0e", "\u2024", "\ufe52", "\u3002", "\uff61", "\u00b7", "\u2027"]
    names = [f"todo{d}{ref}{d}body" for d in dots]
    names += [
        f"todo\uff0e{ref}.body",
        f"\uff54\uff4f\uff44\uff4f.{ref}.\uff42\uff4f\uff44\uff59",  # full-width letters, ASCII dots: 404
        f"todo.{ref.replace('-', chr(0x2010))}.body",  # hyphen look-alikes in the id
        f"todo.{ref.upper()}\uff0ebody",
        f"todo. {ref}.body",
        f"todo.{ref}.body.",
        f"Todo\uff0e{ref}\uff0eBody",
        f"todo\uff0e{{{ref}}}\uff0ebody",
        f"todo\uff0e{ref.replace('-', '')}\uff0ebody",
        f"todo\u200b.{ref}.body",  # zero-width space: an invisible character, refused on its own
        f"todo\uff0e{ref.replace('a', chr(0x430)).replace('e', chr(0x435))}\uff0ebody",  # Cyrillic a, e
        f"todo\u2024{ref.replace('0', 'o').replace('1', 'l')}\u2024body",  # letters for digits
    ]
    return names


def test_lookalike_of_row_room_is_refused_and_cannot_read_or_inject(world: World) -> None:
    """The issue's attack: a stranger who gets 404 on the row opens `/yjs/todo<U+FF0E>{ref}<U+FF0E>body` (and other
    look-alikes) to read the owner's document and inject edits. Every one is refused (400); canonical
    spellings with another case are the row-bound room and get its 404."""
    ref = new_todo(world, text_file("secret plan"))
    base = ws(world) + "/yjs/"
    with world.c(world.stranger) as c:
        assert c.get(f"/api/todo/{ref}").status_code in (403, 404)

    async def main() -> None:
        owner = await YClient.connect(base + f"todo.{ref}.body?token={world.owner}")
        assert owner.text == "secret plan"  # the document exists (seeded and stored)
        await owner.close()
        for name in lookalikes(ref):
            url = base + urllib.parse.quote(name, safe="") + f"?token={world.stranger}"
            # 400; a name in the canonical shape (ASCII dots, a UUID) is the row-bound route: no such table, 404
            assert await refused(url) in (400, 404), name
        for name in (f"TODO.{ref}.body", f"todo.{ref}.BODY", f"todo.{ref.upper()}.body"):
            url = base + urllib.parse.quote(name, safe="") + f"?token={world.stranger}"
            assert await refused(url) == 404, name
        # ordinary standalone names, including ones with a UUID in them, still work
        for name in (f"notes-{ref}", f"pad {ref}", f"{ref}", "todo.body"):
            client = await YClient.connect(base + urllib.parse.quote(name, safe="") + f"?token={world.stranger}")
            await client.edit(0, "mine")
            await client.close()
        owner = await YClient.connect(base + f"todo.{ref}.body?token={world.owner}")
        assert owner.text == "secret plan"  # nothing was injected
        await owner.close()

    asyncio.run(main())


def test_standalone_names_are_exact_after_nfc(world: World) -> None:
    """`café` written precomposed and decomposed is one room (NFC); `Cafe`, `cafe`, `café ` are not it."""
    tag = uuid.uuid4().hex[:6]
    base = ws(world) + "/yjs/"

    def url(name: str, token: str) -> str:
        return base + urllib.parse.quote(name, safe="") + f"?token={token}"

    async def main() -> None:
        a = await YClient.connect(url(f"caf\u00e9-{tag}", world.owner))
        await a.edit(0, "precomposed")
        await a.close()
        b = await YClient.connect(url(f"cafe\u0301-{tag}", world.member))
        assert b.text == "precomposed"
        await b.close()
        for other in (f"cafe-{tag}", f"Caf\u00e9-{tag}", f"CAF\u00c9-{tag}"):
            c = await YClient.connect(url(other, world.member))
            assert c.text == "", other
            await c.close()
        assert await refused(url(f"caf\u00e9-{tag} ", world.member)) == 400
        assert await refused(url(f"caf\u00e9-{tag}\u0000", world.member)) == 400

    asyncio.run(main())


# -- item 13: Yjs state in file columns ---------------------------------------------------------


def yjs_file(update: bytes) -> list[dict[str, str]]:
    return [{"name": "body.yjs", "type": "x-crdt/yjs", "contents": base64.b64encode(update).decode()}]


def stored_entry(world: World, ref: str) -> dict[str, Any]:
    with world.c(world.owner) as c:
        r = c.get(f"/api/todo/{ref}")
        assert r.status_code == 200, r.text
        raw = r.json()["data"]["attributes"]["body"]
    entries = json.loads(raw) if isinstance(raw, str) else raw
    entry: dict[str, Any] = entries[0]
    return entry


def test_yjs_file_entry_seeds_the_room_and_takes_the_write_back(world: World) -> None:
    source: Doc[Any] = Doc()
    source["content"] = Text("hello yjs")
    source["meta"] = Map({"k": "v"})
    ref = new_todo(world, yjs_file(source.get_update()))
    url = ws(world) + f"/live/todo/{ref}/body/yjs?token={world.owner}"

    async def main() -> None:
        client = await YClient.connect(url)
        assert client.text == "hello yjs"  # applied as document state, not decoded as UTF-8 text
        assert client.doc.get("meta", type=Map)["k"] == "v"
        await client.edit(len("hello yjs"), " world")
        await client.close()

    asyncio.run(main())
    deadline = time.monotonic() + 20
    while True:
        entry = stored_entry(world, ref)
        back: Doc[Any] = Doc()
        back.apply_update(base64.b64decode(entry["contents"]))
        if str(back.get("content", type=Text)) == "hello yjs world" or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert entry["type"] == "x-crdt/yjs" and entry["name"] == "body.yjs"
    assert str(back.get("content", type=Text)) == "hello yjs world"
    assert back.get("meta", type=Map)["k"] == "v"


def test_yjs_file_patch_merges_into_open_document(world: World) -> None:
    """A PATCH with a Yjs update reaches an open room as an update (merged), not as text."""
    first: Doc[Any] = Doc()
    first["content"] = Text("base")
    ref = new_todo(world, yjs_file(first.get_update()))
    url = ws(world) + f"/live/todo/{ref}/body/yjs?token={world.owner}"

    async def main() -> None:
        client = await YClient.connect(url)
        assert client.text == "base"
        later: Doc[Any] = Doc()
        later.apply_update(first.get_update())
        later.get("content", type=Text).insert(4, "line")
        with world.c(world.owner) as c:
            body = yjs_file(later.get_update())
            r = c.patch(f"/api/todo/{ref}", json={"data": {"type": "todo", "id": ref, "attributes": {"body": body}}})
            assert r.status_code == 200, r.text
        assert await client.wait_for(lambda: client.text == "baseline")
        await client.close()

    asyncio.run(main())


def test_malformed_yjs_file_entry_is_refused_and_text_entries_unchanged(world: World) -> None:
    bad = [{"name": "b.yjs", "type": "x-crdt/yjs", "contents": base64.b64encode(b"not an update").decode()}]
    with world.c(world.owner) as c:
        r = create(c, "todo", title="t", body=bad)
        assert r.status_code == 400, r.text
        assert r.json()["errors"][0]["source"]["pointer"] == "/data/attributes/body"
    ref = new_todo(world, text_file("plain"))
    url = ws(world) + f"/live/todo/{ref}/body/yjs?token={world.owner}"

    async def main() -> None:
        client = await YClient.connect(url)
        assert client.text == "plain"
        await client.edit(5, " text")
        await client.close()

    asyncio.run(main())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        entry = stored_entry(world, ref)
        if base64.b64decode(entry["contents"]) == b"plain text":
            break
        time.sleep(0.3)
    assert entry["type"] == "text/plain" and base64.b64decode(entry["contents"]) == b"plain text"
