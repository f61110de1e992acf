"""Mail accounts, local domains and mailboxes (rows of `mail_account`, `mail_server`, `mail_box`).

Every account has the standard mailboxes INBOX, Sent, Drafts, Junk, Trash and Archive from the moment it
exists (`ensure_standard`, called in the transaction that creates the account, and again before a delivery
to an account that predates this rule). Mailboxes are owned by the account's owner.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from portside.core import records
from portside.core.db import UnitOfWork
from portside.core.events import Grants
from portside.core.model import OWNER_COLUMN, Model
from portside.errors import BadRequest, Conflict
from portside.mail.flags import PERMANENT
from portside.mail.tables import OWNER_READ
from portside.tools import names

ACCOUNT_TABLE = "mail_account"
BOX_TABLE = "mail_box"
SERVER_TABLE = "mail_server"
INBOX = "INBOX"
# (name, SPECIAL-USE role, RFC 6154)
STANDARD: tuple[tuple[str, str], ...] = (
    (INBOX, ""),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Junk", "\\Junk"),
    ("Trash", "\\Trash"),
    ("Archive", "\\Archive"),
)
ROLES = frozenset(role for _, role in STANDARD if role) | {"\\All", "\\Flagged"}
MAX_NAME = 100
SYSTEM_FLAGS = ",".join(PERMANENT[:-1])


@dataclass(frozen=True)
class Account:
    id: int
    ref: str
    username: str
    owner_id: int | None
    owner_ref: str | None
    mail_server_id: int | None


@dataclass(frozen=True)
class Mailbox:
    id: int
    ref: str
    account_id: int
    name: str
    role: str
    uidvalidity: int
    nextuid: int
    modseq: int
    subscribed: bool
    owner_id: int | None
    owner_ref: str | None

    @property
    def grants(self) -> Grants:
        return Grants(self.owner_ref, OWNER_READ)


def mailbox_name(raw: str) -> str:
    """The stored form of a mailbox name: NFC, no control characters, at most 100 characters; INBOX in any
    case is INBOX (RFC 3501). BadRequest when it cannot be one."""
    if not isinstance(raw, str):
        raise BadRequest("a mailbox name must be text")
    try:
        name = names.identifier(raw, "mailbox name", MAX_NAME)
    except names.BadName as exc:
        raise BadRequest(str(exc)) from None
    if len(name) > MAX_NAME:
        raise BadRequest(f"a mailbox name has at most {MAX_NAME} characters")
    return INBOX if name.upper() == INBOX else name


def _account_query(model: Model) -> sa.Select[Any]:
    a = model.table(ACCOUNT_TABLE).sa
    u = model.table("user_account").sa
    return sa.select(
        a.c.id,
        a.c.reference_id,
        a.c.username,
        a.c[OWNER_COLUMN],
        u.c.reference_id.label("owner_ref"),
        a.c.mail_server_id,
    ).select_from(a.outerjoin(u, u.c.id == a.c[OWNER_COLUMN]))


def _account(row: Any) -> Account:
    owner = row[3]
    return Account(int(row[0]), row[1], row[2], None if owner is None else int(owner), row[4], row[5])


async def account_by_id(conn: AsyncConnection, model: Model, account_id: int) -> Account | None:
    a = model.table(ACCOUNT_TABLE).sa
    row = (await conn.execute(_account_query(model).where(a.c.id == account_id))).first()
    return _account(row) if row is not None else None


async def account_by_address(conn: AsyncConnection, model: Model, address: str) -> Account | None:
    """The account whose username is `address` (compared as login names are: NFC, lower-cased)."""
    try:
        key = names.email(names.identifier(address, "address", 320))
    except (names.BadName, ValueError, TypeError):
        return None
    if len(key) > 100:  # the column's width: no such account
        return None
    a = model.table(ACCOUNT_TABLE).sa
    row = (await conn.execute(_account_query(model).where(a.c.username == key))).first()
    return _account(row) if row is not None else None


async def accounts_of(conn: AsyncConnection, model: Model, user_id: int) -> list[Account]:
    a = model.table(ACCOUNT_TABLE).sa
    rows = (await conn.execute(_account_query(model).where(a.c[OWNER_COLUMN] == user_id).order_by(a.c.id))).all()
    return [_account(r) for r in rows]


async def local_domains(conn: AsyncConnection, model: Model) -> set[str]:
    """Domains mail is accepted for: every mail_server hostname and the entries of its `domains` column."""
    s = model.table(SERVER_TABLE).sa
    out: set[str] = set()
    for hostname, domains in await conn.execute(sa.select(s.c.hostname, s.c.domains)):
        for item in [hostname or "", *(str(domains or "").split(","))]:
            d = item.strip().lower().rstrip(".")
            if d:
                out.add(d)
    return out


def _box_query(model: Model) -> sa.Select[Any]:
    b = model.table(BOX_TABLE).sa
    u = model.table("user_account").sa
    return sa.select(
        b.c.id,
        b.c.reference_id,
        b.c.mail_account_id,
        b.c.name,
        b.c.role,
        b.c.uidvalidity,
        b.c.nextuid,
        b.c.modseq,
        b.c.subscribed,
        b.c[OWNER_COLUMN],
        u.c.reference_id.label("owner_ref"),
    ).select_from(b.outerjoin(u, u.c.id == b.c[OWNER_COLUMN]))


def _box(r: Any) -> Mailbox:
    return Mailbox(
        int(r[0]),
        r[1],
        int(r[2]),
        r[3],
        r[4] or "",
        int(r[5] or 0),
        max(int(r[6] or 1), 1),
        int(r[7] or 1),
        bool(r[8]),
        None if r[9] is None else int(r[9]),
        r[10],
    )


async def mailboxes_of(conn: AsyncConnection, model: Model, account_id: int) -> list[Mailbox]:
    b = model.table(BOX_TABLE).sa
    rows = (await conn.execute(_box_query(model).where(b.c.mail_account_id == account_id).order_by(b.c.id))).all()
    return [_box(r) for r in rows]


async def mailbox_by_id(conn: AsyncConnection, model: Model, box_id: int) -> Mailbox | None:
    b = model.table(BOX_TABLE).sa
    row = (await conn.execute(_box_query(model).where(b.c.id == box_id))).first()
    return _box(row) if row is not None else None


async def mailbox_by_name(conn: AsyncConnection, model: Model, account_id: int, name: str) -> Mailbox | None:
    b = model.table(BOX_TABLE).sa
    key = mailbox_name(name)
    row = (await conn.execute(_box_query(model).where(b.c.mail_account_id == account_id, b.c.name == key))).first()
    return _box(row) if row is not None else None


async def mailbox_by_role(conn: AsyncConnection, model: Model, account_id: int, role: str) -> Mailbox | None:
    b = model.table(BOX_TABLE).sa
    q = _box_query(model).where(b.c.mail_account_id == account_id, b.c.role == role).order_by(b.c.id)
    row = (await conn.execute(q)).first()
    return _box(row) if row is not None else None


async def lock_account(uow: UnitOfWork, model: Model, account_id: int) -> None:
    """Hold the account row until the transaction ends (box creation cannot race on any database)."""
    a = model.table(ACCOUNT_TABLE).sa
    await uow.conn.execute(a.update().where(a.c.id == account_id).values(version=a.c.version))


async def _next_uidvalidity(conn: AsyncConnection, model: Model, account_id: int) -> int:
    """Now (unix seconds), or one more than any box of the account had: a box deleted and created again
    under the same name always gets a new UIDVALIDITY."""
    b = model.table(BOX_TABLE).sa
    top = await conn.scalar(sa.select(sa.func.max(b.c.uidvalidity)).where(b.c.mail_account_id == account_id))
    return max(int(time.time()), int(top or 0) + 1)


async def create_mailbox(
    uow: UnitOfWork, model: Model, account: Account, name: str, *, role: str = "", subscribed: bool = True
) -> Mailbox:
    """A new mailbox of `account` (Conflict when the name exists; BadRequest for a bad name or role)."""
    key = mailbox_name(name)
    if role and role not in ROLES:
        raise BadRequest(f"unknown mailbox role {role[:30]!r}")
    await lock_account(uow, model, account.id)
    if await mailbox_by_name(uow.conn, model, account.id, key) is not None:
        raise Conflict("mailbox already exists")
    tm = model.table(BOX_TABLE)
    values = {
        "name": key,
        "subscribed": subscribed,
        "uidvalidity": await _next_uidvalidity(uow.conn, model, account.id),
        "nextuid": 1,
        "modseq": 1,
        "attributes": role,
        "flags": SYSTEM_FLAGS,
        "permanent_flags": ",".join(PERMANENT),
        "role": role,
        "mail_account_id": account.id,
        OWNER_COLUMN: account.owner_id,
    }
    row = await records.insert(uow, model, tm, values, permission=OWNER_READ, actor=account.owner_ref)
    box = await mailbox_by_id(uow.conn, model, row.id)
    assert box is not None
    return box


async def ensure_standard(uow: UnitOfWork, model: Model, account_id: int) -> list[Mailbox]:
    """Create whichever standard mailboxes the account lacks; all of its mailboxes afterwards."""
    account = await account_by_id(uow.conn, model, account_id)
    if account is None:
        return []
    await lock_account(uow, model, account_id)
    have = {b.name for b in await mailboxes_of(uow.conn, model, account_id)}
    for name, role in STANDARD:
        if name not in have:
            await create_mailbox(uow, model, account, name, role=role)
    return await mailboxes_of(uow.conn, model, account_id)
