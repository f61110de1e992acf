"""Additive, live migration: create missing tables, columns and indexes. Never drops or alters."""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from portside import log
from portside.core.config import config_metadata
from portside.core.db import Database
from portside.core.events import event_metadata
from portside.core.model import Model
from portside.core.yjs_store import yjs_metadata

logger = log.get("migrate")


def _migrate_sync(conn: Connection, metadata: sa.MetaData) -> list[str]:
    insp = sa.inspect(conn)
    existing = set(insp.get_table_names())
    done: list[str] = []
    prep = conn.dialect.identifier_preparer
    sqlite = conn.dialect.name == "sqlite"
    # PostgreSQL and MariaDB check a foreign key's target when it is declared: constraints are added after
    # every new table exists (tables may refer to each other in a cycle); SQLite declares them inline
    constraints: list[sa.ForeignKeyConstraint] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sa.exc.SAWarning)  # "cannot sort tables": cycles are fine here
        ordered = metadata.sorted_tables
    for table in ordered:
        if table.name not in existing:
            if sqlite:
                table.create(conn)
            else:
                conn.execute(sa.schema.CreateTable(table, include_foreign_key_constraints=[]))
                for index in table.indexes:
                    index.create(conn)
                constraints += table.foreign_key_constraints
            done.append(f"create table {table.name}")
            continue
        have_cols = {c["name"] for c in insp.get_columns(table.name)}
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


async def migrate_base(db: Database) -> list[str]:
    """The tables every process needs before anything else: the event log and `_config`."""
    async with db.ddl_lock() as conn:
        done: list[str] = []
        for md in (event_metadata, config_metadata, yjs_metadata):
            done += await conn.run_sync(_migrate_sync, md)
    return done


async def migrate(db: Database, model: Model) -> list[str]:
    """Bring the database up to the model; safe to run concurrently from several processes."""
    async with db.ddl_lock() as conn:
        done: list[str] = []
        for md in (event_metadata, config_metadata, yjs_metadata, model.metadata):
            done += await conn.run_sync(_migrate_sync, md)
    for line in done:
        logger.info("%s", line)
    return done
