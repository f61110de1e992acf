"""Schema declarations: tables, columns, relations and actions as Daptin describes them.

`to_json` gives Daptin's PascalCase shape (as stored in `world.world_schema_json`). Parsing lives in
`core.schema`, which re-exports these classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ForeignKey:
    data_source: str  # "self" or "cloud_store"
    namespace: str
    key_name: str


@dataclass
class Column:
    column_name: str
    column_type: str = "label"
    name: str = ""
    data_type: str = ""
    is_nullable: bool = True
    is_indexed: bool = False
    is_unique: bool = False
    is_primary_key: bool = False
    is_auto_increment: bool = False
    default_value: str | None = None
    foreign_key: ForeignKey | None = None
    exclude_from_api: bool = False
    options: list[dict[str, Any]] = field(default_factory=list)
    description: str = ""

    @property
    def family(self) -> str:
        return self.column_type.split(".", 1)[0]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Name": self.name or self.column_name,
            "ColumnName": self.column_name,
            "ColumnType": self.column_type,
            "DataType": self.data_type,
            "IsNullable": self.is_nullable,
            "IsIndexed": self.is_indexed,
            "IsUnique": self.is_unique,
            "ExcludeFromApi": self.exclude_from_api,
        }
        if self.is_primary_key:
            out["IsPrimaryKey"] = True
        if self.is_auto_increment:
            out["IsAutoIncrement"] = True
        if self.default_value is not None:
            out["DefaultValue"] = self.default_value
        if self.foreign_key:
            out["IsForeignKey"] = True
            out["ForeignKeyData"] = {
                "DataSource": self.foreign_key.data_source,
                "Namespace": self.foreign_key.namespace,
                "KeyName": self.foreign_key.key_name,
            }
        if self.options:
            out["Options"] = self.options
        if self.description:
            out["ColumnDescription"] = self.description
        return out


@dataclass
class Relation:
    subject: str
    relation: str
    object: str
    subject_name: str = ""
    object_name: str = ""
    columns: list[Column] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.subject_name = self.subject_name or f"{self.subject}_id"
        self.object_name = self.object_name or f"{self.object}_id"

    @property
    def kind(self) -> str:
        """has_one and belongs_to store an FK column; the two many kinds use a join table."""
        return "fk" if self.relation in {"belongs_to", "has_one"} else "join"

    @property
    def join_table(self) -> str:
        return f"{self.subject}_{self.subject_name}_has_{self.object}_{self.object_name}"

    @property
    def dedup_key(self) -> str:
        kind = "belongs_to" if self.kind == "fk" else "has_many"
        return f"{self.subject}-{self.object_name}-{kind}-{self.subject_name}"

    def to_json(self) -> dict[str, Any]:
        return {
            "Subject": self.subject,
            "Relation": self.relation,
            "Object": self.object,
            "SubjectName": self.subject_name,
            "ObjectName": self.object_name,
        }


@dataclass
class TagRule:
    column_name: str
    tags: str


@dataclass
class GroupGrant:
    name: str
    permission: int = 0


@dataclass
class Table:
    table_name: str
    columns: list[Column] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    default_permission: int = 0
    permission: int = 0
    default_groups: list[GroupGrant] = field(default_factory=list)
    access_groups: list[GroupGrant] = field(default_factory=list)
    default_order: str = ""
    is_hidden: bool = False
    validations: list[TagRule] = field(default_factory=list)
    conformations: list[TagRule] = field(default_factory=list)
    composite_keys: list[list[str]] = field(default_factory=list)
    indexes: list[list[str]] = field(default_factory=list)  # Portside: non-unique multi-column indexes
    icon: str = ""
    description: str = ""

    @property
    def is_join_table(self) -> bool:
        return "_has_" in self.table_name

    def to_json(self) -> dict[str, Any]:
        return {
            "TableName": self.table_name,
            "TableDescription": self.description,
            "Columns": [c.to_json() for c in self.columns],
            "DefaultPermission": self.default_permission,
            "Permission": self.permission,
            "DefaultGroups": [{"Name": g.name, "Permission": g.permission} for g in self.default_groups],
            "AccessGroups": [{"Name": g.name, "Permission": g.permission} for g in self.access_groups],
            "DefaultOrder": self.default_order,
            "IsHidden": self.is_hidden,
            "IsTopLevel": not self.is_join_table,
            "IsJoinTable": self.is_join_table,
            "Validations": [{"ColumnName": v.column_name, "Tags": v.tags} for v in self.validations],
            "Conformations": [{"ColumnName": v.column_name, "Tags": v.tags} for v in self.conformations],
            "CompositeKeys": self.composite_keys,
            "Indexes": self.indexes,
            "Icon": self.icon,
        }


@dataclass
class Outcome:
    type: str
    method: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    reference: str = ""
    condition: str = ""
    skip_in_response: bool = False
    continue_on_error: bool = False


@dataclass
class ActionDef:
    name: str
    on_type: str
    label: str = ""
    instance_optional: bool = True
    in_fields: list[Column] = field(default_factory=list)
    out_fields: list[Outcome] = field(default_factory=list)
    validations: list[TagRule] = field(default_factory=list)
    conformations: list[TagRule] = field(default_factory=list)
    permission: int = 0
    request_subject_relations: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "Name": self.name,
            "Label": self.label or self.name,
            "OnType": self.on_type,
            "InstanceOptional": self.instance_optional,
            "InFields": [c.to_json() for c in self.in_fields],
            "OutFields": [
                {
                    "Type": o.type,
                    "Method": o.method,
                    "Attributes": o.attributes,
                    "Reference": o.reference,
                    "Condition": o.condition,
                    "SkipInResponse": o.skip_in_response,
                    "ContinueOnError": o.continue_on_error,
                }
                for o in self.out_fields
            ],
            "Validations": [{"ColumnName": v.column_name, "Tags": v.tags} for v in self.validations],
            "Conformations": [{"ColumnName": v.column_name, "Tags": v.tags} for v in self.conformations],
            "Permission": self.permission,
        }


@dataclass
class SchemaDoc:
    tables: list[Table] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    actions: list[ActionDef] = field(default_factory=list)
    source: str = ""
