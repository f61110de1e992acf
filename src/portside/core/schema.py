"""Schema documents in Daptin's format, parsed into typed declarations.

Keys are matched case-insensitively and without underscores, so `TableName`, `tablename`, `table_name`
all work. Table and column names are normalised to snake_case. Parsing never touches the database.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from portside.core import masks
from portside.core.declarations import (
    ActionDef,
    Column,
    ForeignKey,
    GroupGrant,
    Outcome,
    Relation,
    SchemaDoc,
    Table,
    TagRule,
)
from portside.errors import SchemaError
from portside.tools import jsonutil

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{1,62}$")  # tables, relation names
COLUMN_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")  # a column may be one letter
RELATION_KINDS = {"belongs_to", "has_one", "has_many", "has_many_and_belongs_to_many"}
MAX_SCHEMA_BYTES = 2 * 1024 * 1024
__all__ = [
    "SCHEMA_GLOBS",
    "ActionDef",
    "Column",
    "ForeignKey",
    "GroupGrant",
    "Outcome",
    "Relation",
    "SchemaDoc",
    "Table",
    "TagRule",
    "discover",
    "load_files",
    "parse_document",
    "parse_text",
    "snake",
]


def snake(name: str) -> str:
    s = re.sub(r"[\s\-]+", "_", name.strip())
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", s)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    return s.lower()


def _norm(key: str) -> str:
    return key.replace("_", "").lower()


class Keys:
    """Case-insensitive view of a schema mapping."""

    def __init__(self, raw: Any, where: str):
        if not isinstance(raw, dict):
            raise SchemaError(f"{where}: expected an object, got {type(raw).__name__}")
        self.where = where
        self.raw: dict[str, Any] = {_norm(str(k)): v for k, v in raw.items()}

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(_norm(key), default)

    def text(self, key: str, default: str = "") -> str:
        v = self.get(key)
        if v is None:
            return default
        if isinstance(v, bool | dict | list):
            raise SchemaError(f"{self.where}: {key} must be a string")
        return str(v)

    def flag(self, key: str, default: bool = False) -> bool:
        v = self.get(key)
        if v is None:
            return default
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.lower() in {"true", "1", "yes"}:
            return True
        if isinstance(v, str) and v.lower() in {"false", "0", "no", ""}:
            return False
        if isinstance(v, int):
            return bool(v)
        raise SchemaError(f"{self.where}: {key} must be a boolean")

    def integer(self, key: str, default: int = 0) -> int:
        v = self.get(key)
        if v is None or v == "":
            return default
        if isinstance(v, bool):
            raise SchemaError(f"{self.where}: {key} must be an integer")
        try:
            return int(v)
        except (TypeError, ValueError, OverflowError):
            raise SchemaError(f"{self.where}: {key} must be an integer") from None

    def mask(self, key: str) -> int:
        """A permission mask: an integer in 0..2^22-1."""
        value = self.integer(key)
        if not masks.is_mask(value):
            raise SchemaError(f"{self.where}: {key} must be a permission mask between 0 and 4194303")
        return value

    def items(self, key: str) -> list[Any]:
        v = self.get(key)
        if v is None:
            return []
        if not isinstance(v, list):
            raise SchemaError(f"{self.where}: {key} must be a list")
        return v


def _name(value: str, where: str, *, pattern: re.Pattern[str] = NAME_RE) -> str:
    name = snake(value)
    if not pattern.fullmatch(name):
        size = "2-63" if pattern is NAME_RE else "1-63"
        raise SchemaError(f"{where}: invalid name {value!r} (letters, digits and _; {size} chars)")
    return name


def parse_column(raw: Any, where: str, *, keep_name: bool = False) -> Column:
    """A column; `keep_name` keeps an action InField's name as written (`passwordConfirm`)."""
    k = Keys(raw, where)
    cname = k.text("ColumnName") or k.text("Name")
    if not cname:
        raise SchemaError(f"{where}: column needs ColumnName or Name")
    if keep_name and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,99}", cname):
        raise SchemaError(f"{where}: invalid field name {cname!r}")
    column_name = cname if keep_name else _name(cname, where, pattern=COLUMN_RE)
    fk = None
    if k.flag("IsForeignKey") and k.get("ForeignKeyData") is not None:
        f = Keys(k.get("ForeignKeyData"), f"{where}.ForeignKeyData")
        fk = ForeignKey(f.text("DataSource"), f.text("Namespace"), f.text("KeyName") or "id")
    default = k.get("DefaultValue")
    options = []
    for i, o in enumerate(k.items("Options")):
        ok = Keys(o, f"{where}.Options[{i}]")
        options.append({"ValueType": ok.text("ValueType"), "Value": ok.text("Value"), "Label": ok.text("Label")})
    return Column(
        column_name=column_name,
        name=k.text("Name") or column_name,
        column_type=(k.text("ColumnType") or "label").strip(),
        data_type=k.text("DataType").strip(),
        is_nullable=k.flag("IsNullable", True),
        is_indexed=k.flag("IsIndexed"),
        is_unique=k.flag("IsUnique"),
        is_primary_key=k.flag("IsPrimaryKey"),
        is_auto_increment=k.flag("IsAutoIncrement"),
        default_value=None if default is None else str(default),
        foreign_key=fk,
        exclude_from_api=k.flag("ExcludeFromApi"),
        options=options,
        description=k.text("ColumnDescription"),
    )


def parse_relation(raw: Any, where: str) -> Relation:
    k = Keys(raw, where)
    kind = k.text("Relation").strip().lower()
    if kind not in RELATION_KINDS:
        raise SchemaError(f"{where}: Relation must be one of {sorted(RELATION_KINDS)}, got {kind!r}")
    sn, on = k.text("SubjectName"), k.text("ObjectName")
    return Relation(
        subject=_name(k.text("Subject"), where),
        relation=kind,
        object=_name(k.text("Object"), where),
        subject_name=_name(sn, where) if sn else "",
        object_name=_name(on, where) if on else "",
        columns=[parse_column(c, f"{where}.Columns[{i}]") for i, c in enumerate(k.items("Columns"))],
    )


def _tag_rules(items: list[Any], where: str, *, keep_name: bool = False) -> list[TagRule]:
    out = []
    for i, v in enumerate(items):
        k = Keys(v, f"{where}[{i}]")
        name = k.text("ColumnName")
        out.append(TagRule(name if keep_name else snake(name), k.text("Tags")))
    return out


def _groups(items: list[Any], where: str) -> list[GroupGrant]:
    out = []
    for i, g in enumerate(items):
        if isinstance(g, str):
            out.append(GroupGrant(g))
        else:
            k = Keys(g, f"{where}[{i}]")
            if not k.text("Name"):
                raise SchemaError(f"{where}[{i}]: a group needs a Name")
            out.append(GroupGrant(k.text("Name"), k.mask("Permission")))
    return out


def parse_table(raw: Any, where: str) -> Table:
    k = Keys(raw, where)
    name = _name(k.text("TableName"), where)
    where = f"{where}({name})"
    cols = [parse_column(c, f"{where}.Columns[{i}]") for i, c in enumerate(k.items("Columns"))]
    seen: set[str] = set()
    for c in cols:
        if c.column_name in seen:
            raise SchemaError(f"{where}: duplicate column {c.column_name!r}")
        seen.add(c.column_name)
    rels = [parse_relation(r, f"{where}.Relations[{i}]") for i, r in enumerate(k.items("Relations"))]
    composite = [[snake(str(c)) for c in ks] for ks in k.items("CompositeKeys") if isinstance(ks, list)]
    indexes = [[snake(str(c)) for c in ks] for ks in k.items("Indexes") if isinstance(ks, list)]
    return Table(
        table_name=name,
        columns=cols,
        relations=rels,
        default_permission=k.mask("DefaultPermission"),
        permission=k.mask("Permission"),
        default_groups=_groups(k.items("DefaultGroups"), f"{where}.DefaultGroups"),
        access_groups=_groups(k.items("AccessGroups"), f"{where}.AccessGroups"),
        default_order=k.text("DefaultOrder"),
        is_hidden=k.flag("IsHidden"),
        validations=_tag_rules(k.items("Validations"), f"{where}.Validations"),
        conformations=_tag_rules(k.items("Conformations"), f"{where}.Conformations"),
        composite_keys=composite,
        indexes=indexes,
        icon=k.text("Icon"),
        description=k.text("TableDescription"),
    )


def parse_outcome(raw: Any, where: str) -> Outcome:
    k = Keys(raw, where)
    attrs = k.get("Attributes") or {}
    if not isinstance(attrs, dict):
        raise SchemaError(f"{where}: Attributes must be an object")
    cond = k.get("Condition")
    return Outcome(
        type=k.text("Type"),
        method=k.text("Method").upper(),
        attributes=attrs,
        reference=k.text("Reference"),
        condition="" if cond is None else str(cond),
        skip_in_response=k.flag("SkipInResponse"),
        continue_on_error=k.flag("ContinueOnError"),
    )


def parse_action(raw: Any, where: str) -> ActionDef:
    k = Keys(raw, where)
    name = k.text("Name")
    if not name or len(name) > 100:
        raise SchemaError(f"{where}: action needs a Name")
    return ActionDef(
        name=name,
        label=k.text("Label") or name,
        on_type=_name(k.text("OnType"), where),
        instance_optional=k.flag("InstanceOptional", True),
        in_fields=[
            parse_column(c, f"{where}.InFields[{i}]", keep_name=True) for i, c in enumerate(k.items("InFields"))
        ],
        out_fields=[parse_outcome(o, f"{where}.OutFields[{i}]") for i, o in enumerate(k.items("OutFields"))],
        validations=_tag_rules(k.items("Validations"), f"{where}.Validations", keep_name=True),
        conformations=_tag_rules(k.items("Conformations"), f"{where}.Conformations", keep_name=True),
        permission=k.mask("Permission"),
        request_subject_relations=[str(x) for x in k.items("RequestSubjectRelations")],
    )


def parse_document(raw: Any, source: str = "<schema>") -> SchemaDoc:
    if raw is None:
        return SchemaDoc(source=source)
    k = Keys(raw, source)
    return SchemaDoc(
        tables=[parse_table(t, f"{source}: Tables[{i}]") for i, t in enumerate(k.items("Tables"))],
        relations=[parse_relation(r, f"{source}: Relations[{i}]") for i, r in enumerate(k.items("Relations"))],
        actions=[parse_action(a, f"{source}: Actions[{i}]") for i, a in enumerate(k.items("Actions"))],
        source=source,
    )


def parse_text(text: str | bytes, filename: str) -> SchemaDoc:
    """Parse a .yaml/.yml/.json schema document."""
    if len(text) > MAX_SCHEMA_BYTES:
        raise SchemaError(f"{filename}: schema file larger than {MAX_SCHEMA_BYTES} bytes")
    lower = filename.lower()
    try:
        if lower.endswith(".json"):
            raw = jsonutil.loads(text)
        elif lower.endswith((".yaml", ".yml")):
            raw = yaml.safe_load(text)
        else:
            raise SchemaError(f"{filename}: unsupported schema extension (use .yaml, .yml or .json)")
    except RecursionError:
        raise SchemaError(f"{filename}: nested too deeply") from None
    except (yaml.YAMLError, jsonutil.JSONError) as exc:
        raise SchemaError(f"{filename}: {exc}") from None
    return parse_document(raw, filename)


SCHEMA_GLOBS = ("schema_*.yaml", "schema_*.yml", "schema_*.json")


def discover(data_dir: Path, extra: tuple[str, ...]) -> list[Path]:
    """Schema files in the data dir plus the given files/folders, in a stable order."""
    found: list[Path] = []
    roots = [data_dir]
    for p in extra:
        path = Path(p)
        if path.is_dir():
            roots.append(path)
        elif path.is_file():
            found.append(path)
        else:
            raise SchemaError(f"--schema {p}: no such file or folder")
    for root in roots:
        if root.is_dir():
            for g in SCHEMA_GLOBS:
                found.extend(sorted(root.glob(g)))
    seen: set[Path] = set()
    out = []
    for f in found:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            out.append(f)
    return out


def load_files(paths: list[Path]) -> list[SchemaDoc]:
    return [parse_text(p.read_bytes(), str(p)) for p in paths]
