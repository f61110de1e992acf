"""Schema documents (core spec §1): key matching, name normalisation, relations, actions, groups, and
hostile input, which must only ever raise SchemaError."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from portside.core.schema import (
    GroupGrant,
    Relation,
    SchemaDoc,
    discover,
    parse_document,
    parse_text,
    snake,
)
from portside.errors import SchemaError


def one_table(table: dict[str, Any]) -> SchemaDoc:
    return parse_document({"Tables": [table]}, "test")


# ---------------------------------------------------------------- snake


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("TodoItem", "todo_item"),
        ("ColumnName", "column_name"),
        ("todoItem", "todo_item"),
        ("HTTPServer", "http_server"),
        ("todo item", "todo_item"),
        ("Todo-Item", "todo_item"),
        ("  Todo Item  ", "todo_item"),
        ("already_snake", "already_snake"),
        ("Item2Go", "item2_go"),
        ("todo", "todo"),
    ],
)
def test_snake(given: str, expected: str) -> None:
    assert snake(given) == expected


# ---------------------------------------------------------------- case-insensitive keys


@pytest.mark.parametrize("key", ["TableName", "tablename", "table_name", "TABLENAME", "tableName", "Table_Name"])
def test_table_name_key_is_case_and_underscore_insensitive(key: str) -> None:
    doc = parse_document({"Tables": [{key: "todo"}]})
    assert [t.table_name for t in doc.tables] == ["todo"]


@pytest.mark.parametrize("tables_key", ["Tables", "tables", "TABLES"])
@pytest.mark.parametrize("columns_key", ["Columns", "columns", "COLUMNS"])
@pytest.mark.parametrize("colname_key", ["ColumnName", "columnname", "column_name"])
def test_nested_keys_are_case_insensitive(tables_key: str, columns_key: str, colname_key: str) -> None:
    doc = parse_document(
        {
            tables_key: [
                {
                    "tablename": "todo",
                    columns_key: [{colname_key: "title", "columntype": "label", "is_unique": True}],
                    "defaultpermission": 16256,
                    "IS_HIDDEN": "true",
                }
            ]
        }
    )
    (t,) = doc.tables
    (c,) = t.columns
    assert (c.column_name, c.column_type, c.is_unique) == ("title", "label", True)
    assert t.default_permission == 16256
    assert t.is_hidden is True


def test_top_level_relations_and_actions_keys_case_insensitive() -> None:
    doc = parse_document(
        {
            "tables": [{"tablename": "todo"}],
            "relations": [{"subject": "todo", "relation": "has_many", "object": "tag"}],
            "actions": [{"name": "mark", "ontype": "todo"}],
        }
    )
    assert [(r.subject, r.relation, r.object) for r in doc.relations] == [("todo", "has_many", "tag")]
    assert [(a.name, a.on_type) for a in doc.actions] == [("mark", "todo")]


# ---------------------------------------------------------------- names


def test_table_name_is_snake_cased() -> None:
    assert one_table({"TableName": "TodoItem"}).tables[0].table_name == "todo_item"


def test_column_with_only_name_gets_snake_column_name() -> None:
    (c,) = one_table({"TableName": "todo", "Columns": [{"Name": "DueDate"}]}).tables[0].columns
    assert c.column_name == "due_date"
    assert c.name == "DueDate"


def test_column_with_only_column_name_is_normalised_and_named_after_it() -> None:
    (c,) = one_table({"TableName": "todo", "Columns": [{"ColumnName": "IsDone"}]}).tables[0].columns
    assert c.column_name == "is_done"
    assert c.name == "is_done"


def test_column_name_wins_over_name() -> None:
    (c,) = one_table({"TableName": "todo", "Columns": [{"Name": "Shown", "ColumnName": "StoredAs"}]}).tables[0].columns
    assert (c.column_name, c.name) == ("stored_as", "Shown")


def test_column_defaults() -> None:
    (c,) = one_table({"TableName": "todo", "Columns": [{"Name": "title"}]}).tables[0].columns
    assert c.column_type == "label"
    assert c.data_type == ""
    assert c.is_nullable is True
    assert c.is_unique is False
    assert c.is_indexed is False
    assert c.default_value is None
    assert c.foreign_key is None


def test_column_flags_and_values() -> None:
    (c,) = (
        one_table(
            {
                "TableName": "todo",
                "Columns": [
                    {
                        "Name": "status",
                        "ColumnType": " enum ",
                        "DataType": "varchar(50)",
                        "IsNullable": False,
                        "IsIndexed": "yes",
                        "DefaultValue": 1,
                        "Options": [{"ValueType": "string", "Value": "open", "Label": "Open"}],
                        "IsForeignKey": True,
                        "ForeignKeyData": {"DataSource": "cloud_store", "Namespace": "local"},
                    }
                ],
            }
        )
        .tables[0]
        .columns
    )
    assert c.column_type == "enum"
    assert c.data_type == "varchar(50)"
    assert c.is_nullable is False
    assert c.is_indexed is True
    assert c.default_value == "1"
    assert c.options == [{"ValueType": "string", "Value": "open", "Label": "Open"}]
    assert c.foreign_key is not None
    assert (c.foreign_key.data_source, c.foreign_key.namespace, c.foreign_key.key_name) == (
        "cloud_store",
        "local",
        "id",
    )


@pytest.mark.parametrize(
    "columns",
    [
        [{"Name": "DueDate"}, {"ColumnName": "due_date"}],
        [{"ColumnName": "title"}, {"ColumnName": "Title"}],
        [{"Name": "todo item"}, {"Name": "TodoItem"}],
    ],
)
def test_duplicate_column_after_normalisation_is_an_error(columns: list[dict[str, Any]]) -> None:
    with pytest.raises(SchemaError, match="duplicate column"):
        one_table({"TableName": "todo", "Columns": columns})


def test_column_without_any_name_is_an_error() -> None:
    with pytest.raises(SchemaError, match="needs ColumnName or Name"):
        one_table({"TableName": "todo", "Columns": [{"ColumnType": "label"}]})


def test_table_level_rules() -> None:
    (t,) = one_table(
        {
            "TableName": "todo",
            "Validations": [{"ColumnName": "DueDate", "Tags": "required"}],
            "Conformations": [{"ColumnName": "title", "Tags": "trim"}],
            "CompositeKeys": [["Title", "ProjectId"]],
            "DefaultOrder": "-created_at",
            "Permission": "561441",
        }
    ).tables
    assert [(v.column_name, v.tags) for v in t.validations] == [("due_date", "required")]
    assert [(v.column_name, v.tags) for v in t.conformations] == [("title", "trim")]
    assert t.composite_keys == [["title", "project_id"]]
    assert t.default_order == "-created_at"
    assert t.permission == 561441
    assert t.is_join_table is False


# ---------------------------------------------------------------- relations


def test_relation_defaults_and_join_table_name() -> None:
    doc = parse_document({"Relations": [{"Subject": "Todo", "Relation": "has_many", "Object": "UserGroup"}]})
    (r,) = doc.relations
    assert (r.subject, r.object) == ("todo", "user_group")
    assert (r.subject_name, r.object_name) == ("todo_id", "user_group_id")
    assert r.kind == "join"
    assert r.join_table == "todo_todo_id_has_user_group_user_group_id"


def test_relation_kind_is_case_insensitive() -> None:
    (r,) = parse_document(
        {"Relations": [{"Subject": "todo", "Relation": " Belongs_To ", "Object": "project"}]}
    ).relations
    assert r.relation == "belongs_to"
    assert r.kind == "fk"


def test_relation_inside_table_and_explicit_names() -> None:
    (t,) = one_table(
        {
            "TableName": "task",
            "Relations": [
                {
                    "Subject": "task",
                    "Relation": "has_one",
                    "Object": "user_account",
                    "ObjectName": "AsUserId",
                    "SubjectName": "task_executed",
                }
            ],
        }
    ).tables
    assert t.relations == [Relation("task", "has_one", "user_account", "task_executed", "as_user_id")]


@pytest.mark.parametrize("kind", ["many_to_many", "has", "", "belongs to", "hasmany", "has_many_and_belongs"])
def test_bad_relation_kind_is_an_error(kind: str) -> None:
    with pytest.raises(SchemaError, match="Relation must be one of"):
        parse_document({"Relations": [{"Subject": "todo", "Relation": kind, "Object": "project"}]})


def test_relation_without_subject_is_an_error() -> None:
    with pytest.raises(SchemaError, match="invalid name"):
        parse_document({"Relations": [{"Relation": "has_many", "Object": "project"}]})


# ---------------------------------------------------------------- YAML / JSON


YAML_DOC = """
Tables:
  - TableName: TodoItem
    DefaultPermission: 16256
    Columns:
      - Name: Title
        ColumnType: label
        DataType: varchar(200)
        IsIndexed: true
      - ColumnName: done
        ColumnType: truefalse
        DataType: bool
        DefaultValue: "false"
    DefaultGroups:
      - users
Relations:
  - Subject: todo_item
    Relation: belongs_to
    Object: project
Actions:
  - Name: finish
    OnType: todo_item
    InstanceOptional: false
    InFields:
      - Name: reason
        ColumnType: label
    OutFields:
      - Type: todo_item
        Method: update
        Attributes:
          done: true
"""


def test_yaml_and_json_give_the_same_document() -> None:
    import yaml

    from_yaml = parse_text(YAML_DOC, "schema_todo.yaml")
    from_json = parse_text(json.dumps(yaml.safe_load(YAML_DOC)), "schema_todo.json")
    assert [t.to_json() for t in from_yaml.tables] == [t.to_json() for t in from_json.tables]
    assert [r.to_json() for r in from_yaml.relations] == [r.to_json() for r in from_json.relations]
    assert [a.to_json() for a in from_yaml.actions] == [a.to_json() for a in from_json.actions]

    (t,) = from_yaml.tables
    assert t.table_name == "todo_item"
    assert t.default_permission == 16256
    assert [(c.column_name, c.column_type, c.data_type) for c in t.columns] == [
        ("title", "label", "varchar(200)"),
        ("done", "truefalse", "bool"),
    ]
    assert t.columns[0].is_indexed is True
    assert t.columns[1].default_value == "false"
    assert t.default_groups == [GroupGrant("users", 0)]
    (a,) = from_yaml.actions
    assert (a.name, a.on_type, a.instance_optional) == ("finish", "todo_item", False)
    assert a.out_fields[0].method == "UPDATE"
    assert a.out_fields[0].attributes == {"done": True}
    assert from_yaml.source == "schema_todo.yaml"


@pytest.mark.parametrize("filename", ["s.yaml", "s.yml", "S.YAML", "dir/schema_x.Yml"])
def test_yaml_extensions(filename: str) -> None:
    assert [t.table_name for t in parse_text("Tables: [{TableName: todo}]", filename).tables] == ["todo"]


def test_bytes_input() -> None:
    assert parse_text(b"Tables: [{TableName: todo}]", "s.yaml").tables[0].table_name == "todo"
    assert parse_text(b'{"Tables": [{"TableName": "todo"}]}', "s.json").tables[0].table_name == "todo"


def test_empty_yaml_is_an_empty_document() -> None:
    doc = parse_text("", "s.yaml")
    assert (doc.tables, doc.relations, doc.actions) == ([], [], [])


@pytest.mark.parametrize("filename", ["s.toml", "s.txt", "s.hcl", "schema", "s.json.bak", "s.yaml~"])
def test_unsupported_extension_is_an_error(filename: str) -> None:
    with pytest.raises(SchemaError, match="unsupported schema extension"):
        parse_text("Tables: []", filename)


@pytest.mark.parametrize(
    "text",
    [
        "Tables: [",
        "Tables:\n  - TableName: todo\n - bad indent",
        "a: b: c",
        "\tTables: []",
        "Tables: [{TableName: todo}]\n---\nTables: []",  # two documents
        "? [a, b]\n: 1\n",  # unhashable key
        "Tables: [{TableName: !!python/object/apply:os.system [echo hi]}]",
        "Tables: *undefined_alias",
    ],
)
def test_malformed_yaml_is_a_schema_error(text: str) -> None:
    with pytest.raises(SchemaError):
        parse_text(text, "s.yaml")


@pytest.mark.parametrize("text", ["", "{", '{"Tables": [}', "[1,]", "NaN", b"\xff\xfe"])
def test_malformed_json_is_a_schema_error(text: str | bytes) -> None:
    with pytest.raises(SchemaError):
        parse_text(text, "s.json")


def test_invalid_utf8_yaml_is_a_schema_error() -> None:
    with pytest.raises(SchemaError):
        parse_text(b"Tables: [{TableName: \xff\xfe}]", "s.yaml")


# ---------------------------------------------------------------- actions


def test_action_in_fields_keep_their_names_as_written() -> None:
    (a,) = parse_document(
        {
            "Actions": [
                {
                    "Name": "signup",
                    "Label": "Sign up",
                    "OnType": "UserAccount",
                    "InFields": [
                        {"Name": "password", "ColumnType": "password"},
                        {"Name": "passwordConfirm", "ColumnType": "password"},
                        {"ColumnName": "Email", "ColumnType": "email"},
                    ],
                    "Validations": [{"ColumnName": "passwordConfirm", "Tags": "eqfield=password"}],
                    "Conformations": [{"ColumnName": "Email", "Tags": "email"}],
                    "OutFields": [{"Type": "user_account", "Method": "post", "Reference": "user"}],
                }
            ]
        }
    ).actions
    assert a.on_type == "user_account"
    assert a.label == "Sign up"
    assert a.instance_optional is True
    assert [f.column_name for f in a.in_fields] == ["password", "passwordConfirm", "Email"]
    assert [(v.column_name, v.tags) for v in a.validations] == [("passwordConfirm", "eqfield=password")]
    assert [(v.column_name, v.tags) for v in a.conformations] == [("Email", "email")]
    assert [(o.type, o.method, o.reference) for o in a.out_fields] == [("user_account", "POST", "user")]
    assert a.permission == 0


def test_action_label_defaults_to_name() -> None:
    (a,) = parse_document({"Actions": [{"Name": "go", "OnType": "todo"}]}).actions
    assert a.label == "go"


@pytest.mark.parametrize("field", ["bad name", "1abc", "a-b", "x" * 101, "päss", ""])
def test_action_in_field_with_invalid_name_is_an_error(field: str) -> None:
    with pytest.raises(SchemaError):
        parse_document({"Actions": [{"Name": "go", "OnType": "todo", "InFields": [{"Name": field}]}]})


def test_action_in_field_name_with_trailing_newline_is_an_error() -> None:
    # the name check must cover the whole name; `$` also matches before a final newline
    with pytest.raises(SchemaError):
        parse_document({"Actions": [{"Name": "go", "OnType": "todo", "InFields": [{"Name": "reason\n"}]}]})


@pytest.mark.parametrize(
    "action",
    [
        {"OnType": "todo"},
        {"Name": "", "OnType": "todo"},
        {"Name": "x" * 101, "OnType": "todo"},
        {"Name": "go"},
        {"Name": "go", "OnType": "bad type!"},
        {"Name": "go", "OnType": "todo", "OutFields": [{"Type": "todo", "Attributes": [1, 2]}]},
        {"Name": "go", "OnType": "todo", "InFields": "reason"},
        {"Name": "go", "OnType": "todo", "RequestSubjectRelations": "x"},
    ],
)
def test_bad_actions_are_schema_errors(action: dict[str, Any]) -> None:
    with pytest.raises(SchemaError):
        parse_document({"Actions": [action]})


# ---------------------------------------------------------------- groups


def test_default_groups_as_strings_or_objects() -> None:
    (t,) = one_table(
        {
            "TableName": "todo",
            "DefaultGroups": ["users", {"Name": "editors", "Permission": 16384}, {"name": "viewers"}],
            "AccessGroups": [{"Name": "users", "Permission": "32768"}, "guests"],
        }
    ).tables
    assert t.default_groups == [GroupGrant("users", 0), GroupGrant("editors", 16384), GroupGrant("viewers", 0)]
    assert t.access_groups == [GroupGrant("users", 32768), GroupGrant("guests", 0)]
    assert t.to_json()["DefaultGroups"] == [
        {"Name": "users", "Permission": 0},
        {"Name": "editors", "Permission": 16384},
        {"Name": "viewers", "Permission": 0},
    ]


@pytest.mark.parametrize("groups", [[5], [None], [["users"]], "users", {"Name": "users"}, [{"Permission": "lots"}]])
def test_bad_default_groups_are_schema_errors(groups: Any) -> None:
    with pytest.raises(SchemaError):
        one_table({"TableName": "todo", "DefaultGroups": groups})


# ---------------------------------------------------------------- hostile documents


HOSTILE_DOCS: list[Any] = [
    [],
    [{"TableName": "todo"}],
    "Tables",
    42,
    True,
    {"Tables": {"TableName": "todo"}},
    {"Tables": "todo"},
    {"Tables": 3},
    {"Tables": [None]},
    {"Tables": ["todo"]},
    {"Tables": [["todo"]]},
    {"Tables": [{}]},
    {"Tables": [{"TableName": ""}]},
    {"Tables": [{"TableName": 123}]},
    {"Tables": [{"TableName": 1.5}]},
    {"Tables": [{"TableName": True}]},
    {"Tables": [{"TableName": None}]},
    {"Tables": [{"TableName": ["todo"]}]},
    {"Tables": [{"TableName": {"a": 1}}]},
    {"Tables": [{"TableName": "t"}]},
    {"Tables": [{"TableName": "x" * 64}]},
    {"Tables": [{"TableName": "tödö"}]},
    {"Tables": [{"TableName": "todo; drop table x"}]},
    {"Tables": [{"TableName": "_todo"}]},
    {"Tables": [{"TableName": "todo", "Columns": "title"}]},
    {"Tables": [{"TableName": "todo", "Columns": {"Name": "title"}}]},
    {"Tables": [{"TableName": "todo", "Columns": [None]}]},
    {"Tables": [{"TableName": "todo", "Columns": [{"Name": 7}]}]},
    {"Tables": [{"TableName": "todo", "Columns": [{"Name": ["a"]}]}]},
    {"Tables": [{"TableName": "todo", "Columns": [{"Name": "title", "IsNullable": 1.5}]}]},
    {"Tables": [{"TableName": "todo", "Columns": [{"Name": "title", "IsUnique": "maybe"}]}]},
    {"Tables": [{"TableName": "todo", "Columns": [{"Name": "title", "ColumnType": ["label"]}]}]},
    {"Tables": [{"TableName": "todo", "Columns": [{"Name": "title", "Options": {"a": 1}}]}]},
    {"Tables": [{"TableName": "todo", "Columns": [{"Name": "title", "Options": [5]}]}]},
    {"Tables": [{"TableName": "todo", "Columns": [{"Name": "ab", "IsForeignKey": True, "ForeignKeyData": [1]}]}]},
    {"Tables": [{"TableName": "todo", "DefaultPermission": "lots"}]},
    {"Tables": [{"TableName": "todo", "DefaultPermission": True}]},
    {"Tables": [{"TableName": "todo", "DefaultPermission": [1]}]},
    {"Tables": [{"TableName": "todo", "DefaultPermission": {"a": 1}}]},
    {"Tables": [{"TableName": "todo", "DefaultPermission": float("nan")}]},
    {"Tables": [{"TableName": "todo", "DefaultPermission": float("inf")}]},
    {"Tables": [{"TableName": "todo", "Permission": "9" * 5000}]},
    {"Tables": [{"TableName": "todo", "IsHidden": [True]}]},
    {"Tables": [{"TableName": "todo", "Relations": {"Subject": "todo"}}]},
    {"Tables": [{"TableName": "todo", "Validations": ["required"]}]},
    {"Tables": [{"TableName": "todo", "CompositeKeys": "title"}]},
    {"Relations": "todo has_many tag"},
    {"Relations": [{"Subject": "todo", "Relation": ["has_many"], "Object": "tag"}]},
    {"Relations": [{"Subject": 1, "Relation": "has_many", "Object": "tag"}]},
    {"Relations": [{"Subject": "todo", "Relation": "has_many", "Object": "tag", "Columns": [3]}]},
    {"Actions": {"Name": "go"}},
    {"Actions": [None]},
]


@pytest.mark.parametrize("raw", HOSTILE_DOCS, ids=[f"{i}-{str(d)[:100]}" for i, d in enumerate(HOSTILE_DOCS)])
def test_hostile_documents_raise_schema_error_only(raw: Any) -> None:
    with pytest.raises(SchemaError):
        parse_document(raw, "hostile")


@pytest.mark.parametrize(
    "text",
    [
        "Tables:\n  - TableName: todo\n    DefaultPermission: .inf\n",
        "Tables:\n  - TableName: todo\n    DefaultPermission: -.inf\n",
        "Tables:\n  - TableName: todo\n    Permission: .nan\n",
        "Tables:\n  - TableName: 2024-01-01\n",
        "Tables:\n  - TableName: !!binary aGVsbG8=\n",
        "Tables: !!set {a, b}\n",
        "Tables: &a [*a]\n",
        "- Tables\n",
        "just a string\n",
    ],
)
def test_hostile_yaml_raises_schema_error_only(text: str) -> None:
    with pytest.raises(SchemaError):
        parse_text(text, "hostile.yaml")


@pytest.mark.parametrize("ext", ["yaml", "json"])
def test_deeply_nested_document_is_a_schema_error(ext: str) -> None:
    depth = 100_000
    text = '{"Tables": ' + "[" * depth + "]" * depth + "}"
    with pytest.raises(SchemaError):
        parse_text(text, f"deep.{ext}")


@pytest.mark.parametrize("ext", ["yaml", "json"])
def test_oversized_file_is_a_schema_error(ext: str) -> None:
    text = '{"Tables": [], "Pad": "' + "x" * (2 * 1024 * 1024) + '"}'
    with pytest.raises(SchemaError, match="larger than"):
        parse_text(text, f"big.{ext}")


def test_many_tables_parse_within_the_size_bound() -> None:
    tables = [{"TableName": f"t{i}"} for i in range(10_000)]
    doc = parse_text(json.dumps({"Tables": tables}), "many.json")
    assert len(doc.tables) == 10_000
    assert doc.tables[0].table_name == "t0"
    assert doc.tables[-1].table_name == "t9999"


def test_yaml_alias_fan_out_does_not_expand_into_tables() -> None:
    text = (
        "a: &a [x, x, x, x, x, x, x, x, x]\n"
        "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
        "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "Tables: [{TableName: todo}]\n"
    )
    assert [t.table_name for t in parse_text(text, "alias.yaml").tables] == ["todo"]


# ---------------------------------------------------------------- discover


def test_discover_finds_schema_files_in_stable_order(tmp_path: Path) -> None:
    data = tmp_path / "data"
    extra = tmp_path / "extra"
    data.mkdir()
    extra.mkdir()
    for name in ["schema_b.yaml", "schema_a.json", "schema_c.yml", "schema_d.toml", "other.yaml", "schema.yaml"]:
        (data / name).write_text("Tables: []")
    (extra / "schema_x.yaml").write_text("Tables: []")
    single = tmp_path / "single.yaml"
    single.write_text("Tables: []")

    found = discover(data, (str(extra), str(single), str(data / "schema_b.yaml")))
    names = [p.name for p in found]
    # explicit files first, then per root: yaml, yml, json globs; duplicates dropped
    assert names == ["single.yaml", "schema_b.yaml", "schema_c.yml", "schema_a.json", "schema_x.yaml"]


def test_discover_missing_extra_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="no such file or folder"):
        discover(tmp_path, (str(tmp_path / "missing"),))


def test_discover_missing_data_dir_is_empty(tmp_path: Path) -> None:
    assert discover(tmp_path / "nope", ()) == []
