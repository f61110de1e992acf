"""The tables behind CalDAV/CardDAV, declared in the schema format (Daptin's `collection` and `calendar` names).

- `collection`: a calendar or an address book, owned by a user (`user_account_id`) and shared with groups
  through the usual group link; its path is `/users/<owner ref>/<calendars|addressbooks>/<name>/`, unique
  per (owner, kind, name), so two users' paths never collide. `sync_seq` counts its changes (ctag and sync
  token); `properties` keeps the dead properties clients set with PROPPATCH.
- `calendar`: one object (an iCalendar or a vCard) in a collection, named `href` (unique per collection).
  `etag`, `uid`, `component`, `dtstart`/`dtend` (the bounds of every recurrence, null = open), `summary`,
  `contact_names` and `contact_emails` are derived from `content` on every write (davstore.hooks), so
  REPORTs select candidates in SQL.
- `dav_change`: the change log of each collection (RFC 6578 sync-collection deltas, deletions included).
"""

from __future__ import annotations

from typing import Any

from portside.core import masks
from portside.core.masks import CREATE, DELETE, EXECUTE, PEEK, READ, REFER, UPDATE
from portside.core.schema import SchemaDoc, parse_document

COLLECTION = "collection"
OBJECT = "calendar"
CHANGE = "dav_change"
KIND_CALENDAR = "calendar"
KIND_ADDRESSBOOK = "addressbook"


def _col(name: str, ctype: str, dtype: str, **extra: Any) -> dict[str, Any]:
    return {"ColumnName": name, "ColumnType": ctype, "DataType": dtype, **extra}


_OWNER_ALL = masks.owner(PEEK, READ, CREATE, UPDATE, DELETE, EXECUTE, REFER)
_USERS = [{"Name": "users", "Permission": masks.group(PEEK, READ, CREATE, UPDATE, DELETE, EXECUTE, REFER)}]

DAV_SCHEMA: dict[str, Any] = {
    "Tables": [
        {
            "TableName": COLLECTION,
            "DefaultPermission": _OWNER_ALL,
            "AccessGroups": _USERS,
            "CompositeKeys": [["user_account_id", "kind", "name"]],
            "Columns": [
                _col("name", "label", "varchar(200)", IsIndexed=True),
                _col("kind", "label", "varchar(20)", DefaultValue="'calendar'"),
                _col("display_name", "label", "varchar(500)", IsNullable=True),
                _col("description", "content", "text", IsNullable=True),
                _col("color", "label", "varchar(30)", IsNullable=True),
                _col("components", "label", "varchar(100)", DefaultValue="'VEVENT,VTODO,VJOURNAL'"),
                _col("timezone", "content", "text", IsNullable=True),
                _col("properties", "json", "text", IsNullable=True),
                _col("sync_seq", "measurement", "INTEGER", DefaultValue="0", ExcludeFromApi=True),
            ],
            "Validations": [{"ColumnName": "name", "Tags": "required"}],
        },
        {
            "TableName": OBJECT,
            "DefaultPermission": _OWNER_ALL,
            "AccessGroups": _USERS,
            "CompositeKeys": [["collection_id", "href"]],
            "Columns": [
                _col("href", "label", "varchar(255)"),
                _col("content", "content", "longtext"),
                _col("etag", "label", "varchar(80)", IsNullable=True),
                _col("uid", "label", "varchar(255)", IsNullable=True, IsIndexed=True),
                _col("component", "label", "varchar(20)", IsNullable=True, IsIndexed=True),
                _col("dtstart", "datetime", "timestamp", IsNullable=True, IsIndexed=True),
                _col("dtend", "datetime", "timestamp", IsNullable=True, IsIndexed=True),
                _col("bounds_exact", "truefalse", "boolean", DefaultValue="false"),
                _col("indexed_until", "datetime", "timestamp", IsNullable=True),
                _col("summary", "label", "varchar(500)", IsNullable=True),
                _col("contact_names", "label", "varchar(1000)", IsNullable=True),
                _col("contact_emails", "label", "varchar(1000)", IsNullable=True),
                _col("sync_seq", "measurement", "INTEGER", DefaultValue="0", ExcludeFromApi=True),
            ],
        },
        {
            "TableName": CHANGE,
            "DefaultGroups": [{"Name": "administrators"}],
            "DefaultPermission": 0,
            "IsHidden": True,
            "Columns": [
                _col("collection_ref", "label", "varchar(40)", IsIndexed=True),
                _col("seq", "measurement", "INTEGER", IsIndexed=True),
                _col("href", "label", "varchar(255)"),
                _col("deleted", "truefalse", "boolean", DefaultValue="false"),
            ],
        },
    ],
    "Relations": [{"Subject": OBJECT, "Relation": "belongs_to", "Object": COLLECTION}],
}


def dav_doc() -> SchemaDoc:
    return parse_document(DAV_SCHEMA, "<dav>")
