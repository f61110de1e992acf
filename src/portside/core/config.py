"""Runtime configuration in the `_config` table: every key is live, on every node.

Values are cached per process and reloaded when a `_config` change event arrives on the bus (from this
node or another), so a write takes effect without a restart.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from portside.core.db import Database, UnitOfWork
from portside.core.events import EventDraft, Grants

config_metadata = sa.MetaData()
config_table = sa.Table(
    "_config",
    config_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("configtype", sa.String(100), nullable=False),
    sa.Column("configstate", sa.String(100), nullable=False, default="enabled"),
    sa.Column("configenv", sa.String(100), nullable=False, default="release"),
    sa.Column("value", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql")),
    sa.Column("valuetype", sa.String(100)),
    sa.Column("previousvalue", sa.Text()),
    sa.Column("created_at", sa.DateTime()),
    sa.Column("updated_at", sa.DateTime()),
    sa.Index("u_config_name_type", "name", "configtype", unique=True),
)

CONFIG_TABLE = "_config"
MAX_VALUE_BYTES = 1024 * 1024

# Secret keys are write-only through the API: reads show SECRET_MARKER instead of the value. A key is
# secret when it is listed here or its last dotted part names a secret (`smtp.password`, `s3.secret_key`,
# `github.client_secret`, `webhook.token`, `mail.dkim.private_key`).
SECRET_KEYS = frozenset({"jwt.secret", "encryption.secret"})
SECRET_WORDS = (
    "secret",
    "password",
    "passwd",
    "token",
    "private_key",
    "privatekey",
    "api_key",
    "apikey",
    "account_key",
)
SECRET_MARKER = "********"


def is_secret(key: str) -> bool:
    last = key.strip().lower().rsplit(".", 1)[-1]
    return key.strip().lower() in SECRET_KEYS or any(w in last for w in SECRET_WORDS)


class ConfigStore:
    def __init__(self, db: Database):
        self.db = db
        self._values: dict[tuple[str, str], str] = {}
        self._changes = 0  # local writes so far: a reload that overlapped one reads again

    async def load(self) -> None:
        """Read every value. A local write committed while the read ran (its snapshot may predate the write)
        makes it read again, so a reload started by an older change event never undoes a newer value."""
        while True:
            seen = self._changes
            async with self.db.read() as conn:
                cols = (config_table.c.name, config_table.c.configtype, config_table.c.value)
                rows = await conn.execute(sa.select(*cols))
                values = {(r.name, r.configtype): r.value or "" for r in rows}
            if seen == self._changes:
                self._values = values
                return

    def get(self, key: str, default: str | None = None, end: str = "backend") -> str | None:
        return self._values.get((key, end), default)

    def get_int(self, key: str, default: int, end: str = "backend") -> int:
        raw = self.get(key, None, end)
        try:
            return int(raw) if raw is not None else default
        except ValueError:
            return default

    def get_bool(self, key: str, default: bool, end: str = "backend") -> bool:
        raw = self.get(key, None, end)
        if raw is None:
            return default
        return raw.strip().lower() in {"true", "1", "yes", "on"}

    def items(self, end: str | None = None) -> dict[str, str]:
        return {k: v for (k, e), v in sorted(self._values.items()) if end is None or e == end}

    async def set(
        self,
        key: str,
        value: str,
        end: str = "backend",
        *,
        uow: UnitOfWork | None = None,
        actor: str | None = None,
    ) -> None:
        if uow is None:
            async with self.db.transaction() as own:
                await self._set(own, key, value, end, actor)
        else:
            await self._set(uow, key, value, end, actor)
        self._values[(key, end)] = value
        self._changes += 1

    async def setdefault(self, key: str, value: str, end: str = "backend") -> str:
        """The stored value, or store `value`; safe when several processes start at once."""
        current = self.get(key, None, end)
        if current is not None:
            return current
        t = config_table
        async with self.db.transaction(exclusive=True) as uow:
            stored = await uow.conn.scalar(sa.select(t.c.value).where(t.c.name == key, t.c.configtype == end))
            if stored is None:
                await self._set(uow, key, value, end, None)
            else:
                value = stored
        self._values[(key, end)] = value
        self._changes += 1
        return value

    async def _set(self, uow: UnitOfWork, key: str, value: str, end: str, actor: str | None) -> None:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        t = config_table
        old = (
            await uow.conn.execute(sa.select(t.c.id, t.c.value).where(t.c.name == key, t.c.configtype == end))
        ).first()
        if old is None:
            await uow.conn.execute(
                t.insert().values(
                    name=key,
                    configtype=end,
                    configstate="enabled",
                    configenv="release",
                    value=value,
                    valuetype="text",
                    created_at=now,
                    updated_at=now,
                )
            )
            kind = "create"
        else:
            await uow.conn.execute(
                t.update().where(t.c.id == old.id).values(value=value, previousvalue=old.value, updated_at=now)
            )
            kind = "update"
        await uow.emit(
            EventDraft(CONFIG_TABLE, kind, f"{end}/{key}", {"name": key, "configtype": end}, Grants(None, 0), actor)
        )

    async def delete(self, key: str, end: str = "backend", actor: str | None = None) -> bool:
        t = config_table
        async with self.db.transaction() as uow:
            res = await uow.conn.execute(t.delete().where(t.c.name == key, t.c.configtype == end))
            if not res.rowcount:
                return False
            await uow.emit(
                EventDraft(
                    CONFIG_TABLE,
                    "delete",
                    f"{end}/{key}",
                    {"name": key, "configtype": end},
                    Grants(None, 0),
                    actor,
                )
            )
        self._values.pop((key, end), None)
        self._changes += 1
        return True


def unquote(body: str) -> str:
    """Config bodies may be plain text or a JSON string; a JSON-quoted string is unquoted."""
    text = body.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            value: Any = json.loads(text)
        except ValueError:
            return body
        if isinstance(value, str):
            return value
    return body
