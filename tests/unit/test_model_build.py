"""Building the model from the system document plus a user document (core spec §1.4, §2, §3)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import sqlalchemy as sa

from portside.core.model import STANDARD, Model, RelSpec, build, has_owner, index_name
from portside.core.schema import parse_document
from portside.core.systables import SYSTEM_TABLE_NAMES, system_doc
from portside.errors import SchemaError

STANDARD_ORDER = ["id", "version", "created_at", "updated_at", "reference_id", "permission"]

USER_DOC: dict[str, Any] = {
    "Tables": [
        {
            "TableName": "Project",
            "Columns": [{"Name": "Name", "ColumnType": "label", "DataType": "varchar(100)"}],
        },
        {
            "TableName": "todo",
            "CompositeKeys": [["title", "project_id"]],
            "Columns": [
                {"Name": "title", "ColumnType": "label", "DataType": "varchar(200)", "IsUnique": True},
                {"Name": "done", "ColumnType": "truefalse", "DataType": "bool", "IsIndexed": True},
                # declaring a standard column must not duplicate or replace it
                {"ColumnName": "permission", "ColumnType": "label", "DataType": "varchar(5)"},
            ],
            "Relations": [{"Subject": "todo", "Relation": "belongs_to", "Object": "project"}],
        },
        {"TableName": "tag", "Columns": [{"Name": "label", "ColumnType": "label"}]},
    ],
    "Relations": [
        {"Subject": "project", "Relation": "has_many", "Object": "tag"},
        {
            "Subject": "todo",
            "Relation": "has_one",
            "Object": "tag",
            "ObjectName": "main_tag",
            "SubjectName": "main_tag_of",
        },
    ],
    "Actions": [{"Name": "finish", "OnType": "todo"}],
}

USER_TABLES = {"project", "todo", "tag"}
TODO_GROUPS = "todo_todo_id_has_usergroup_usergroup_id"
PROJECT_TAGS = "project_project_id_has_tag_tag_id"


def make(doc: dict[str, Any]) -> Model:
    return build([system_doc(), parse_document(doc, "user")])


@pytest.fixture(scope="module")
def model() -> Model:
    return make(USER_DOC)


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def indexes(model: Model, table: str) -> dict[str, tuple[list[str], bool]]:
    return {str(i.name): ([c.name for c in i.columns], bool(i.unique)) for i in model.tables[table].sa.indexes}


# ---------------------------------------------------------------- tables present


def test_all_expected_tables_exist(model: Model) -> None:
    names = set(model.tables)
    assert names >= USER_TABLES
    assert names >= SYSTEM_TABLE_NAMES
    for t in [*USER_TABLES, *(SYSTEM_TABLE_NAMES - {"usergroup"})]:
        assert f"{t}_{t}_id_has_usergroup_usergroup_id" in names
    assert "usergroup_usergroup_id_has_usergroup_usergroup_id" not in names
    assert "user_account_user_account_id_has_usergroup_usergroup_id" in names
    assert "world_world_id_has_smd_smd_id" in names
    assert PROJECT_TAGS in names


# ---------------------------------------------------------------- standard and owner columns


def test_standard_columns_come_first_in_order_on_every_table(model: Model) -> None:
    assert list(STANDARD) == STANDARD_ORDER
    for name, tm in model.tables.items():
        assert list(tm.columns)[:6] == STANDARD_ORDER, name
        assert list(tm.sa.c.keys())[:6] == STANDARD_ORDER, name


def test_user_columns_follow_standard_then_relation_columns(model: Model) -> None:
    assert list(model.tables["todo"].columns) == [
        *STANDARD_ORDER,
        "title",
        "done",
        "project_id",
        "main_tag",
        "user_account_id",
    ]
    assert list(model.tables["project"].columns) == [*STANDARD_ORDER, "name", "user_account_id"]


def test_declared_standard_column_does_not_replace_the_standard_one(model: Model) -> None:
    perm = model.tables["todo"].columns["permission"]
    assert (perm.column_type, perm.data_type) == ("value", "int(11)")
    assert isinstance(model.tables["todo"].sa.c.permission.type, sa.Integer)


def test_standard_column_properties(model: Model) -> None:
    t = model.tables["todo"]
    assert t.sa.c.id.primary_key is True
    assert t.sa.c.reference_id.nullable is False
    assert t.columns["id"].exclude_from_api is True
    assert t.columns["version"].exclude_from_api is True
    assert t.columns["version"].default_value == "1"
    assert [c.column_name for c in t.api_columns()][:4] == ["created_at", "updated_at", "reference_id", "permission"]


@pytest.mark.parametrize(
    ("table", "owned"),
    [
        ("todo", True),
        ("project", True),
        ("tag", True),
        ("user_account", True),
        ("world", True),
        ("action", True),
        ("usergroup", False),
        (TODO_GROUPS, False),
        (PROJECT_TAGS, False),
        ("user_account_user_account_id_has_usergroup_usergroup_id", False),
        ("world_world_id_has_smd_smd_id", False),
    ],
)
def test_owner_column(model: Model, table: str, owned: bool) -> None:
    tm = model.tables[table]
    assert tm.owner is owned
    if table == "user_account_user_account_id_has_usergroup_usergroup_id":
        # the membership table: its user_account_id is the join FK, not an owner column
        assert list(tm.columns) == [*STANDARD_ORDER, "user_account_id", "usergroup_id"]
    else:
        assert ("user_account_id" in tm.columns) is owned
        assert ("user_account_id" in tm.sa.c) is owned
    assert has_owner(table) is owned
    if owned:
        assert tm.fks["user_account_id"] == "user_account"
        assert tm.sa.c.user_account_id.nullable is True
        assert tm.group_join == f"{table}_{table}_id_has_usergroup_usergroup_id"
    else:
        assert tm.group_join is None


@pytest.mark.parametrize(
    ("name", "expected"), [("todo", True), ("usergroup", False), ("a_has_b", False), ("todo_audit", False)]
)
def test_has_owner(name: str, expected: bool) -> None:
    assert has_owner(name) is expected


# ---------------------------------------------------------------- join tables


def test_usergroup_join_table(model: Model) -> None:
    jt = model.tables[TODO_GROUPS]
    assert list(jt.columns) == [*STANDARD_ORDER, "todo_id", "usergroup_id"]
    assert jt.is_join is True
    assert jt.join_pair == (("todo_id", "todo"), ("usergroup_id", "usergroup"))
    assert jt.fks == {"todo_id": "todo", "usergroup_id": "usergroup"}
    assert jt.decl.is_join_table is True
    assert jt.relations == {
        "todo_id": RelSpec("todo_id", "todo", False, fk_column="todo_id"),
        "usergroup_id": RelSpec("usergroup_id", "usergroup", False, fk_column="usergroup_id"),
    }
    idx = indexes(model, TODO_GROUPS)
    assert (["todo_id", "usergroup_id"], True) in idx.values()
    # §1.4: join tables with usergroup_id get a (usergroup_id, <entity fk>) index
    assert (["usergroup_id", "todo_id"], False) in idx.values()
    assert model.tables["todo"].group_join == TODO_GROUPS


def test_has_many_makes_a_join_table(model: Model) -> None:
    jt = model.tables[PROJECT_TAGS]
    assert list(jt.columns) == [*STANDARD_ORDER, "project_id", "tag_id"]
    assert jt.join_pair == (("project_id", "project"), ("tag_id", "tag"))
    assert "user_account_id" not in jt.columns
    assert (["project_id", "tag_id"], True) in indexes(model, PROJECT_TAGS).values()
    assert not any(cols[0] == "usergroup_id" for cols, _ in indexes(model, PROJECT_TAGS).values())
    # no FK column on either side
    assert "tag_id" not in model.tables["project"].columns
    assert "project_id" not in model.tables["tag"].columns


def test_join_table_with_extra_columns() -> None:
    m = make(
        {
            "Tables": [{"TableName": "project"}, {"TableName": "member"}],
            "Relations": [
                {
                    "Subject": "project",
                    "Relation": "has_many_and_belongs_to_many",
                    "Object": "member",
                    "Columns": [{"Name": "Role", "ColumnType": "label"}],
                }
            ],
        }
    )
    jt = m.tables["project_project_id_has_member_member_id"]
    assert list(jt.columns) == [*STANDARD_ORDER, "project_id", "member_id", "role"]


def test_self_relation_join_table_has_two_distinct_columns_or_is_rejected() -> None:
    doc = {
        "Tables": [{"TableName": "person"}],
        "Relations": [{"Subject": "person", "Relation": "has_many", "Object": "person"}],
    }
    try:
        m = make(doc)
    except SchemaError:
        return
    jt = m.tables["person_person_id_has_person_person_id"]
    assert jt.join_pair is not None
    (left, _), (right, _) = jt.join_pair
    assert left != right, f"join table stores both ends in one column {left!r}: {list(jt.columns)}"


def test_self_belongs_to_keeps_its_to_one_relation_or_is_rejected() -> None:
    # default names: SubjectName == ObjectName == person_id; the reverse (to-many) side must not
    # silently replace the FK's own to-one relationship
    doc = {
        "Tables": [{"TableName": "person"}],
        "Relations": [{"Subject": "person", "Relation": "belongs_to", "Object": "person"}],
    }
    try:
        m = make(doc)
    except SchemaError:
        return
    assert m.tables["person"].relations["person_id"] == RelSpec("person_id", "person", False, fk_column="person_id")


def test_self_belongs_to_with_distinct_names() -> None:
    m = make(
        {
            "Tables": [{"TableName": "person"}],
            "Relations": [
                {
                    "Subject": "person",
                    "Relation": "belongs_to",
                    "Object": "person",
                    "ObjectName": "parent_id",
                    "SubjectName": "children",
                }
            ],
        }
    )
    rels = m.tables["person"].relations
    assert rels["parent_id"] == RelSpec("parent_id", "person", False, fk_column="parent_id")
    assert rels["children"] == RelSpec("children", "person", True, reverse_fk="parent_id")


def test_colliding_relationship_names_do_not_shadow_an_fk_or_are_rejected() -> None:
    # todo belongs_to project (todo.project_id) and project has_many todo (join) both want the key
    # `project_id` on todo and `todo_id` on project
    doc = {
        "Tables": [{"TableName": "project"}, {"TableName": "todo"}],
        "Relations": [
            {"Subject": "todo", "Relation": "belongs_to", "Object": "project"},
            {"Subject": "project", "Relation": "has_many", "Object": "todo"},
        ],
    }
    try:
        m = make(doc)
    except SchemaError:
        return
    assert m.tables["todo"].relations["project_id"] == RelSpec("project_id", "project", False, fk_column="project_id")


# ---------------------------------------------------------------- FK relations


def test_belongs_to_makes_fk_column_on_subject(model: Model) -> None:
    todo = model.tables["todo"]
    col = todo.columns["project_id"]
    assert (col.column_type, col.data_type, col.is_indexed) == ("alias", "int(11)", True)
    assert col.foreign_key is not None
    assert (col.foreign_key.data_source, col.foreign_key.namespace, col.foreign_key.key_name) == (
        "self",
        "project",
        "id",
    )
    assert todo.fks["project_id"] == "project"
    assert isinstance(todo.sa.c.project_id.type, sa.Integer)
    assert "todo_id" not in model.tables["project"].columns


def test_has_one_makes_fk_column_on_subject(model: Model) -> None:
    todo = model.tables["todo"]
    assert todo.fks["main_tag"] == "tag"
    assert todo.sa.c.main_tag.nullable is True
    assert "main_tag_of" not in model.tables["tag"].columns


def test_relationship_maps_on_both_sides(model: Model) -> None:
    todo, project, tag = (model.tables[n].relations for n in ("todo", "project", "tag"))
    # subject side, key = ObjectName; to-one for belongs_to / has_one
    assert todo["project_id"] == RelSpec("project_id", "project", False, fk_column="project_id")
    assert todo["main_tag"] == RelSpec("main_tag", "tag", False, fk_column="main_tag")
    # object side, key = SubjectName; to-many for belongs_to, to-one for has_one
    assert project["todo_id"] == RelSpec("todo_id", "todo", True, reverse_fk="project_id")
    assert tag["main_tag_of"] == RelSpec("main_tag_of", "todo", False, reverse_fk="main_tag")
    # has_many: to-many on both sides through the join table
    assert project["tag_id"] == RelSpec(
        "tag_id", "tag", True, join_table=PROJECT_TAGS, join_self="project_id", join_target="tag_id"
    )
    assert tag["project_id"] == RelSpec(
        "project_id", "project", True, join_table=PROJECT_TAGS, join_self="tag_id", join_target="project_id"
    )
    # automatic relations: owner (to-one) and usergroups (to-many); not mirrored on user_account / usergroup
    assert todo["user_account_id"] == RelSpec("user_account_id", "user_account", False, fk_column="user_account_id")
    assert todo["usergroup_id"] == RelSpec(
        "usergroup_id", "usergroup", True, join_table=TODO_GROUPS, join_self="todo_id", join_target="usergroup_id"
    )
    assert "todo_id" not in model.tables["user_account"].relations
    assert "todo_id" not in model.tables["usergroup"].relations
    assert set(todo) == {"project_id", "main_tag", "user_account_id", "usergroup_id"}
    assert set(project) == {"todo_id", "tag_id", "user_account_id", "usergroup_id"}
    assert set(tag) == {"project_id", "main_tag_of", "user_account_id", "usergroup_id"}


def test_system_relations(model: Model) -> None:
    assert model.tables["action"].fks["world_id"] == "world"
    assert model.tables["feed"].fks["stream_id"] == "stream"
    assert model.tables["task"].fks["as_user_id"] == "user_account"
    assert model.tables["user_account"].relations["task_executed"] == RelSpec(
        "task_executed", "task", False, reverse_fk="as_user_id"
    )
    assert model.tables["world"].relations["smd_id"].join_table == "world_world_id_has_smd_smd_id"


def test_user_relations_are_recorded_without_automatic_ones(model: Model) -> None:
    user = {(r.subject, r.relation, r.object) for r in model.relations}
    assert ("todo", "belongs_to", "project") in user
    assert ("project", "has_many", "tag") in user
    assert ("todo", "has_one", "tag") in user
    assert not any(r.object == "usergroup" and r.subject in USER_TABLES for r in model.relations)


def test_duplicate_relation_is_kept_once() -> None:
    rel = {"Subject": "todo", "Relation": "belongs_to", "Object": "project"}
    m = make({"Tables": [{"TableName": "project"}, {"TableName": "todo", "Relations": [rel]}], "Relations": [rel]})
    assert [(r.subject, r.object) for r in m.relations if r.subject == "todo"] == [("todo", "project")]
    assert list(m.tables["todo"].columns).count("project_id") == 1


@pytest.mark.parametrize(
    "relation",
    [
        {"Subject": "todo", "Relation": "belongs_to", "Object": "nowhere"},
        {"Subject": "nowhere", "Relation": "has_many", "Object": "todo"},
        {"Subject": "todo", "Relation": "has_many", "Object": "nowhere"},
        {"Subject": "todo", "Relation": "has_one", "Object": "nowhere"},
    ],
)
def test_relation_to_unknown_table_is_an_error(relation: dict[str, str]) -> None:
    with pytest.raises(SchemaError, match="unknown table 'nowhere'"):
        make({"Tables": [{"TableName": "todo"}], "Relations": [relation]})
    with pytest.raises(SchemaError, match="unknown table 'nowhere'"):
        make({"Tables": [{"TableName": "todo", "Relations": [relation]}]})


# ---------------------------------------------------------------- indexes


def test_index_name_formula() -> None:
    assert index_name("todo", "title", "unique") == "u" + md5("index_todo_title_unique")
    assert index_name("todo", "title", "unique") == "uaee2ea173a7307f25334d2f87a37e0ff"
    assert index_name("todo", "done", "index") == "ifc2206a1cd727e68332c790358b2d224"
    assert index_name("todo", "project_id", "index") == "i94e49e75c784bca0f81dfb5863592f6c"


def test_column_indexes_use_the_md5_names(model: Model) -> None:
    idx = indexes(model, "todo")
    assert idx["uaee2ea173a7307f25334d2f87a37e0ff"] == (["title"], True)
    assert idx["ifc2206a1cd727e68332c790358b2d224"] == (["done"], False)
    assert idx["i94e49e75c784bca0f81dfb5863592f6c"] == (["project_id"], False)
    assert idx[index_name("todo", "reference_id", "unique")] == (["reference_id"], True)
    assert idx[index_name("todo", "created_at", "index")] == (["created_at"], False)
    assert idx[index_name("todo", "updated_at", "index")] == (["updated_at"], False)
    assert idx[index_name("todo", "user_account_id", "index")] == (["user_account_id"], False)


def test_composite_keys_make_a_unique_index(model: Model) -> None:
    assert (["title", "project_id"], True) in indexes(model, "todo").values()
    # system: action (action_name, world_id)
    assert (["action_name", "world_id"], True) in indexes(model, "action").values()


def test_composite_key_with_unknown_column_is_an_error() -> None:
    with pytest.raises(SchemaError, match="CompositeKeys names unknown column 'nope'"):
        make({"Tables": [{"TableName": "todo", "Columns": [{"Name": "title"}], "CompositeKeys": [["title", "nope"]]}]})


def test_composite_key_index_does_not_collide_with_a_column_index() -> None:
    # a column named like the joined key list must not produce a second index of the same name
    m = make(
        {
            "Tables": [
                {
                    "TableName": "pair",
                    "Columns": [{"Name": "aa_bb", "IsUnique": True}, {"Name": "aa"}, {"Name": "bb"}],
                    "CompositeKeys": [["aa", "bb"]],
                }
            ]
        }
    )
    names = [str(i.name) for i in m.tables["pair"].sa.indexes]
    assert len(names) == len(set(names)), sorted(names)
    engine = sa.create_engine("sqlite://")
    m.metadata.create_all(engine)
    engine.dispose()


# ---------------------------------------------------------------- actions


def test_actions_are_indexed_by_type_and_name(model: Model) -> None:
    assert model.action("todo", "finish").name == "finish"
    assert ("todo", "finish") in model.actions


def test_action_on_unknown_type_is_an_error() -> None:
    with pytest.raises(SchemaError, match="OnType 'nowhere' is not a table"):
        make({"Tables": [{"TableName": "todo"}], "Actions": [{"Name": "go", "OnType": "nowhere"}]})


def test_action_on_generated_join_table_is_accepted() -> None:
    m = make({"Tables": [{"TableName": "todo"}], "Actions": [{"Name": "go", "OnType": TODO_GROUPS}]})
    assert m.action(TODO_GROUPS, "go").on_type == TODO_GROUPS


# ---------------------------------------------------------------- merging


def test_user_doc_extends_a_system_table() -> None:
    m = make({"Tables": [{"TableName": "user_account", "Columns": [{"Name": "nickname"}]}]})
    cols = list(m.tables["user_account"].columns)
    assert cols[:6] == STANDARD_ORDER
    assert "email" in cols
    assert "nickname" in cols
    assert m.tables["user_account"].decl.default_groups[0].name == "users"


def test_build_does_not_mutate_the_parsed_documents() -> None:
    sysdoc = system_doc()
    user = parse_document(USER_DOC, "user")
    before = [t.to_json() for t in user.tables]
    build([sysdoc, user])
    assert [t.to_json() for t in user.tables] == before
    assert len(user.tables[1].relations) == 1


# ---------------------------------------------------------------- DDL


def test_metadata_creates_in_sqlite(model: Model) -> None:
    engine = sa.create_engine("sqlite://")
    try:
        model.metadata.create_all(engine)
        insp = sa.inspect(engine)
        assert set(insp.get_table_names()) == set(model.tables)
        assert [c["name"] for c in insp.get_columns("todo")] == list(model.tables["todo"].columns)
        db_indexes = {i["name"]: (i["column_names"], bool(i["unique"])) for i in insp.get_indexes("todo")}
        assert db_indexes["uaee2ea173a7307f25334d2f87a37e0ff"] == (["title"], True)
        assert db_indexes["i94e49e75c784bca0f81dfb5863592f6c"] == (["project_id"], False)
        assert (["title", "project_id"], True) in db_indexes.values()
        join_cols = [c["name"] for c in insp.get_columns(TODO_GROUPS)]
        assert join_cols == [*STANDARD_ORDER, "todo_id", "usergroup_id"]
        # the unique join index is enforced by the database
        j = model.tables[PROJECT_TAGS].sa
        with engine.begin() as conn:
            conn.execute(j.insert().values(reference_id="a", project_id=1, tag_id=2, permission=0))
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(j.insert().values(reference_id="b", project_id=1, tag_id=2, permission=0))
        # reference_id is required
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(model.tables["tag"].sa.insert().values(label="x"))
    finally:
        engine.dispose()
