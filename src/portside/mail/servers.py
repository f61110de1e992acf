"""The listener plan of the `mail_server` rows: which rows want an SMTP listener, where, with which role,
and what is wrong with the others. Used by the SMTP edge (which starts the listeners, live) and by the
`sync_mail_servers` action (which reports the same problems).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from portside.core.model import Model

PREFIX = "smtp-"
SERVER_TABLE = "mail_server"
DISABLE_ENV = "DAPTIN_DISABLE_SMTP"
_TRUE = {"1", "true", "yes", "on", "t", "y"}


@dataclass(frozen=True)
class Wanted:
    """One enabled row's listener."""

    row_id: int
    hostname: str
    host: str
    port: int
    implicit_tls: bool
    auth_required: bool
    max_size: int
    max_clients: int


def flag(value: Any) -> bool:
    """Daptin's booleans: true/1/yes/on (any case) and non-zero numbers."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    return str(value or "").strip().lower() in _TRUE


def parse_interface(text: str) -> tuple[str, int]:
    """`host:port`, `:port` (all addresses), `[v6]:port`; port 0 = any free port. ValueError otherwise."""
    value = (text or "").strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, colon, port = value.rpartition(":")
        if not colon:
            port = ""
    if not (port.isascii() and port.isdigit()) or len(port) > 5 or int(port) > 65535:
        raise ValueError(f"listen_interface {text!r} is not host:port")
    return host or "0.0.0.0", int(port)


def disabled() -> bool:
    """`DAPTIN_DISABLE_SMTP=true`: no SMTP listener at all (as Daptin)."""
    return os.environ.get(DISABLE_ENV, "").strip().lower() == "true"


async def plan(conn: AsyncConnection, model: Model) -> dict[str, Wanted | str]:
    """Listener name (`smtp-<hostname>`) -> what it should be, or why it cannot be."""
    t = model.table(SERVER_TABLE).sa
    rows = [] if disabled() else (await conn.execute(sa.select(t).order_by(t.c.id))).all()
    out: dict[str, Wanted | str] = {}
    seen: dict[str, str] = {}
    for row in rows:
        hostname = (row.hostname or "").strip().lower()
        if not flag(row.is_enabled) or not hostname:
            continue
        name = PREFIX + hostname
        try:
            host, port = parse_interface(row.listen_interface or "")
        except ValueError as exc:
            out[name] = str(exc)
            continue
        key = f"{host}:{port}" if port else f"{name}:0"
        if key in seen:
            why = f"{seen[key]} and {name} share listen_interface {row.listen_interface}"
            out[name] = out[seen[key]] = why
            continue
        seen[key] = name
        out[name] = Wanted(
            int(row.id),
            hostname,
            host,
            port,
            flag(row.always_on_tls),
            flag(row.authentication_required),
            max(int(row.max_size or 0), 1024),
            max(int(row.max_clients or 0), 1),
        )
    return out
