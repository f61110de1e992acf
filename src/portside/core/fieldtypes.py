"""Every Daptin ColumnType in one place: SQL type, client value -> DB value, DB value -> wire value.

Two layers decide a value:

1. the *semantic* handler for the ColumnType (``REGISTRY``; exact name first, then the family before the dot,
   unknown types fall back to plain text) validates and transforms (hashes passwords, checks enum options...);
2. the *storage* of the column (from its DataType text, or the type's typical DataType when empty) coerces the
   result to what the SQL column holds (int, float, bool, naive-UTC datetime or length-checked text).

So an ``alias`` column with DataType ``int(11)`` stores ints, and a ``truefalse`` column with ``int(1)``
stores 1/0. Bad client input always raises ``FieldError``; nothing here ever builds SQL text from a value.

Deliberate choices: date/times without a zone are taken as UTC (Daptin uses the server's local zone) and
stored naive UTC; ``time`` values are stored as ``HH:MM:SS`` text (a time-ish DataType becomes varchar(20));
the declared ``varchar(n)`` limit is enforced even when n > 768 makes the column TEXT; ``int`` DataTypes hold
32-bit values (MySQL/PostgreSQL INTEGER), ``bigint`` 64-bit; strings with NUL or lone surrogates are refused
(PostgreSQL rejects them); assets must be a list of ``{name, file|contents, type?, path?}`` with a plain
file name and a relative path without ``..``.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from portside.core.assets import file_problem
from portside.core.coerce import (
    INT32,
    INT64,
    FieldError,
    as_bool,
    as_datetime,
    as_float,
    as_int,
    as_text,
    bad,
)
from portside.core.schema import Column
from portside.tools import crypto, jsonutil, names

BCRYPT_ROUNDS = crypto.DEFAULT_ROUNDS  # tests lower this to keep bcrypt fast (`use_bcrypt_rounds`)
MAX_STRING_INDEXABLE = 768  # utf8mb4 varchar above this can't be indexed on MySQL/MariaDB: use TEXT


# ---------------------------------------------------------------- storage (from DataType text)


@dataclass(frozen=True)
class Storage:
    kind: str  # int | bigint | float | bool | datetime | string | text | longtext
    length: int = 0  # declared character limit, 0 = none


_DT_RE = re.compile(r"\s*([a-z_]+(?:\s+(?:precision|varying))?)\s*(?:\(\s*(\d+)\s*(?:,\s*\d+\s*)?\))?")
_BASE_KIND = {
    **dict.fromkeys(["varchar", "char", "character", "character varying", "nvarchar", "nchar"], "string"),
    **dict.fromkeys(["int", "integer", "smallint", "mediumint", "tinyint", "serial"], "int"),
    **dict.fromkeys(["bigint", "bigserial"], "bigint"),
    **dict.fromkeys(["text", "tinytext", "json", "jsonb"], "text"),
    **dict.fromkeys(["mediumtext", "longtext", "blob", "tinyblob", "mediumblob", "longblob"], "longtext"),
    **dict.fromkeys(["bytea", "binary", "varbinary"], "longtext"),
    **dict.fromkeys(["bool", "boolean", "bit"], "bool"),
    **dict.fromkeys(["timestamp", "timestamptz", "datetime", "date"], "datetime"),
    **dict.fromkeys(["float", "double", "double precision", "real", "decimal", "numeric"], "float"),
    "time": "time",
}


def _parse_data_type(text: str) -> Storage | None:
    m = _DT_RE.match(text.lower())
    if not m:
        return None
    kind = _BASE_KIND.get(" ".join(m.group(1).split()))
    if kind is None:
        return None
    if kind == "time":  # times are kept as "HH:MM:SS" text
        return Storage("string", 20)
    if kind == "string":
        return Storage("string", max(int(m.group(2) or 255), 1))
    return Storage(kind)


def _texty(st: Storage) -> bool:
    return st.kind in ("string", "text", "longtext")


@functools.lru_cache(maxsize=2048)
def storage_for(column_type: str, data_type: str) -> Storage:
    """Storage of a (ColumnType, DataType) pair. Cached: add REGISTRY entries before first use.

    An empty or unrecognised DataType falls back to the ColumnType's typical DataType (§1.5).
    """
    kind = _lookup(column_type)
    st = _parse_data_type(data_type) if data_type.strip() else None
    st = st or _parse_data_type(kind.data_type) or Storage("string", 100)
    return kind.storage(st) if kind.storage else st


def _storage(col: Column) -> Storage:
    return storage_for(col.column_type, col.data_type)


def sa_type(col: Column) -> sa.types.TypeEngine[Any]:
    """SQLAlchemy type for the column; the same DDL works on SQLite, PostgreSQL and MySQL/MariaDB."""
    st = _storage(col)
    if st.kind == "int":
        return sa.Integer()
    if st.kind == "bigint":
        return sa.BigInteger()
    if st.kind == "float":
        return sa.Double()
    if st.kind == "bool":
        return sa.Boolean()
    if st.kind == "datetime":
        return sa.DateTime()
    if st.kind == "string" and st.length <= MAX_STRING_INDEXABLE:
        return sa.String(st.length)
    if st.kind == "longtext":
        return sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
    return sa.Text()


def _store(col: Column, st: Storage, v: Any) -> Any:
    if v is None:
        return None
    if st.kind in ("int", "bigint"):
        return as_int(col, v, INT32 if st.kind == "int" else INT64)
    if st.kind == "float":
        return as_float(col, v)
    if st.kind == "bool":
        return as_bool(col, v)
    if st.kind == "datetime":
        return as_datetime(col, v)
    s = as_text(col, v)
    if st.length and len(s) > st.length:
        raise bad(col, f"longer than {st.length} characters")
    return s


# ---------------------------------------------------------------- semantic handlers

Convert = Callable[[Column, Any, str], Any]


@dataclass(frozen=True)
class FieldKind:
    convert: Convert  # (column, client value, encryption secret) -> value handed to storage coercion
    data_type: str = "varchar(100)"  # typical DataType when the column declares none
    secret: bool = False  # never in change events
    heavy: bool = False  # CPU-heavy conversion: run off the event loop
    storage: Callable[[Storage], Storage] | None = None  # override of the DataType-derived storage


def _scalar(col: Column, v: Any, secret: str) -> Any:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str | int | float):
        return v
    raise bad(col, "expected text or a number")


def _integer(lo: int | None = None, hi: int | None = None, blank_zero: bool = False) -> Convert:
    def convert(col: Column, v: Any, secret: str) -> Any:
        if blank_zero and isinstance(v, str) and v.strip().lower() in ("", "-", "na"):
            return 0
        if isinstance(v, bool):
            raise bad(col, "expected an integer")
        if blank_zero and _storage(col).kind == "float":
            return as_float(col, v)
        n = as_int(col, v)
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            raise bad(col, f"must be between {lo} and {hi}")
        return n

    return convert


def _float(col: Column, v: Any, secret: str) -> Any:
    if isinstance(v, bool):
        raise bad(col, "expected a number")
    return as_float(col, v)


def _truefalse(col: Column, v: Any, secret: str) -> Any:
    return as_bool(col, v)


def _datetime(col: Column, v: Any, secret: str) -> Any:
    return as_datetime(col, v)


_TIME_RE = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?")


def _time(col: Column, v: Any, secret: str) -> Any:
    m = _TIME_RE.fullmatch(v.strip()) if isinstance(v, str) else None
    if not m:
        raise bad(col, "expected a time HH:MM[:SS]")
    h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    if h > 23 or mi > 59 or s > 59:
        raise bad(col, "time out of range")
    return f"{h:02d}:{mi:02d}:{s:02d}"


_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")


def is_email(v: Any) -> bool:
    """A plausible address, without control characters or compatibility look-alikes (`tools.names`)."""
    return (
        isinstance(v, str)
        and len(v) <= 254
        and _EMAIL_RE.fullmatch(v) is not None
        and names.email_problem(names.email(v)) is None
    )


def _email(col: Column, v: Any, secret: str) -> Any:
    if not isinstance(v, str) or not is_email(v.strip()):
        raise bad(col, "expected an email address")
    return v.strip()


def is_http_url(v: Any) -> bool:
    if not isinstance(v, str) or not v or any(c.isspace() or ord(c) < 32 for c in v):
        return False
    try:
        parts = urllib.parse.urlsplit(v)
        return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def _url(col: Column, v: Any, secret: str) -> Any:
    if not isinstance(v, str) or not is_http_url(v.strip()):
        raise bad(col, "expected an http(s) URL")
    return v.strip()


def _enum(col: Column, v: Any, secret: str) -> Any:
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise bad(col, "expected one of the allowed values")
    value = str(v).strip().lower()
    allowed = [str(o.get("Value", "")).lower() for o in col.options]
    if value not in allowed:
        shown = ", ".join(allowed[:10]) + (", ..." if len(allowed) > 10 else "")
        raise bad(col, f"must be one of {shown}" if allowed else "no options are defined")
    return value


_COLOR_RE = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")


def _color(col: Column, v: Any, secret: str) -> Any:
    if not isinstance(v, str):
        raise bad(col, "expected a colour")
    s = v.strip()
    if (s.startswith("#") and not _COLOR_RE.fullmatch(s)) or len(s) > 50:
        raise bad(col, "expected #rgb, #rrggbb or a colour name")
    return s


def _json(col: Column, v: Any, secret: str) -> Any:
    if isinstance(v, str):
        text = v
    elif isinstance(v, dict | list | int | float | bool):
        text = jsonutil.dumps_str(v)
    else:
        raise bad(col, "expected JSON")
    try:
        jsonutil.loads(text)
    except jsonutil.JSONError:
        raise bad(col, "not valid JSON") from None
    return text


def _secret_text(col: Column, v: Any) -> str:
    if not isinstance(v, str):
        raise bad(col, "expected a string")
    if not v:
        raise bad(col, "must not be empty")
    return v


def use_bcrypt_rounds(rounds: int) -> None:
    """The bcrypt cost of new hashes in this process (the runtime sets the test-only cost; see settings)."""
    global BCRYPT_ROUNDS
    BCRYPT_ROUNDS = rounds


def _bcrypt_of(col: Column, plain: str) -> str:
    if len(plain.encode("utf-8")) > crypto.BCRYPT_MAX_BYTES:
        raise bad(col, f"longer than {crypto.BCRYPT_MAX_BYTES} bytes")
    return crypto.hash_password(plain, BCRYPT_ROUNDS)


def _bcrypt(col: Column, v: Any, secret: str) -> Any:
    return _bcrypt_of(col, _secret_text(col, v))


def _md5(col: Column, v: Any, secret: str) -> Any:
    return crypto.md5_hex(_secret_text(col, v))


def _md5_bcrypt(col: Column, v: Any, secret: str) -> Any:
    return _bcrypt_of(col, crypto.md5_hex(_secret_text(col, v)))


def _encrypted(col: Column, v: Any, secret: str) -> Any:
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise bad(col, "expected text")
    return crypto.encrypt(secret, as_text(col, v))


def _asset(col: Column, v: Any, secret: str) -> Any:
    items = v
    if isinstance(v, str):
        try:
            items = jsonutil.loads(v)
        except jsonutil.JSONError:
            raise bad(col, "expected a JSON array of files") from None
    if not isinstance(items, list):
        raise bad(col, "expected a JSON array of files")
    for i, item in enumerate(items):
        why = file_problem(i, item)
        if why:
            raise bad(col, why)
    return v if isinstance(v, str) else jsonutil.dumps_str(items)


def _hash_storage(st: Storage) -> Storage:
    if st.kind in ("text", "longtext") or (st.kind == "string" and st.length >= 200):
        return st
    return Storage("string", 200)


def _text_storage(st: Storage) -> Storage:
    return st if _texty(st) else Storage("text")


_TEXT = FieldKind(_scalar)


def _hashed(convert: Convert, heavy: bool) -> FieldKind:
    return FieldKind(convert, "varchar(200)", secret=True, heavy=heavy, storage=_hash_storage)


_ASSET = FieldKind(_asset, "longblob", storage=lambda st: Storage("longtext"))
_LOCATION_AXIS = FieldKind(_float, "float(7,4)")

REGISTRY: dict[str, FieldKind] = {
    "id": FieldKind(_integer(), "INTEGER"),
    "alias": _TEXT,
    "enum": FieldKind(_enum, "varchar(50)"),
    "date": FieldKind(_datetime, "timestamp"),
    "datetime": FieldKind(_datetime, "timestamp"),
    "timestamp": FieldKind(_datetime, "timestamp"),
    "time": FieldKind(_time, "varchar(20)", storage=lambda st: st if _texty(st) else Storage("string", 20)),
    "day": FieldKind(_scalar, "varchar(10)"),
    "month": FieldKind(_integer(1, 12), "int(4)"),
    "year": FieldKind(_integer(), "int(4)"),
    "minute": FieldKind(_integer(0, 59), "int(4)"),
    "hour": FieldKind(_integer(0, 23), "int(4)"),
    "rating": FieldKind(_integer(0, 10), "int(4)"),
    "measurement": FieldKind(_integer(blank_zero=True), "int(10)"),
    "email": FieldKind(_email, "varchar(100)"),
    "namespace": FieldKind(_scalar, "varchar(200)"),
    "name": _TEXT,
    "label": _TEXT,
    "hidden": _TEXT,
    "value": _TEXT,
    "content": FieldKind(_scalar, "text"),
    "html": FieldKind(_scalar, "text"),
    "markdown": FieldKind(_scalar, "text"),
    "json": FieldKind(_json, "text", storage=_text_storage),
    "float": FieldKind(_float, "float(7,4)"),
    "truefalse": FieldKind(_truefalse, "bool"),
    "color": FieldKind(_color, "varchar(50)"),
    "location": FieldKind(_scalar, "varchar(50)"),
    "location.latitude": _LOCATION_AXIS,
    "location.longitude": _LOCATION_AXIS,
    "location.altitude": _LOCATION_AXIS,
    "url": FieldKind(_url, "varchar(500)"),
    "password": _hashed(_bcrypt, heavy=True),
    "bcrypt": _hashed(_bcrypt, heavy=True),
    "md5": _hashed(_md5, heavy=False),
    "md5-bcrypt": _hashed(_md5_bcrypt, heavy=True),
    "encrypted": FieldKind(
        _encrypted, "text", secret=True, storage=lambda st: st if st.kind == "longtext" else Storage("text")
    ),
    "file": _ASSET,
    "image": _ASSET,
    "video": _ASSET,
    "gzip": _ASSET,
}
COLUMN_TYPES: tuple[str, ...] = tuple(REGISTRY)
ASSET_FAMILIES = frozenset({"file", "image", "video", "gzip"})


def _lookup(column_type: str) -> FieldKind:
    t = column_type.strip().lower()
    return REGISTRY.get(t) or REGISTRY.get(t.split(".", 1)[0]) or _TEXT


# ---------------------------------------------------------------- public API


def to_db(col: Column, value: Any, *, secret: str) -> Any:
    """Validate a client (JSON) value and convert it to what the column stores; None passes through."""
    if value is None:
        return None
    try:
        return _store(col, _storage(col), _lookup(col.column_type).convert(col, value, secret))
    except FieldError:
        raise
    except (ValueError, TypeError, ArithmeticError, OSError, RecursionError):
        raise bad(col, "unsupported value") from None


def _truthy(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "t", "yes", "y", "on")
    return bool(v)


HASHED_TYPES = frozenset({"password", "bcrypt", "md5", "md5-bcrypt"})


def to_api(col: Column, value: Any) -> Any:
    """DB value -> wire value. Hashed types (password, bcrypt, md5, md5-bcrypt) are always "" (no hash ever
    leaves the server); encrypted values stay ciphertext, as Daptin returns them."""
    convert = api_converter(col)
    return value if convert is None else convert(value)


def _blank(_value: Any) -> Any:
    return ""


def _api_bool(value: Any) -> Any:
    return None if value is None else _truthy(value)


def _api_datetime(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:  # stored naive UTC
            return value.isoformat() + "Z"
        return jsonutil.iso(value)
    return _api_generic(value)


def _api_generic(value: Any) -> Any:
    if type(value) is str or value is None:  # the usual case first: a list page converts every text cell
        return value
    if isinstance(value, dt.datetime):
        return jsonutil.iso(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return value


@functools.lru_cache(maxsize=4096)
def _converter_for(column_type: str, data_type: str) -> Callable[[Any], Any] | None:
    if column_type.strip().lower() in HASHED_TYPES:
        return _blank
    kind = storage_for(column_type, data_type).kind
    if column_type.split(".", 1)[0].lower() == "truefalse" or kind == "bool":
        return _api_bool
    if kind == "datetime":
        return _api_datetime
    if kind in ("int", "bigint", "float"):
        return None  # drivers return Python numbers
    return _api_generic


def api_converter(col: Column) -> Callable[[Any], Any] | None:
    """The DB → wire conversion of a column (None: the value goes out as it is). Computed once per type."""
    fk = col.foreign_key
    if fk is not None and fk.data_source == "cloud_store" and col.family in ASSET_FAMILIES:
        return _stored_files  # metadata of files kept in a cloud store: a JSON array on the wire
    return _converter_for(col.column_type, col.data_type)


def _stored_files(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return jsonutil.loads(value)
        except jsonutil.JSONError:
            return value
    return value


def is_secret(col: Column) -> bool:
    return _lookup(col.column_type).secret


def needs_thread(col: Column) -> bool:
    return _lookup(col.column_type).heavy


def _unquote(text: str) -> str:
    s = text.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    return s


def default_for_insert(col: Column) -> Any:
    """Insert-time value from DefaultValue (None when absent, a DB-side timestamp, or for secret types).

    Raises FieldError when the schema's default does not fit the column type.
    """
    if col.default_value is None or is_secret(col):
        return None
    s = _unquote(col.default_value)
    if s.lower() in ("current_timestamp", "current_timestamp()", "now()", "null"):
        return None
    if s == "" and not _texty(_storage(col)) and _lookup(col.column_type) is not REGISTRY["measurement"]:
        return None
    return to_db(col, s, secret="")


__all__ = [
    "ASSET_FAMILIES",
    "BCRYPT_ROUNDS",
    "COLUMN_TYPES",
    "REGISTRY",
    "FieldError",
    "FieldKind",
    "Storage",
    "default_for_insert",
    "is_email",
    "is_http_url",
    "is_secret",
    "needs_thread",
    "sa_type",
    "storage_for",
    "to_api",
    "to_db",
]
