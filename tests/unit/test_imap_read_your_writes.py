"""An /api write is seen by the next IMAP command on this node (imap/rows.RowsBackend.on_commit): the mailbox's
highest modseq is announced by the after-commit hook, before the write's response, so a session does not answer
from an index that has not yet had the change event from the bus."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from portside.auth.throttle import LoginThrottle
from portside.core.db import Database
from portside.core.events import Event, Grants
from portside.imap.boxindex import BoxIndex
from portside.imap.rows import RowsBackend
from portside.realtime.bus import LocalBus


def event(table: str, kind: str, **data: Any) -> Event:
    return Event(7, table, kind, "r1", data, Grants("u1", 0), "u1")


def indexed_backend(db: Database) -> tuple[RowsBackend, BoxIndex]:
    """A backend whose shared index holds mailbox `box1`, read up to modseq 5."""
    backend = RowsBackend(db, None, LocalBus(db), LoginThrottle(), None)  # type: ignore[arg-type]
    idx = BoxIndex(uidvalidity=1)
    idx.synced = 5
    backend.indexes._boxes["box1"] = idx
    return backend, idx


async def test_a_local_commit_makes_the_index_stale_before_the_bus_event(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    backend, idx = indexed_backend(db)
    assert backend.indexes.current("box1", backend.latest.get("box1", 0)) is idx  # answered from the index

    await backend.on_commit([event("mail_expunged", "create", mail_box_id="box1", uid=3, modseq=6)])
    assert backend.latest["box1"] == 6
    assert backend.indexes.current("box1", backend.latest["box1"]) is None  # behind: the session reads

    # other tables, updates of tombstones, missing or bad fields, older modseqs: nothing announced
    await backend.on_commit(
        [
            event("mail_expunged", "update", mail_box_id="box1", modseq=9),
            event("mail_box", "update", mail_box_id="box1", modseq=9),
            event("mail", "update", mail_box_id="box1", modseq="9"),
            event("mail", "update", mail_box_id=None, modseq=9),
            event("mail", "update", mail_box_id="box1", modseq=4),
        ]
    )
    assert backend.latest == {"box1": 6}
    await backend.on_commit([event("mail", "update", mail_box_id="box1", uid=3, modseq=8)])
    assert backend.latest == {"box1": 8}
    await db.dispose()


async def test_an_api_delete_marks_the_uid_for_a_re_read(tmp_path: Path) -> None:
    """A delete's event carries the message as it was (its old modseq): the index must still not be trusted."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    backend, idx = indexed_backend(db)
    await backend.on_commit([event("mail", "delete", mail_box_id="box1", uid=3, modseq=2)])
    assert backend.latest == {"box1": 2}
    assert idx.suspect == {3}
    assert backend.indexes.current("box1", backend.latest["box1"]) is None  # the session reads
    await db.dispose()
