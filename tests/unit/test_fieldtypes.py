from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.mysql.base import MySQLDialect
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.schema import CreateTable

from portside.core import fieldtypes as ft
from portside.core.fieldtypes import FieldError, default_for_insert, sa_type, to_api, to_db
from portside.core.schema import Column
from portside.tools import crypto, jsonutil

SECRET = "0123456789abcdef0123456789abcdef"
PG: sa.engine.Dialect = PGDialect()  # type: ignore[no-untyped-call]

SPEC_TYPES = [
    "id", "alias", "enum", "date", "time", "day", "month", "year", "minute", "hour", "datetime", "timestamp",
    "email", "namespace", "name", "label", "hidden", "content", "html", "markdown", "json", "value",
    "measurement", "float", "rating", "truefalse", "color", "location", "location.latitude",
    "location.longitude", "location.altitude", "url", "password", "bcrypt", "md5", "md5-bcrypt", "encrypted",
    "file", "image", "video", "gzip",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _fast_bcrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ft, "BCRYPT_ROUNDS", 4)


def col(ctype: str, data_type: str = "", **kw: Any) -> Column:
    return Column(column_name="x", column_type=ctype, data_type=data_type, **kw)


def db(ctype: str, value: Any, data_type: str = "", **kw: Any) -> Any:
    return to_db(col(ctype, data_type, **kw), value, secret=SECRET)


def bad(ctype: str, value: Any, data_type: str = "", **kw: Any) -> str:
    with pytest.raises(FieldError) as info:
        db(ctype, value, data_type, **kw)
    assert info.value.column == "x"
    assert str(info.value) == info.value.message
    assert info.value.message.startswith("invalid value for x")
    return info.value.message


def test_registry_covers_every_spec_type() -> None:
    assert len(SPEC_TYPES) == 41
    assert set(SPEC_TYPES) == set(ft.COLUMN_TYPES)


# ---------------------------------------------------------------- to_db per type


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), (1, True), (0, False), ("TRUE", True), ("false", False), ("1", True),
     (" 0 ", False)],
)  # fmt: skip
def test_truefalse_accepts(value: Any, expected: bool) -> None:
    assert db("truefalse", value) is expected


@pytest.mark.parametrize("value", [2, -1, "yes", "", 1.0, [], {}])
def test_truefalse_rejects(value: Any) -> None:
    assert bad("truefalse", value) == "invalid value for x: expected true or false"


def test_truefalse_with_int_data_type_stores_int() -> None:
    assert db("truefalse", "true", "int(1)") == 1
    assert db("truefalse", False, "tinyint(1)") == 0


def test_measurement() -> None:
    assert db("measurement", "") == 0
    assert db("measurement", "-") == 0
    assert db("measurement", "NA") == 0
    assert db("measurement", 12.9) == 12
    assert db("measurement", "7") == 7
    assert db("measurement", "-3.5") == -3
    assert db("measurement", 2.5, "float(7,4)") == 2.5
    bad("measurement", True)
    bad("measurement", "ten")


@pytest.mark.parametrize(
    ("ctype", "ok", "too_low", "too_high"),
    [("rating", (0, 10), -1, 11), ("month", (1, 12), 0, 13), ("minute", (0, 59), -1, 60),
     ("hour", (0, 23), -1, 24)],
)  # fmt: skip
def test_ranged_ints(ctype: str, ok: tuple[int, int], too_low: int, too_high: int) -> None:
    assert db(ctype, ok[0]) == ok[0]
    assert db(ctype, str(ok[1])) == ok[1]
    assert db(ctype, float(ok[1]) + 0.7) == ok[1]
    assert "must be between" in bad(ctype, too_low)
    assert "must be between" in bad(ctype, too_high)
    bad(ctype, True)


def test_int_data_types() -> None:
    assert db("year", "2024") == 2024
    assert db("value", "42", "int(11)") == 42
    assert db("value", 42.9, "int(11)") == 42
    assert db("alias", "12", "int(11)") == 12
    assert db("id", 5) == 5
    assert bad("alias", "abc", "int(11)") == "invalid value for x: expected an integer"
    bad("alias", True, "int(11)")
    assert bad("value", 2**31, "int(11)") == "invalid value for x: integer out of range"
    assert db("value", 2**40, "bigint") == 2**40


def test_float_types() -> None:
    assert db("float", "1.5") == 1.5
    assert db("float", 2) == 2.0 and isinstance(db("float", 2), float)
    assert db("location.latitude", "-33.8688") == -33.8688
    assert db("location.longitude", 151.2093) == 151.2093
    for v in (True, float("nan"), float("inf"), "inf", "nan", "1,5", 10**400):
        bad("float", v)
    assert db("location", "[1.5, 2.5]") == "[1.5, 2.5]"


@pytest.mark.parametrize("ctype", ["date", "datetime", "timestamp"])
def test_datetimes(ctype: str) -> None:
    assert db(ctype, "2024-01-02T03:04:05Z") == dt.datetime(2024, 1, 2, 3, 4, 5)
    assert db(ctype, "2024-01-02T03:04:05+02:00") == dt.datetime(2024, 1, 2, 1, 4, 5)
    assert db(ctype, "2024-01-02T03:04:05.250Z") == dt.datetime(2024, 1, 2, 3, 4, 5, 250000)
    assert db(ctype, "2024-01-02") == dt.datetime(2024, 1, 2)
    assert db(ctype, "2024-01-02 10:11:12") == dt.datetime(2024, 1, 2, 10, 11, 12)
    assert db(ctype, 0) == dt.datetime(1970, 1, 1)
    assert db(ctype, 1700000000.5) == dt.datetime(2023, 11, 14, 22, 13, 20, 500000)
    assert db(ctype, "1700000000") == dt.datetime(2023, 11, 14, 22, 13, 20)
    assert db(ctype, "Tue, 02 Jan 2024 03:04:05 GMT") == dt.datetime(2024, 1, 2, 3, 4, 5)
    assert db(ctype, "2024-01-02T03:04:05Z").tzinfo is None
    v: Any
    for v in ("yesterday", "2024-13-01", True, [], "", 1e300):
        bad(ctype, v)


def test_date_type_with_date_data_type_is_datetime() -> None:
    assert isinstance(sa_type(col("date", "date")), sa.DateTime)


def test_time() -> None:
    assert db("time", "9:05") == "09:05:00"
    assert db("time", "23:59:59") == "23:59:59"
    for v in ("24:00", "12:60", "noon", 930, "12"):
        bad("time", v)


def test_email() -> None:
    assert db("email", "  a.b@example.co.uk ") == "a.b@example.co.uk"
    for v in ("a@b", "a b@c.com", "a@@b.com", "@b.com", "a@b.", 5, "a@.com"):
        assert bad("email", v) == "invalid value for x: expected an email address"


def test_url() -> None:
    assert db("url", " https://example.com/a?b=1 ") == "https://example.com/a?b=1"
    assert db("url", "http://localhost:6336") == "http://localhost:6336"
    for v in ("ftp://example.com", "http://", "javascript:alert(1)", "example.com", "http://a b.com", 3):
        bad("url", v)


def test_enum() -> None:
    opts = [{"ValueType": "string", "Value": "Active", "Label": "A"}, {"Value": "off", "Label": "Off"}]
    assert db("enum", "ACTIVE", options=opts) == "active"
    assert db("enum", " Off ", options=opts) == "off"
    msg = bad("enum", "deleted", options=opts)
    assert msg == "invalid value for x: must be one of active, off"
    bad("enum", "anything")  # no options at all
    bad("enum", {"a": 1}, options=opts)


def test_color() -> None:
    assert db("color", "#fff") == "#fff"
    assert db("color", "#A0b1C2") == "#A0b1C2"
    assert db("color", "rebeccapurple") == "rebeccapurple"
    for v in ("#ggg", "#12345", "x" * 51, 123):
        bad("color", v)


def test_json() -> None:
    assert jsonutil.loads(db("json", {"a": [1, 2]})) == {"a": [1, 2]}
    assert db("json", [1, "two"]) == '[1,"two"]'
    assert db("json", '{"kept": "as is"}') == '{"kept": "as is"}'
    assert db("json", 3) == "3"
    assert bad("json", "not json") == "invalid value for x: not valid JSON"
    bad("json", "{" * 200 + "}" * 200)


def test_password_is_bcrypt_hashed() -> None:
    stored = db("password", "hunter22")
    assert stored.startswith("$2b$04$")
    assert crypto.check_password("hunter22", stored)
    assert not crypto.check_password("hunter23", stored)
    assert bad("password", "") == "invalid value for x: must not be empty"
    assert bad("password", 12345678) == "invalid value for x: expected a string"
    assert "72 bytes" in bad("password", "x" * 73)


def test_bcrypt_md5_md5bcrypt() -> None:
    assert crypto.check_password("pw", db("bcrypt", "pw"))
    assert db("md5", "abc") == "900150983cd24fb0d6963f7d28e17f72"
    stored = db("md5-bcrypt", "imap-pass")
    assert crypto.check_password(crypto.md5_hex("imap-pass"), stored)
    assert not crypto.check_password("imap-pass", stored)


def test_encrypted() -> None:
    stored = db("encrypted", "the secret")
    assert stored != "the secret"
    assert crypto.decrypt(SECRET, stored) == "the secret"
    assert crypto.decrypt(SECRET, db("encrypted", 42)) == "42"
    bad("encrypted", {"a": 1})
    assert to_api(col("encrypted"), stored) == stored


PNG = "data:image/png;base64,iVBORw0KGgo="


@pytest.mark.parametrize("ctype", ["file", "image", "video", "gzip", "file.csv", "image.png"])
def test_assets(ctype: str) -> None:
    files = [{"name": "a.png", "file": PNG, "type": "image/png", "path": "thumbs"}]
    stored = db(ctype, files)
    assert isinstance(stored, str) and jsonutil.loads(stored) == files
    text = '[{"name": "b.txt", "contents": "aGVsbG8="}]'
    assert db(ctype, text) == text
    assert db(ctype, []) == "[]"
    assert db(ctype, [{"name": "a", "file": "aGVsbG8"}]) is not None  # unpadded bare base64
    assert "JSON array" in bad(ctype, {"name": "a.png", "file": PNG})
    assert "JSON array" in bad(ctype, "not json")
    assert "name" in bad(ctype, [{"file": PNG}])
    assert "base64" in bad(ctype, [{"name": "a", "file": "data:image/png;base64,@@@@"}])
    assert "base64" in bad(ctype, [{"name": "a", "contents": "!!notbase64!!"}])
    assert "unsafe" in bad(ctype, [{"name": "../../etc/passwd"}])
    assert "unsafe" in bad(ctype, [{"name": "a", "path": "../up"}])
    assert "must be an object" in bad(ctype, ["a.png"])


def test_text_like() -> None:
    assert db("label", "hello") == "hello"
    assert db("label", 5) == "5"
    assert db("label", 1.5) == "1.5"
    assert db("label", True) == "true"
    assert db("content", "y" * 10000) == "y" * 10000
    assert bad("label", {"a": 1}) == "invalid value for x: expected text or a number"
    bad("name", [1])
    assert bad("label", "abcdef", "varchar(5)") == "invalid value for x: longer than 5 characters"
    assert db("label", "abcde", "varchar(5)") == "abcde"
    assert bad("label", "y" * 101) == "invalid value for x: longer than 100 characters"
    assert "NUL" in bad("label", "a\x00b")
    bad("label", "\udc80")


def test_unknown_type_is_text() -> None:
    assert db("something-new", 7) == "7"
    assert isinstance(sa_type(col("something-new")), sa.String)
    t = sa_type(col("something-new"))
    assert isinstance(t, sa.String) and t.length == 100


def test_none_passes_through() -> None:
    for ctype in SPEC_TYPES:
        assert db(ctype, None) is None


# ---------------------------------------------------------------- fuzz: only FieldError ever escapes


def _deep(n: int) -> Any:
    v: Any = []
    for _ in range(n):
        v = [v]
    return v


HOSTILE: list[Any] = [
    {}, {"a": 1}, {1: "int key"}, [], [1, 2], [{"name": 1}], [{"name": "a", "file": 5}], 10**30, -(10**30),
    10**400, 10**5000, float("nan"), float("inf"), -float("inf"), None, "", " ", "\x00", "\udc80", "\xff\xfe",
    "a" * 10000, "1" * 10000, "9" * 400, True, False, 0, -1, 1.5, 2**63, b"bytes", bytearray(b"x"), object(),
    ("tuple",), {"name": "x"}, "data:,", '[{"name":"a","file":"!!!"}]', "9999-12-31T23:59:59Z",
    "0001-01-01", "1e400", "-1e400", "nan", "[]", _deep(300), _deep(3000), "99999999999999999999",
    "2024-02-30", "25:61", "http://[::1", "é" * 80, dt.datetime(2024, 1, 1), set(),
]  # fmt: skip
DATA_TYPES = ["", "int(11)", "varchar(10)", "bool", "timestamp", "float(7,4)", "text", "bigint", "longblob"]


@pytest.mark.parametrize("data_type", DATA_TYPES)
@pytest.mark.parametrize("ctype", [*SPEC_TYPES, "file.csv", "unknown"])
def test_fuzz_only_field_errors(ctype: str, data_type: str) -> None:
    c = col(ctype, data_type, options=[{"Value": "a"}])
    for value in HOSTILE:
        try:
            to_db(c, value, secret=SECRET)
        except FieldError as exc:
            assert exc.message.startswith("invalid value for x")


# ---------------------------------------------------------------- to_api


def test_to_api() -> None:
    assert to_api(col("password"), "$2b$04$abc") == ""
    assert to_api(col("password"), None) == ""
    assert to_api(col("bcrypt"), "$2b$04$abc") == ""  # no hash ever leaves the server
    assert to_api(col("md5"), "900150983cd24fb0d6963f7d28e17f72") == ""
    assert to_api(col("md5-bcrypt"), "$2b$04$abc") == ""
    assert to_api(col("datetime"), dt.datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02T03:04:05Z"
    aware = dt.datetime(2024, 1, 2, 5, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert to_api(col("timestamp"), aware) == "2024-01-02T03:04:05Z"
    assert to_api(col("truefalse"), 1) is True
    assert to_api(col("truefalse"), 0) is False
    assert to_api(col("truefalse", "int(1)"), "1") is True
    assert to_api(col("label", "boolean"), 0) is False
    assert to_api(col("label"), b"bytes") == "bytes"
    assert to_api(col("json"), '{"a":1}') == '{"a":1}'
    assert to_api(col("file"), '[{"name":"a"}]') == '[{"name":"a"}]'
    assert to_api(col("measurement"), 3) == 3
    assert to_api(col("label"), None) is None


def test_secret_and_thread_flags() -> None:
    assert {t for t in SPEC_TYPES if ft.is_secret(col(t))} == {"password", "bcrypt", "md5", "md5-bcrypt", "encrypted"}
    assert {t for t in SPEC_TYPES if ft.needs_thread(col(t))} == {"password", "bcrypt", "md5-bcrypt"}


# ---------------------------------------------------------------- defaults


def test_default_for_insert() -> None:
    assert default_for_insert(col("truefalse", "bool", default_value="'false'")) is False
    assert default_for_insert(col("truefalse", "int(1)", default_value="1")) == 1
    assert default_for_insert(col("label", "int(11)", default_value="1")) == 1
    assert default_for_insert(col("label", default_value="'static'")) == "static"
    assert default_for_insert(col("label", default_value='"double"')) == "double"
    assert default_for_insert(col("label", default_value="'mismatched\"")) == "'mismatched\""
    assert default_for_insert(col("label", default_value="''")) == ""
    assert default_for_insert(col("timestamp", "timestamp", default_value="current_timestamp")) is None
    assert default_for_insert(col("timestamp", default_value="CURRENT_TIMESTAMP")) is None
    assert default_for_insert(col("json", default_value="'[]'")) == "[]"
    assert default_for_insert(col("value", "int(11)", default_value="''")) is None
    assert default_for_insert(col("measurement", default_value="''")) == 0
    assert default_for_insert(col("password", default_value="'x'")) is None
    assert default_for_insert(col("label")) is None
    with pytest.raises(FieldError):
        default_for_insert(col("rating", default_value="'abc'"))


# ---------------------------------------------------------------- SQL types and DDL


@pytest.mark.parametrize(
    ("ctype", "data_type", "cls", "length"),
    [
        ("label", "varchar(100)", sa.String, 100),
        ("label", "", sa.String, 100),
        ("enum", "", sa.String, 50),
        ("url", "", sa.String, 500),
        ("label", "varchar(1000)", sa.Text, None),
        ("label", "VARCHAR(768)", sa.String, 768),
        ("alias", "int(11)", sa.Integer, None),
        ("id", "INTEGER", sa.Integer, None),
        ("value", "bigint", sa.BigInteger, None),
        ("content", "text", sa.Text, None),
        ("content", "mediumtext", sa.Text, None),
        ("truefalse", "bool", sa.Boolean, None),
        ("truefalse", "boolean", sa.Boolean, None),
        ("truefalse", "", sa.Boolean, None),
        ("datetime", "timestamp", sa.DateTime, None),
        ("datetime", "datetime", sa.DateTime, None),
        ("date", "", sa.DateTime, None),
        ("float", "float(7,4)", sa.Double, None),
        ("float", "double", sa.Double, None),
        ("value", "decimal(10,2)", sa.Double, None),
        ("json", "json", sa.Text, None),
        ("password", "varchar(100)", sa.String, 200),
        ("md5", "", sa.String, 200),
        ("encrypted", "varchar(50)", sa.Text, None),
        ("file", "int(11)", sa.Text, None),
        ("time", "timestamp", sa.String, 20),
        ("year", "", sa.Integer, None),
    ],
)
def test_sa_type(ctype: str, data_type: str, cls: type[Any], length: int | None) -> None:
    t = sa_type(col(ctype, data_type))
    assert type(t) is cls
    if length is not None:
        assert isinstance(t, sa.String) and t.length == length


def _compile(t: sa.types.TypeEngine[Any], dialect: sa.engine.Dialect) -> str:
    return str(t.compile(dialect=dialect)).upper()


def test_longtext_variant_only_on_mysql() -> None:
    for ctype, data_type in (("file", ""), ("image.png", "blob"), ("content", "longtext"), ("label", "bytea")):
        t = sa_type(col(ctype, data_type))
        assert _compile(t, MySQLDialect()) == "LONGTEXT"
        assert _compile(t, PG) == "TEXT"
        assert _compile(t, SQLiteDialect()) == "TEXT"
    assert _compile(sa_type(col("content", "text")), MySQLDialect()) == "TEXT"


EXTRA: list[tuple[str, str, Any, Any]] = [  # ColumnType, DataType, client value, stored value
    ("label", "varchar(1000)", "x" * 900, "x" * 900),
    ("value", "int(11)", "42", 42),
    ("value", "bigint", 2**40, 2**40),
    ("content", "mediumtext", "m" * 70000, "m" * 70000),
    ("label", "char(2)", "ab", "ab"),
    ("value", "double precision", "2.5", 2.5),
    ("json", "jsonb", [1], "[1]"),
    ("gzip", "bytea", "[]", "[]"),
    ("truefalse", "int(1)", "false", 0),
    ("date", "varchar(40)", 0, "1970-01-01T00:00:00Z"),
]


def _table_of_every_type() -> tuple[sa.Table, list[Column]]:
    cols = [Column(column_name=f"c_{i}", column_type=t) for i, t in enumerate(SPEC_TYPES)]
    cols += [Column(column_name=f"e_{i}", column_type=t, data_type=d) for i, (t, d, _, _) in enumerate(EXTRA)]
    meta = sa.MetaData()
    table = sa.Table(
        "every_type",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        *(sa.Column(c.column_name, sa_type(c)) for c in cols),
    )
    return table, cols


@pytest.mark.parametrize("dialect", [SQLiteDialect(), PG, MySQLDialect()])
def test_ddl_compiles_for_every_dialect(dialect: sa.engine.Dialect) -> None:
    table, _ = _table_of_every_type()
    ddl = str(CreateTable(table).compile(dialect=dialect))
    assert "CREATE TABLE every_type" in ddl
    assert f"c_{SPEC_TYPES.index('label')} VARCHAR(100)" in ddl
    if dialect.name == "mysql":
        assert f"c_{SPEC_TYPES.index('file')} LONGTEXT" in ddl
    else:
        assert "LONGTEXT" not in ddl
    if dialect.name == "postgresql":
        assert "DOUBLE PRECISION" in ddl and "TIMESTAMP WITHOUT TIME ZONE" in ddl


SAMPLES: dict[str, Any] = {
    "id": 7, "alias": "slug", "enum": "A", "date": "2024-01-02", "time": "10:30", "day": "monday", "month": 3,
    "year": 2024, "minute": 5, "hour": 6, "datetime": "2024-01-02T03:04:05Z", "timestamp": 1700000000,
    "email": "a@b.co", "namespace": "ns.x", "name": "N", "label": "L", "hidden": "H", "content": "C",
    "html": "<b>x</b>", "markdown": "# x", "json": {"k": [1]}, "value": "v", "measurement": "12", "float": 1.25,
    "rating": 9, "truefalse": "true", "color": "#abc", "location": "[1, 2]", "location.latitude": 1.5,
    "location.longitude": 2.5, "location.altitude": 3.5, "url": "https://x.org", "password": "pw",
    "bcrypt": "pw", "md5": "pw", "md5-bcrypt": "pw", "encrypted": "enc", "file": [{"name": "a", "file": "YQ=="}],
    "image": [], "video": [], "gzip": '[{"name": "m.gz", "contents": "H4sI"}]',
}  # fmt: skip


def test_sqlite_create_insert_and_read_back() -> None:
    table, cols = _table_of_every_type()
    engine = sa.create_engine("sqlite://")
    by_name = {c.column_name: c for c in cols}
    row = {}
    for c in cols:
        if c.column_name.startswith("c_"):
            opts = [{"Value": "a"}] if c.column_type == "enum" else []
            row[c.column_name] = to_db(replace(c, options=opts), SAMPLES[c.column_type], secret=SECRET)
        else:
            row[c.column_name] = to_db(c, EXTRA[int(c.column_name[2:])][2], secret=SECRET)
    with engine.begin() as conn:
        table.metadata.create_all(conn)
        conn.execute(table.insert().values(**row))
        got = conn.execute(sa.select(table)).mappings().one()
    out = {k: to_api(by_name[k], v) for k, v in got.items() if k in by_name}
    idx = {t: f"c_{i}" for i, t in enumerate(SPEC_TYPES)}
    assert out[idx["truefalse"]] is True
    assert out[idx["datetime"]] == "2024-01-02T03:04:05Z"
    assert out[idx["date"]] == "2024-01-02T00:00:00Z"
    assert out[idx["timestamp"]] == "2023-11-14T22:13:20Z"
    assert out[idx["time"]] == "10:30:00"
    assert out[idx["measurement"]] == 12
    assert out[idx["enum"]] == "a"
    assert out[idx["password"]] == ""
    assert crypto.check_password("pw", got[idx["password"]])
    assert crypto.decrypt(SECRET, out[idx["encrypted"]]) == "enc"
    assert jsonutil.loads(out[idx["json"]]) == {"k": [1]}
    assert jsonutil.loads(out[idx["file"]]) == [{"name": "a", "file": "YQ=="}]
    assert out[idx["float"]] == 1.25
    for i, (ctype, _, _, stored) in enumerate(EXTRA):
        assert got[f"e_{i}"] == stored, ctype
    assert out["e_8"] is False  # truefalse stored as int reads back as JSON false
    engine.dispose()
