"""Built-in system tables, declared in the same schema format users write.

Adding a system table is one entry in SYSTEM_SCHEMA (later issues append mail tables here).
"""

from __future__ import annotations

from typing import Any

from portside.core import masks
from portside.core.masks import CREATE, DELETE, EXECUTE, PEEK, READ, REFER, UPDATE
from portside.core.schema import SchemaDoc, parse_document


def col(name: str, ctype: str, dtype: str, **extra: Any) -> dict[str, Any]:
    return {"ColumnName": name, "ColumnType": ctype, "DataType": dtype, **extra}


ADMINS = [{"Name": "administrators"}]

SYSTEM_SCHEMA: dict[str, Any] = {
    "Tables": [
        {
            "TableName": "user_account",
            # users see and edit their own row; other members of `users` only learn it exists
            "DefaultPermission": masks.owner(PEEK, READ, UPDATE, EXECUTE, REFER),
            "DefaultGroups": [{"Name": "users", "Permission": masks.group(PEEK)}],
            "AccessGroups": [{"Name": "users", "Permission": masks.group(PEEK, READ, UPDATE, EXECUTE)}],
            "Columns": [
                col("name", "label", "varchar(80)", IsIndexed=True),
                col("email", "email", "varchar(80)", IsUnique=True, IsIndexed=True),
                col("password", "password", "varchar(100)", IsNullable=True),
                col("confirmed", "truefalse", "boolean", DefaultValue="false"),
                col("auth_version", "measurement", "INTEGER", DefaultValue="1", ExcludeFromApi=True),
            ],
            "Validations": [
                {"ColumnName": "email", "Tags": "email"},
                {"ColumnName": "name", "Tags": "required"},
            ],
            "Conformations": [
                {"ColumnName": "email", "Tags": "email"},
                {"ColumnName": "name", "Tags": "trim"},
            ],
        },
        {
            "TableName": "usergroup",
            "IsHidden": True,
            "Columns": [col("name", "label", "varchar(100)", IsUnique=True)],
        },
        {
            "TableName": "world",
            "DefaultOrder": "+table_name",
            "DefaultGroups": ADMINS,
            "Columns": [
                col("table_name", "name", "varchar(200)", IsUnique=True, IsIndexed=True),
                col("world_schema_json", "json", "text"),
                col("is_top_level", "truefalse", "boolean", DefaultValue="true"),
                col("is_hidden", "truefalse", "boolean", DefaultValue="false"),
                col("is_join_table", "truefalse", "boolean", DefaultValue="false"),
                col("is_state_tracking_enabled", "truefalse", "boolean", DefaultValue="false"),
                col("default_order", "label", "varchar(100)", DefaultValue="'+id'"),
                col("icon", "label", "varchar(20)", DefaultValue="'fa-star'"),
            ],
        },
        {
            "TableName": "action",
            "DefaultGroups": ADMINS,
            "CompositeKeys": [["action_name", "world_id"]],
            "Columns": [
                col("action_name", "label", "varchar(100)", IsIndexed=True),
                col("label", "label", "varchar(100)", IsIndexed=True),
                col("instance_optional", "truefalse", "boolean", DefaultValue="true"),
                col("action_schema", "json", "text", ExcludeFromApi=True),
            ],
        },
        {
            "TableName": "smd",
            "DefaultGroups": ADMINS,
            "Columns": [
                col("name", "label", "varchar(100)"),
                col("label", "label", "varchar(100)"),
                col("initial_state", "label", "varchar(100)"),
                col("events", "json", "text"),
            ],
        },
        {
            "TableName": "credential",
            "DefaultGroups": ADMINS,
            "Columns": [
                col("name", "name", "varchar(500)", IsIndexed=True),
                col("content", "encrypted", "text"),
            ],
        },
        {
            "TableName": "cloud_store",
            "DefaultGroups": ADMINS,
            "Columns": [
                col("name", "name", "varchar(100)", IsUnique=True),
                col("store_type", "label", "varchar(100)"),
                col("store_provider", "label", "varchar(100)"),
                col("root_path", "label", "varchar(1000)"),
                col("credential_name", "label", "varchar(1000)", IsNullable=True),
                col("store_parameters", "json", "text"),
            ],
        },
        {
            # users create and manage their own sites (actions/site_rows.py checks the store and hostname);
            # a new site is the owner's to change and anyone's to visit (guest Peek+Execute), as before
            "TableName": "site",
            "DefaultGroups": ADMINS,
            "DefaultPermission": masks.combine(
                masks.guest(PEEK, EXECUTE),
                masks.owner(PEEK, READ, CREATE, UPDATE, DELETE, EXECUTE, REFER),
                masks.group(PEEK, READ, EXECUTE),
            ),
            "AccessGroups": [{"Name": "users", "Permission": masks.group(PEEK, READ, CREATE, UPDATE, DELETE, EXECUTE)}],
            "Columns": [
                col("name", "label", "varchar(100)"),
                col("hostname", "label", "varchar(100)"),
                col("path", "label", "varchar(100)"),
                col("enable", "truefalse", "boolean", DefaultValue="true"),
                col("ftp_enabled", "truefalse", "boolean", DefaultValue="false"),
                col("site_type", "label", "varchar(20)", DefaultValue="'static'"),
            ],
        },
        {
            "TableName": "certificate",
            "DefaultGroups": ADMINS,
            "Columns": [
                col("hostname", "label", "varchar(100)", IsUnique=True),
                col("issuer", "label", "varchar(100)", DefaultValue="'self'"),
                col("generated_at", "datetime", "timestamp", IsNullable=True),
                col("certificate_pem", "content", "text"),
                col("root_certificate", "content", "text"),
                col("public_key_pem", "content", "text"),
                # the key never leaves the server (not in API responses, events or filters); certs/ writes it
                col("private_key_pem", "encrypted", "text", IsNullable=True, ExcludeFromApi=True),
            ],
            "Validations": [{"ColumnName": "hostname", "Tags": "required,max=100,hostname"}],
            "Conformations": [{"ColumnName": "hostname", "Tags": "trim,lower"}],
        },
        {
            "TableName": "stream",
            "DefaultGroups": ADMINS,
            "Columns": [
                col("stream_name", "label", "varchar(100)", IsIndexed=True),
                col("enable", "truefalse", "boolean", DefaultValue="true"),
                col("stream_contract", "json", "text"),
            ],
        },
        {
            "TableName": "feed",
            "DefaultGroups": ADMINS,
            "Columns": [
                col("feed_name", "label", "varchar(100)", IsUnique=True),
                col("title", "label", "varchar(500)"),
                col("description", "content", "text"),
                col("link", "url", "varchar(1000)"),
                col("author_name", "name", "varchar(500)"),
                col("author_email", "email", "varchar(500)"),
                col("enable", "truefalse", "boolean", DefaultValue="false"),
                col("enable_atom", "truefalse", "boolean", DefaultValue="true"),
                col("enable_json", "truefalse", "boolean", DefaultValue="true"),
                col("enable_rss", "truefalse", "boolean", DefaultValue="true"),
                col("page_size", "measurement", "int(11)", DefaultValue="1000"),
                # Portside: items straight from a table (instead of a stream) and how rows map to items
                col("table_name", "label", "varchar(200)", IsNullable=True),
                col("title_column", "label", "varchar(200)", IsNullable=True),
                col("content_column", "label", "varchar(200)", IsNullable=True),
                col("published_column", "label", "varchar(200)", IsNullable=True),
                col("updated_column", "label", "varchar(200)", IsNullable=True),
                col("author_column", "label", "varchar(200)", IsNullable=True),
                col("link_template", "label", "varchar(1000)", IsNullable=True),
                col("filter", "json", "text", IsNullable=True),
                col("sort", "label", "varchar(500)", IsNullable=True),
            ],
        },
        {
            # WebSub subscriptions of the built-in hub (/websub); admin-only, the secret never leaves
            "TableName": "websub_sub",
            "DefaultGroups": ADMINS,
            "DefaultPermission": 0,
            "IsHidden": True,
            "Columns": [
                col("callback", "url", "varchar(1000)"),
                col("topic", "url", "varchar(1000)"),
                col("feed_name", "label", "varchar(100)", IsIndexed=True),
                col("feed_format", "label", "varchar(10)"),
                col("secret", "encrypted", "text", IsNullable=True, ExcludeFromApi=True),
                col("lease_seconds", "measurement", "int(11)"),
                col("expires_at", "datetime", "timestamp", IsNullable=True),
                col("state", "label", "varchar(20)"),
                col("subscriber", "label", "varchar(36)", IsNullable=True),
                col("subscriber_auth", "measurement", "int(11)", IsNullable=True),  # auth_version at subscribe
                col("last_delivery_at", "datetime", "timestamp", IsNullable=True),
                col("last_error", "label", "varchar(500)", IsNullable=True),
            ],
        },
        {
            "TableName": "task",
            "DefaultGroups": ADMINS,
            "Columns": [
                col("name", "label", "varchar(100)", IsIndexed=True),
                col("action_name", "label", "varchar(100)"),
                col("entity_name", "label", "varchar(100)"),
                col("schedule", "label", "varchar(100)"),
                col("job_type", "label", "varchar(100)"),
                col("active", "truefalse", "boolean", DefaultValue="true"),
                col("attributes", "json", "text"),
            ],
        },
        {
            "TableName": "template",
            "DefaultGroups": ADMINS,
            "Columns": [
                col("name", "label", "varchar(500)", IsUnique=True),
                col("content", "content", "text"),
                col("action_config", "json", "text", DefaultValue="'{}'"),
                col("cache_config", "json", "text", DefaultValue="'{}'"),
                col("mime_type", "label", "varchar(500)"),
                col("headers", "json", "text"),
                col("url_pattern", "json", "text"),
            ],
        },
        {
            # /live user topics: durable, one name space with tables; the row's owner and permission are
            # the topic's (create 16256: owner everything); `name` is unique, so two creates: one wins
            "TableName": "live_topic",
            "DefaultPermission": 16256,
            "IsHidden": True,
            "Columns": [col("name", "label", "varchar(200)", IsUnique=True, IsNullable=False)],
        },
        {
            # application passwords (auth/login.py): each user sees, renames and deletes their own rows; rows
            # are made only by the action user_account/create_app_password (the table gate gives no Create);
            # the SHA-256 of the secret is never returned, never in an event, never written through the API
            "TableName": "app_password",
            "DefaultPermission": masks.owner(PEEK, READ, UPDATE, DELETE),
            "AccessGroups": [{"Name": "users", "Permission": masks.group(PEEK, READ, UPDATE, DELETE)}],
            "IsHidden": True,
            "Columns": [
                col("name", "label", "varchar(100)"),
                col("secret_hash", "password", "varchar(100)", IsNullable=True, ExcludeFromApi=True),
                col("last_used", "datetime", "timestamp", IsNullable=True),
            ],
        },
    ],
    "Relations": [
        {"Subject": "action", "Relation": "belongs_to", "Object": "world"},
        {"Subject": "feed", "Relation": "belongs_to", "Object": "stream"},
        {"Subject": "world", "Relation": "has_many", "Object": "smd"},
        {"Subject": "cloud_store", "Relation": "has_one", "Object": "credential"},
        {"Subject": "site", "Relation": "has_one", "Object": "cloud_store"},
        {
            "Subject": "task",
            "Relation": "has_one",
            "Object": "user_account",
            "ObjectName": "as_user_id",
            "SubjectName": "task_executed",
        },
    ],
}

SYSTEM_TABLE_NAMES = frozenset(t["TableName"] for t in SYSTEM_SCHEMA["Tables"])


def system_doc() -> SchemaDoc:
    return parse_document(SYSTEM_SCHEMA, "<system>")
