"""Row binding of Yjs documents (L3): the row operations a row-bound room (`{table}.{ref}.{column}` of a
`file.*` column) needs from the permission-aware record service. The runtime gives `YjsRows` to the room
manager at construction and registers `ColumnWatch.on_commit` after each commit; the HTTP edge only calls
`row_access` to decide an upgrade.
"""

from __future__ import annotations

from portside.actions.services import Services
from portside.auth import access
from portside.auth.permissions import PEEK, READ, UPDATE, Actor
from portside.core import filetext, records
from portside.core.config import ConfigStore
from portside.core.events import Event
from portside.errors import BadRequest, Forbidden, NotFound, PortsideError
from portside.realtime.yjs_rooms import Binding, Content, RoomManager
from portside.tools.ids import parse_uuid


def text_name(config: ConfigStore, table: str, column: str) -> str:
    """The name of the shared `Text` a column's document keeps its text in."""
    return config.get(f"yjs.text_name.{table}.{column}") or "content"


async def row_access(svc: Services, who: Actor, table: str, ref: str, column: str) -> tuple[Binding, bool]:
    """The room binding and whether the caller is read-only; NotFound/BadRequest as the endpoint answers."""
    tm = svc.model.tables.get(table)
    if tm is None:
        raise NotFound(f"no table {table[:64]}")
    col = tm.columns.get(column)
    if col is None or not col.column_type.startswith("file."):
        raise NotFound(f"no file column {column[:64]} in {table}")
    canonical = parse_uuid(ref)
    if canonical is None:
        raise BadRequest("reference id must be a UUID")
    async with svc.db.read() as conn:
        try:
            await svc.crud.gate(conn, who, tm, PEEK)
            row = await svc.crud.row(conn, who, tm, canonical, READ)
        except Forbidden:
            raise NotFound(f"no {table} with id {canonical}") from None
        try:
            await svc.crud.gate(conn, who, tm, UPDATE)
            table_update = True
        except Forbidden:
            table_update = False
    readonly = access.document_mode(who, row.grants, table_allows_update=table_update) == "ro"
    binding = Binding(tm.name, canonical, col.column_name, text_name(svc.config, tm.name, col.column_name))
    return binding, readonly


class YjsRows:
    """`realtime.yjs_rowbound.RowOps` over the record service: seed, write-back and re-checks."""

    def __init__(self, svc: Services):
        self.svc = svc

    async def seed(self, binding: Binding) -> Content | None:
        svc = self.svc
        tm = svc.model.tables.get(binding.table)
        if tm is None:
            return None
        async with svc.db.read() as conn:
            row = await records.fetch_one(conn, svc.model, tm, ref=binding.ref, groups=False)
        return filetext.content_of(row.attrs.get(binding.column)) if row is not None else None

    async def write_back(self, binding: Binding, content: Content, editor: Actor) -> None:
        crud = self.svc.crud
        page = await crud.get(editor, binding.table, binding.ref)
        current = page.rows[0].attrs.get(binding.column)
        value = filetext.with_content(current, content, f"{binding.column}.txt")
        await crud.update(editor, binding.table, binding.ref, {binding.column: value})

    async def recheck(self, who: Actor, binding: Binding) -> str | None:
        try:
            _, readonly = await row_access(self.svc, who, binding.table, binding.ref, binding.column)
        except PortsideError:
            return None
        return "ro" if readonly else "rw"


class ColumnWatch:
    """After a commit on this node: open documents whose file column changed take the new text; a deleted
    row's documents are closed and dropped."""

    def __init__(self, svc: Services, manager: RoomManager):
        self.svc = svc
        self.manager = manager

    async def on_commit(self, events: list[Event]) -> None:
        svc, manager = self.svc, self.manager
        for event in events:
            if event.type not in ("update", "delete"):
                continue
            tm = svc.model.tables.get(event.table)
            if tm is None:
                continue
            for col in tm.columns.values():
                if not col.column_type.startswith("file."):
                    continue
                if event.type == "delete":
                    gone = Binding(tm.name, event.ref, col.column_name)
                    manager.spawn(manager.row_deleted(gone), f"yjs-deleted-{gone.room}")
                    continue
                if col.column_name not in event.data:
                    continue
                content = filetext.content_of(event.data[col.column_name])
                text: Content = "" if content is None else content
                name = text_name(svc.config, tm.name, col.column_name)
                binding = Binding(tm.name, event.ref, col.column_name, name)
                room = manager.rooms.get(binding.room)
                if manager.is_own_write(binding.room, text) or (room is not None and room.column_text == text):
                    continue
                manager.spawn(manager.column_changed(binding, text), f"yjs-column-{binding.room}")
