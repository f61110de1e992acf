"""The mail tables (spec §A.2-A.6), declared in the schema format users write.

Daptin's tables and column names are kept where a client could notice; the differences, on purpose:

- `mail_server.domains` (new): comma-separated extra local domains of a server row, so `example.com` and
  `mail.example.com` need no fake rows. `max_size` defaults to 25 MiB (Daptin: 10000 bytes).
- `mail_account.password_md5` is gone (Daptin required it and never read it).
- `mail_box`: `role` (SPECIAL-USE: `\\Sent`, `\\Drafts`, `\\Junk`, `\\Trash`, `\\Archive`, empty for INBOX
  and user boxes), `modseq` (the mailbox's highest modification sequence, CONDSTORE/QRESYNC); `nextuid` is
  the UID counter (UIDNEXT), only ever increased; one box per (account, name).
- `mail`: `answered`, `flagged`, `draft` flag columns and `keywords` (space-separated) next to Daptin's
  `seen`/`recent`/`deleted`/`flags`; `modseq` per message; `junk` and `spam_verdict` (JSON: which checks,
  which score) for the spam decision; the raw message (`mail`) is not part of API rows or events (it can be
  25 MiB) - `mail.store.MailStore.raw` reads it.
- `outbox.failed` (new): the row failed for good (a 5xx reply or the last retry; the sender got a DSN), so it
  is never picked again whatever the retry settings become.
- `mail_expunged` (new, hidden): one row per expunged UID with the modseq of the expunge, so IMAP QRESYNC
  can answer VANISHED.

Rights (README "Mail"): administrators manage servers, accounts and the outbox; every signed-in user passes
the table gate of `mail_account`, `mail_box` and `mail` for reading, and rows are readable by their owner
only (the account's owner; mask owner peek+read, no group links). So an owner sees their own mail through
/api and gets its /live events on the `mail` topic; nobody else does (administrators, as everywhere, may).
"""

from __future__ import annotations

from typing import Any

from portside.core import masks
from portside.core.masks import DELETE, PEEK, READ, UPDATE
from portside.core.schema import SchemaDoc, parse_document

MAIL_TABLE = "mail"
EXPUNGED_TABLE = "mail_expunged"
OWNER_READ = masks.owner(PEEK, READ)
USERS_READ = [{"Name": masks.USERS_GROUP, "Permission": masks.group(PEEK, READ)}]
DEFAULT_MAX_SIZE = 25 * 1024 * 1024


def col(name: str, ctype: str, dtype: str, **extra: Any) -> dict[str, Any]:
    return {"ColumnName": name, "ColumnType": ctype, "DataType": dtype, **extra}


MAIL_SCHEMA: dict[str, Any] = {
    "Tables": [
        {
            "TableName": "mail_server",
            "DefaultPermission": masks.owner(PEEK, READ, UPDATE, DELETE),
            "Columns": [
                col("hostname", "label", "varchar(100)", IsUnique=True),
                col("is_enabled", "truefalse", "boolean", DefaultValue="false"),
                col("listen_interface", "label", "varchar(100)", DefaultValue="'0.0.0.0:465'"),
                col("max_size", "measurement", "int(11)", DefaultValue=str(DEFAULT_MAX_SIZE)),
                col("max_clients", "measurement", "int(11)", DefaultValue="20"),
                col("xclient_on", "truefalse", "boolean", DefaultValue="false"),
                col("always_on_tls", "truefalse", "boolean", DefaultValue="true"),
                col("authentication_required", "truefalse", "boolean", DefaultValue="true"),
                col("domains", "label", "varchar(1000)", IsNullable=True),
            ],
            "Validations": [{"ColumnName": "hostname", "Tags": "required,max=100,hostname"}],
            "Conformations": [{"ColumnName": "hostname", "Tags": "trim,lower"}],
        },
        {
            "TableName": "mail_account",
            "DefaultPermission": OWNER_READ,
            "AccessGroups": USERS_READ,
            "Columns": [
                col("username", "email", "varchar(100)", IsUnique=True, IsIndexed=True),
                col("password", "password", "varchar(200)", IsNullable=True),
                # the next UIDVALIDITY of a new mailbox of this account: only grows, so a box deleted and created
                # again never repeats one (mail.boxes)
                col("next_uidvalidity", "measurement", "bigint", DefaultValue="0", ExcludeFromApi=True),
            ],
            "Validations": [{"ColumnName": "username", "Tags": "required,email"}],
            "Conformations": [{"ColumnName": "username", "Tags": "email"}],
        },
        {
            "TableName": "mail_box",
            "DefaultPermission": OWNER_READ,
            "AccessGroups": USERS_READ,
            "CompositeKeys": [["mail_account_id", "name"]],
            "Columns": [
                col("name", "label", "varchar(100)", IsIndexed=True),
                col("subscribed", "truefalse", "boolean", DefaultValue="true"),
                col("uidvalidity", "measurement", "bigint", DefaultValue="1"),
                col("nextuid", "measurement", "bigint", DefaultValue="1"),
                col("attributes", "label", "varchar(100)", DefaultValue="''"),
                col("flags", "label", "varchar(100)", DefaultValue="''"),
                col("permanent_flags", "label", "varchar(100)", DefaultValue="''"),
                col("role", "label", "varchar(20)", DefaultValue="''"),
                col("modseq", "measurement", "bigint", DefaultValue="1"),
            ],
        },
        {
            "TableName": "mail",
            "DefaultPermission": OWNER_READ,
            "AccessGroups": USERS_READ,
            "DefaultOrder": "+uid",
            "CompositeKeys": [["mail_box_id", "uid"]],
            # what IMAP asks most: changes since a modseq, messages still \Recent, \Deleted ones (no scan of a mailbox)
            "Indexes": [["mail_box_id", "modseq"], ["mail_box_id", "recent"], ["mail_box_id", "deleted"]],
            "Columns": [
                col("message_id", "label", "varchar(500)", IsIndexed=True),
                col("mail_id", "label", "varchar(100)"),
                col("from_address", "label", "varchar(200)"),
                col("to_address", "label", "varchar(200)"),
                col("reply_to_address", "label", "varchar(200)"),
                col("sender_address", "label", "varchar(200)"),
                col("subject", "label", "varchar(500)"),
                col("body", "content", "longtext"),
                col("mail", "gzip", "longblob", ExcludeFromApi=True),
                col("spam_score", "float", "float", DefaultValue="0"),
                col("hash", "label", "varchar(100)"),
                col("content_type", "content", "text"),
                col("recipient", "label", "varchar(200)"),
                col("has_attachment", "truefalse", "boolean", DefaultValue="false"),
                col("ip_addr", "label", "varchar(50)"),
                col("return_path", "label", "varchar(255)"),
                col("is_tls", "truefalse", "boolean", DefaultValue="false"),
                col("internal_date", "datetime", "timestamp", IsIndexed=True),
                col("seen", "truefalse", "boolean", DefaultValue="false", IsIndexed=True),
                col("recent", "truefalse", "boolean", DefaultValue="true", IsIndexed=True),
                col("deleted", "truefalse", "boolean", DefaultValue="false", IsIndexed=True),
                col("answered", "truefalse", "boolean", DefaultValue="false"),
                col("flagged", "truefalse", "boolean", DefaultValue="false"),
                col("draft", "truefalse", "boolean", DefaultValue="false"),
                col("keywords", "content", "text"),
                col("uid", "measurement", "bigint", DefaultValue="0", IsIndexed=True),
                col("modseq", "measurement", "bigint", DefaultValue="1", IsIndexed=True),
                col("spam", "truefalse", "boolean", DefaultValue="false"),
                col("junk", "truefalse", "boolean", DefaultValue="false"),
                col("spam_verdict", "json", "text", IsNullable=True),
                col("size", "measurement", "bigint", DefaultValue="0"),
                col("flags", "label", "varchar(500)", DefaultValue="''"),
            ],
        },
        {
            "TableName": "mail_expunged",
            "DefaultPermission": OWNER_READ,
            "IsHidden": True,
            "Indexes": [["mail_box_id", "modseq"]],
            "Columns": [
                col("uid", "measurement", "bigint", DefaultValue="0", IsIndexed=True),
                col("modseq", "measurement", "bigint", DefaultValue="0", IsIndexed=True),
            ],
        },
        {
            "TableName": "outbox",
            "DefaultPermission": masks.owner(PEEK, READ),
            "Columns": [
                col("from_address", "label", "varchar(200)"),
                col("to_address", "label", "varchar(200)"),
                col("to_host", "label", "varchar(200)"),
                col("mail", "gzip", "longblob", ExcludeFromApi=True),
                col("sent", "truefalse", "boolean", DefaultValue="false", IsIndexed=True),
                col("retry_count", "measurement", "int(11)", DefaultValue="0"),
                col("last_error", "content", "text", IsNullable=True),
                col("next_retry_at", "datetime", "timestamp", IsNullable=True, IsIndexed=True),
                col("failed", "truefalse", "boolean", DefaultValue="false", IsIndexed=True),  # bounced: no retry
            ],
        },
    ],
    "Relations": [
        {"Subject": "mail_account", "Relation": "belongs_to", "Object": "mail_server"},
        {"Subject": "mail_box", "Relation": "belongs_to", "Object": "mail_account"},
        {"Subject": "mail", "Relation": "belongs_to", "Object": "mail_box"},
        {"Subject": "mail_expunged", "Relation": "belongs_to", "Object": "mail_box"},
        {"Subject": "outbox", "Relation": "belongs_to", "Object": "mail_server"},
    ],
}

MAIL_TABLES = frozenset(t["TableName"] for t in MAIL_SCHEMA["Tables"])


def mail_doc() -> SchemaDoc:
    return parse_document(MAIL_SCHEMA, "<mail>")
