"""Subscriptions to mailbox names that no longer exist (RFC 3501 §6.3.6: a subscription outlives its
mailbox). An existing mailbox keeps its subscription in `mail_box.subscribed`; a subscribed name whose
mailbox was deleted is a row of the hidden `mail_subscribed` table until it is unsubscribed or created again."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from portside.core import records
from portside.core.db import UnitOfWork
from portside.core.model import OWNER_COLUMN, Model
from portside.core.schema import SchemaDoc, parse_document
from portside.mail import boxes
from portside.mail.tables import OWNER_READ, col

TABLE = "mail_subscribed"  # short: PostgreSQL cuts names past 63 characters (its group join table)

SCHEMA: dict[str, Any] = {
    "Tables": [
        {
            "TableName": TABLE,
            "DefaultPermission": OWNER_READ,
            "IsHidden": True,
            "Columns": [col("name", "label", "varchar(100)", IsIndexed=True)],
        }
    ],
    "Relations": [{"Subject": TABLE, "Relation": "belongs_to", "Object": "mail_account"}],
}


def subscriptions_doc() -> SchemaDoc:
    return parse_document(SCHEMA, "<mail subscriptions>")


async def names(conn: AsyncConnection, model: Model, account_id: int) -> set[str]:
    t = model.table(TABLE).sa
    rows = await conn.scalars(sa.select(t.c.name).where(t.c.mail_account_id == account_id))
    return {str(n) for n in rows.all()}


async def add(uow: UnitOfWork, model: Model, account: boxes.Account, name: str) -> None:
    key = boxes.mailbox_name(name)
    if key in await names(uow.conn, model, account.id):
        return
    values = {"name": key, "mail_account_id": account.id, OWNER_COLUMN: account.owner_id}
    await records.insert_row(uow, model, model.table(TABLE), values, permission=OWNER_READ, actor=account.owner_ref)


async def remove(uow: UnitOfWork, model: Model, account_id: int, name: str) -> bool:
    t = model.table(TABLE).sa
    result = await uow.conn.execute(t.delete().where(t.c.mail_account_id == account_id, t.c.name == name))
    return bool(result.rowcount)
