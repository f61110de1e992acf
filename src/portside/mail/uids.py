"""UIDs and modseqs of a mailbox (spec §A.11, made atomic): the delivering transaction runs `UPDATE mail_box
SET nextuid = nextuid + n, modseq = modseq + 1 WHERE id = ?` and reads the new values back. The UPDATE takes
the row lock on PostgreSQL and MariaDB (SQLite has one writer), so two transactions on any nodes never get the
same UID, and `nextuid` only grows: a UID is never reused after EXPUNGE. Boxes are locked in id order (no
deadlock). MODSEQ: every change of a mailbox's messages (new, flags, expunge) takes the box's next `modseq`
and stamps it on the changed rows (`mail.modseq`) or on the tombstones of expunged UIDs (`mail_expunged`).
"""

from __future__ import annotations

import sqlalchemy as sa

from portside.core.db import UnitOfWork
from portside.core.model import Model
from portside.errors import NotFound
from portside.mail import boxes

_BUMPS: dict[sa.Table, tuple[sa.Update, sa.Update]] = {}


def _bump(b: sa.Table) -> tuple[sa.Update, sa.Update]:
    """The UID/modseq bump of a mailbox (parameters `box`, `n`), without and with RETURNING: built once per
    table (building the expressions and their cache key cost more than running the statement)."""
    found = _BUMPS.get(b)
    if found is None:
        if len(_BUMPS) > 64:  # tables of replaced models
            _BUMPS.clear()
        bump = (
            b.update()
            .where(b.c.id == sa.bindparam("box"))
            .values(nextuid=b.c.nextuid + sa.bindparam("n", type_=sa.Integer()), modseq=b.c.modseq + 1)
        )
        found = _BUMPS[b] = (bump, bump.returning(b.c.nextuid, b.c.modseq))
    return found


async def take(uow: UnitOfWork, model: Model, box_id: int, uids: int) -> tuple[int, int]:
    """(first of `uids` new UIDs, new modseq) of a mailbox; the row stays locked until commit."""
    b = model.table(boxes.BOX_TABLE).sa
    bump, returning = _bump(b)
    params = {"box": box_id, "n": uids}
    if uow.conn.dialect.name in ("sqlite", "postgresql"):  # one statement (MariaDB has no UPDATE RETURNING)
        got = (await uow.conn.execute(returning, params)).first()
        if got is None:
            raise NotFound("no such mailbox")
        return int(got[0]) - uids, int(got[1])
    result = await uow.conn.execute(bump, params)
    if result.rowcount != 1:
        raise NotFound("no such mailbox")
    row = (await uow.conn.execute(sa.select(b.c.nextuid, b.c.modseq).where(b.c.id == box_id))).one()
    return int(row[0]) - uids, int(row[1])
