"""The live data model: merged table declarations, generated relations, and SQLAlchemy tables.

A Model is an immutable snapshot. Applying a schema builds a new Model and swaps it in; requests that
hold the old one finish with it.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Select

from portside.core import fieldtypes
from portside.core.schema import ActionDef, Column, ForeignKey, Relation, SchemaDoc, Table
from portside.errors import Kind, NotFound, SchemaError

OWNER_COLUMN = "user_account_id"
MEMBERSHIP = "user_account_user_account_id_has_usergroup_usergroup_id"  # users in groups
STANDARD = ("id", "version", "created_at", "updated_at", "reference_id", "permission")
NO_OWNER = frozenset({"usergroup"})
_versions = itertools.count(1)


def standard_columns() -> list[Column]:
    return [
        Column(
            "id",
            "id",
            data_type="INTEGER",
            is_primary_key=True,
            is_auto_increment=True,
            is_nullable=False,
            exclude_from_api=True,
        ),
        Column("version", "measurement", data_type="INTEGER", default_value="1", exclude_from_api=True),
        Column("created_at", "datetime", data_type="timestamp", is_indexed=True),
        Column("updated_at", "datetime", data_type="timestamp", is_indexed=True),
        Column("reference_id", "alias", data_type="varchar(36)", is_unique=True, is_nullable=False),
        Column("permission", "value", data_type="int(11)"),
    ]


def index_name(table: str, col: str, kind: str) -> str:
    digest = hashlib.md5(f"index_{table}_{col}_{kind}".encode()).hexdigest()
    return ("u" if kind == "unique" else "i") + digest


def has_owner(table: str) -> bool:
    return table not in NO_OWNER and "_has_" not in table and not table.endswith("_audit")


@dataclass(frozen=True)
class RelSpec:
    """One relationship of a table as seen in its JSON:API resource objects."""

    name: str
    target: str
    many: bool
    fk_column: str | None = None  # to-one stored on this table
    join_table: str | None = None  # many via a join table
    join_self: str | None = None
    join_target: str | None = None
    reverse_fk: str | None = None  # many: the target's FK column points at this table


@dataclass
class TableModel:
    decl: Table  # merged declaration as written (user columns + relations), stored in world
    columns: dict[str, Column]
    sa: sa.Table
    owner: bool
    group_join: str | None
    fks: dict[str, str]  # FK column -> target table (values on the wire are target refs)
    relations: dict[str, RelSpec] = field(default_factory=dict)
    join_pair: tuple[tuple[str, str], tuple[str, str]] | None = None  # ((col, table), (col, table))
    select_cache: dict[tuple[str, ...] | None, tuple[Select[Any], Any]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.decl.table_name

    @property
    def is_join(self) -> bool:
        return self.join_pair is not None

    def api_columns(self) -> list[Column]:
        return [c for c in self.columns.values() if not c.exclude_from_api and c.column_name != "id"]


class Model:
    def __init__(
        self,
        tables: dict[str, TableModel],
        actions: dict[tuple[str, str], ActionDef],
        metadata: sa.MetaData,
        decls: dict[str, Table],
        relations: list[Relation],
    ):
        self.version = next(_versions)  # identifies this snapshot in caches keyed by model
        self.tables = tables
        self.actions = actions
        self.metadata = metadata
        self.decls = decls
        self.relations = relations

    def table(self, name: str) -> TableModel:
        t = self.tables.get(name)
        if t is None:
            raise NotFound(f"no such table: {name}", kind=Kind.TABLE_NOT_FOUND)
        return t

    def action(self, on_type: str, name: str) -> ActionDef:
        a = self.actions.get((on_type, name))
        if a is None:
            raise NotFound(f"no such action: {on_type}/{name}")
        return a


def _merge_table(into: Table, new: Table) -> None:
    have = {c.column_name for c in into.columns}
    for c in new.columns:
        if c.column_name not in have:
            into.columns.append(c)
            have.add(c.column_name)
        else:  # later declarations may refine a column (type, flags)
            idx = next(i for i, x in enumerate(into.columns) if x.column_name == c.column_name)
            into.columns[idx] = c
    into.relations.extend(new.relations)
    for attr in ("default_permission", "permission", "default_order", "icon", "description"):
        if getattr(new, attr):
            setattr(into, attr, getattr(new, attr))
    into.is_hidden = into.is_hidden or new.is_hidden
    for attr in ("default_groups", "access_groups", "validations", "conformations", "composite_keys", "indexes"):
        if getattr(new, attr):
            setattr(into, attr, getattr(new, attr))


def merge_docs(
    docs: list[SchemaDoc],
) -> tuple[dict[str, Table], list[Relation], dict[tuple[str, str], ActionDef]]:
    decls: dict[str, Table] = {}
    relations: dict[str, Relation] = {}
    actions: dict[tuple[str, str], ActionDef] = {}
    for doc in docs:
        for t in doc.tables:
            if t.table_name in decls:
                _merge_table(decls[t.table_name], copy.deepcopy(t))
            else:
                decls[t.table_name] = copy.deepcopy(t)
            for r in t.relations:
                relations.setdefault(r.dedup_key, r)
            decls[t.table_name].relations = []
        for r in doc.relations:
            relations.setdefault(r.dedup_key, r)
        for a in doc.actions:
            actions[(a.on_type, a.name)] = a
    for r in relations.values():
        for end in (r.subject, r.object):
            if end not in decls:
                raise SchemaError(f"relation {r.subject} {r.relation} {r.object}: unknown table {end!r}")
    return decls, list(relations.values()), actions


def reserved(table: str, column: str) -> bool:
    """Column names a declaration cannot take in `table`: the standard columns and, in owned tables, the owner."""
    return column in STANDARD or (column == OWNER_COLUMN and has_owner(table))


def check_reserved(doc: SchemaDoc) -> None:
    """A new declaration may not name a column like a standard or the owner column (SchemaError, 400).

    Declarations stored or loaded from files before this rule are read with the standard column winning."""
    for t in doc.tables:
        for c in t.columns:
            if reserved(t.table_name, c.column_name):
                raise SchemaError(f"{t.table_name}: column {c.column_name!r} is a standard column; choose another name")


def _check_names(r: Relation) -> None:
    """A relation's column must not take the name of a standard column or of the owner column."""
    names = [r.object_name] if r.kind == "fk" else [r.subject_name, r.object_name]
    for name in names:
        owner_clash = r.kind == "fk" and name == OWNER_COLUMN and r.object != "user_account" and has_owner(r.subject)
        if name in STANDARD or owner_clash:
            raise SchemaError(
                f"relation {r.subject} {r.relation} {r.object}: column name {name!r} is a standard column; "
                "choose another SubjectName/ObjectName"
            )


def _fk_column(name: str, target: str) -> Column:
    return Column(name, "alias", data_type="int(11)", is_indexed=True, foreign_key=ForeignKey("self", target, "id"))


def build(docs: list[SchemaDoc]) -> Model:
    """Merge schema documents (system first) into a Model with generated relations and tables."""
    decls, user_relations, actions = merge_docs(docs)
    relations = list(user_relations)
    for name in list(decls):
        if has_owner(name):
            relations.append(Relation(name, "belongs_to", "user_account", object_name=OWNER_COLUMN))
            relations.append(Relation(name, "has_many", "usergroup"))

    columns: dict[str, dict[str, Column]] = {}
    for name, decl in decls.items():
        cols = {c.column_name: c for c in standard_columns()}
        for c in decl.columns:
            if reserved(name, c.column_name):
                continue  # the standard column (or owner column) wins; uploads are refused (check_reserved)
            cols[c.column_name] = c
        columns[name] = cols

    join_tables: dict[str, tuple[Relation, list[Column]]] = {}
    # (priority, table, spec): a table's own FK column wins a name, then its own join relations, then
    # the reverse views from other tables; a lower-priority relation with a taken name is not exposed
    found: list[tuple[int, str, RelSpec]] = []
    for r in user_relations:
        _check_names(r)
    for r in relations:
        if r.kind == "fk":
            columns[r.subject].setdefault(r.object_name, _fk_column(r.object_name, r.object))
            found.append((0, r.subject, RelSpec(r.object_name, r.object, False, fk_column=r.object_name)))
            if r.object_name != OWNER_COLUMN:
                many = r.relation == "belongs_to"
                found.append((2, r.object, RelSpec(r.subject_name, r.subject, many, reverse_fk=r.object_name)))
            continue
        if r.subject_name == r.object_name:
            raise SchemaError(
                f"relation {r.subject} {r.relation} {r.object}: SubjectName and ObjectName are both "
                f"{r.subject_name!r}; give them different names"
            )
        jt = r.join_table
        join_tables[jt] = (r, r.columns)
        found.append(
            (
                1,
                r.subject,
                RelSpec(
                    r.object_name, r.object, True, join_table=jt, join_self=r.subject_name, join_target=r.object_name
                ),
            )
        )
        if r.object != "usergroup":
            found.append(
                (
                    2,
                    r.object,
                    RelSpec(
                        r.subject_name,
                        r.subject,
                        True,
                        join_table=jt,
                        join_self=r.object_name,
                        join_target=r.subject_name,
                    ),
                )
            )
    rels: dict[str, dict[str, RelSpec]] = {n: {} for n in decls}
    for _, table, spec in sorted(found, key=lambda f: f[0]):
        rels[table].setdefault(spec.name, spec)

    tables: dict[str, TableModel] = {}
    metadata = sa.MetaData()
    known = frozenset(decls) | frozenset(join_tables)
    for name, decl in decls.items():
        cols = columns[name]
        fks = {
            c.column_name: c.foreign_key.namespace
            for c in cols.values()
            if c.foreign_key and c.foreign_key.data_source == "self"
        }
        group_join = f"{name}_{name}_id_has_usergroup_usergroup_id" if has_owner(name) else None
        tables[name] = TableModel(
            decl,
            cols,
            _sa_table(metadata, name, cols, decl.composite_keys, known, decl.indexes),
            has_owner(name),
            group_join,
            fks,
            rels[name],
        )
    for jt, (r, extra) in join_tables.items():
        cols = {c.column_name: c for c in standard_columns()}
        cols[r.subject_name] = _fk_column(r.subject_name, r.subject)
        cols[r.object_name] = _fk_column(r.object_name, r.object)
        for c in extra:
            cols.setdefault(c.column_name, c)
        decl = decls.get(jt) or Table(jt, default_permission=0)
        decl.columns = [c for c in cols.values() if c.column_name not in STANDARD]
        keys = [[r.subject_name, r.object_name]]
        fks = {r.subject_name: r.subject, r.object_name: r.object}
        tm = TableModel(
            decl,
            cols,
            _sa_table(metadata, jt, cols, keys, known),
            False,
            None,
            fks,
            {},
            ((r.subject_name, r.subject), (r.object_name, r.object)),
        )
        tm.relations = {
            r.subject_name: RelSpec(r.subject_name, r.subject, False, fk_column=r.subject_name),
            r.object_name: RelSpec(r.object_name, r.object, False, fk_column=r.object_name),
        }
        if r.object == "usergroup":
            sa.Index(f"g{hashlib.md5(jt.encode()).hexdigest()}", tm.sa.c[r.object_name], tm.sa.c[r.subject_name])
        tables[jt] = tm
    for name, tm in tables.items():
        for key, key_sets in (("CompositeKeys", tm.decl.composite_keys), ("Indexes", tm.decl.indexes)):
            for key_set in key_sets:
                unknown = [k for k in key_set if k not in tm.columns]
                if unknown:
                    raise SchemaError(f"{name}: {key} names unknown column {unknown[0]!r}")
    for on_type, aname in actions:
        if on_type not in tables:
            raise SchemaError(f"action {aname}: OnType {on_type!r} is not a table")
    return Model(tables, actions, metadata, decls, user_relations)


def fk_name(table: str, col: str) -> str:
    return "f" + hashlib.md5(f"fk_{table}_{col}".encode()).hexdigest()


def _sa_table(
    metadata: sa.MetaData,
    name: str,
    cols: dict[str, Column],
    composite: list[list[str]],
    known: frozenset[str],
    indexes: Sequence[list[str]] = (),
) -> sa.Table:
    sa_cols: list[sa.Column[object]] = []
    for c in cols.values():
        if c.column_name == "id":
            sa_cols.append(sa.Column("id", sa.Integer, primary_key=True, autoincrement=True))
            continue
        nullable = c.is_nullable and c.column_name != "reference_id"
        col_type = fieldtypes.sa_type(c)
        fk = c.foreign_key
        # references to rows of this database are enforced by it (integer ids of a table of the model)
        args: list[sa.ForeignKey] = []
        if fk is not None and fk.data_source == "self" and fk.namespace in known and isinstance(col_type, sa.Integer):
            args.append(sa.ForeignKey(f"{fk.namespace}.id", name=fk_name(name, c.column_name)))
        sa_cols.append(sa.Column(c.column_name, col_type, *args, nullable=nullable))
    # MySQL/MariaDB collation: chosen per server at creation (`migrate.binary_collation`), never *_ci;
    # sqlite_autoincrement: SQLite would otherwise hand a deleted highest id to the next row
    table = sa.Table(name, metadata, *sa_cols, mysql_charset="utf8mb4", sqlite_autoincrement=True)
    for c in cols.values():
        if c.column_name == "id":
            continue
        kw: dict[str, Any] = {"mysql_length": 255} if isinstance(table.c[c.column_name].type, sa.Text) else {}
        if c.is_unique or c.is_indexed:
            kind = "unique" if c.is_unique else "index"
            sa.Index(index_name(name, c.column_name, kind), table.c[c.column_name], unique=c.is_unique, **kw)
    for keys in composite:
        if all(k in table.c for k in keys):
            sa.Index(index_name(name, ",".join(keys), "unique"), *(table.c[k] for k in keys), unique=True)
    for keys in indexes:
        if all(k in table.c for k in keys):
            sa.Index(index_name(name, ",".join(keys), "index"), *(table.c[k] for k in keys))
    return table
