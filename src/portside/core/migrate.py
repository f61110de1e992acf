"""Additive, live migration: create missing tables, columns and indexes. Never drops data.

The one alteration: on MySQL/MariaDB every table Portside creates uses a binary NO PAD collation, so the
database compares names exactly as the code does (`tools/names.py`): `utf8mb4_unicode_ci` would let
`Ann` = `ann` = `änn` = `ann ` (PAD SPACE) and `todo<U+FF0E>x<U+FF0E>body` = `todo.x.body`. New tables are created with
it; an existing table with any other collation (one created before, or by an operator) is converted at
start. SQLite compares BINARY and PostgreSQL's database collations are deterministic; a column an operator
gave a nondeterministic ICU collation on PostgreSQL is not something Portside creates or repairs.
"""

from __future__ import annotations

import warnings
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from portside import log
from portside.core.config import config_metadata
from portside.core.db import Database
from portside.core.events import event_metadata
from portside.core.model import Model
from portside.core.yjs_store import yjs_metadata
from portside.errors import SchemaError

logger = log.get("migrate")


BINARY_COLLATIONS = ("utf8mb4_nopad_bin", "utf8mb4_0900_bin")  # MariaDB >= 10.2, MySQL >= 8.0 (both NO PAD)


def binary_collation(conn: Connection) -> str:
    """The exact (binary, NO PAD) utf8mb4 collation this MySQL/MariaDB server offers."""
    have = set(
        conn.execute(
            sa.text(
                "SELECT COLLATION_NAME FROM information_schema.COLLATIONS WHERE COLLATION_NAME IN :names"
            ).bindparams(sa.bindparam("names", expanding=True)),
            {"names": list(BINARY_COLLATIONS)},
        ).scalars()
    )
    for name in BINARY_COLLATIONS:
        if name in have:
            return name
    raise SchemaError("Portside needs MariaDB 10.2+ or MySQL 8.0+ (a binary NO PAD utf8mb4 collation)")


def _inexact_tables(conn: Connection, collation: str) -> set[str]:
    """Tables of this database whose default or any text column's collation is not `collation`."""
    q = sa.text(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_COLLATION <> :c UNION SELECT TABLE_NAME FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = DATABASE() AND COLLATION_NAME IS NOT NULL AND COLLATION_NAME <> :c"
    )
    return {str(name) for name in conn.execute(q, {"c": collation}).scalars()}


def _widen(conn: Connection, table: sa.Table, have: dict[str, Any]) -> list[str]:
    """Text columns the model declares longer than the database has them are widened (never narrowed)."""
    done: list[str] = []
    prep = conn.dialect.identifier_preparer
    for col in table.columns:
        old = have.get(col.name)
        want = col.type.length if isinstance(col.type, sa.String) and not isinstance(col.type, sa.Text) else None
        length = getattr(old["type"], "length", None) if old is not None else None
        if old is None or want is None or length is None or length >= want:
            continue
        ddl = col.type.compile(dialect=conn.dialect)
        name, column = prep.format_table(table), prep.format_column(col)
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text(f"ALTER TABLE {name} ALTER COLUMN {column} TYPE {ddl}"))
        else:
            null = "" if old.get("nullable", True) else " NOT NULL"
            conn.execute(sa.text(f"ALTER TABLE {name} MODIFY {column} {ddl}{null}"))
        done.append(f"widen column {table.name}.{col.name} to {ddl}")
    return done


def _migrate_sync(conn: Connection, metadata: sa.MetaData) -> list[str]:
    insp = sa.inspect(conn)
    existing = set(insp.get_table_names())
    done: list[str] = []
    prep = conn.dialect.identifier_preparer
    collation = binary_collation(conn) if conn.dialect.name == "mysql" else None
    inexact = _inexact_tables(conn, collation) if collation is not None else set()
    sqlite = conn.dialect.name == "sqlite"
    # PostgreSQL and MariaDB check a foreign key's target when it is declared: constraints are added after
    # every new table exists (tables may refer to each other in a cycle); SQLite declares them inline
    constraints: list[sa.ForeignKeyConstraint] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sa.exc.SAWarning)  # "cannot sort tables": cycles are fine here
        ordered = metadata.sorted_tables
    for table in ordered:
        if table.name not in existing:
            if collation is not None:
                table.dialect_kwargs.update(mysql_charset="utf8mb4", mysql_collate=collation)
            if sqlite:
                table.create(conn)
            else:
                conn.execute(sa.schema.CreateTable(table, include_foreign_key_constraints=[]))
                for index in table.indexes:
                    index.create(conn)
                constraints += table.foreign_key_constraints
            done.append(f"create table {table.name}")
            continue
        if table.name in inexact and collation is not None:
            conn.execute(
                sa.text(f"ALTER TABLE {prep.format_table(table)} CONVERT TO CHARACTER SET utf8mb4 COLLATE {collation}")
            )
            done.append(f"convert table {table.name} to {collation}")
        have = {c["name"]: c for c in insp.get_columns(table.name)}
        have_cols = set(have)
        if not sqlite:  # SQLite does not enforce lengths
            done += _widen(conn, table, have)
        for col in table.columns:
            if col.name in have_cols:
                continue
            # added columns are nullable: existing rows have no value for them
            ddl = col.type.compile(dialect=conn.dialect)
            refs = [fk for fk in table.foreign_key_constraints if col.name in fk.column_keys]
            if sqlite and refs:  # SQLite allows REFERENCES on an added column whose default is NULL
                target = refs[0].elements[0].column
                ddl += f" REFERENCES {prep.format_table(target.table)} ({prep.format_column(target)})"
            else:
                constraints += refs
            conn.execute(sa.text(f"ALTER TABLE {prep.format_table(table)} ADD COLUMN {prep.format_column(col)} {ddl}"))
            done.append(f"add column {table.name}.{col.name}")
        have_idx = {i["name"] for i in insp.get_indexes(table.name)}
        have_idx |= {u["name"] for u in insp.get_unique_constraints(table.name)}
        for index in table.indexes:
            if index.name not in have_idx:
                index.create(conn)
                done.append(f"create index {index.name} on {table.name}")
    for fk in constraints:
        conn.execute(sa.schema.AddConstraint(fk))
        done.append(f"add foreign key {fk.name} on {fk.table.name}")
    return done


async def _run(db: Database, metadatas: tuple[sa.MetaData, ...], *, log_done: bool = True) -> list[str]:
    """Bring each metadata's tables up to date under the cross-process DDL lock; what was done."""
    async with db.ddl_lock() as conn:
        done: list[str] = []
        for md in metadatas:
            done += await conn.run_sync(_migrate_sync, md)
    for line in done if log_done else ():
        logger.info("%s", line)
    return done


async def migrate_base(db: Database) -> list[str]:
    """The tables every process needs before anything else: the event log and `_config`."""
    return await _run(db, (event_metadata, config_metadata, yjs_metadata), log_done=False)


async def migrate_tables(db: Database, metadata: sa.MetaData) -> list[str]:
    """A service's own internal tables (e.g. certs' `_acme_challenge`), created and kept up like the others."""
    return await _run(db, (metadata,))


async def migrate(db: Database, model: Model) -> list[str]:
    """Bring the database up to the model; safe to run concurrently from several processes."""
    return await _run(db, (event_metadata, config_metadata, yjs_metadata, model.metadata))
