"""File contents of store-kept asset columns as JSON:API `included` items (spec core §10.1).

`included_relations=<column>` (or `*`) on a read of rows whose asset column keeps its files in a cloud
store adds one `included` item per file: `type` is the column's type (e.g. `image`), `id` is
`<row id>/<column>/<index>`, and the attributes are the file's metadata plus `contents` (base64) and the
row (`reference_id`, `column`). Bounded: a file over `storage.include.max_file_bytes` (default 1 MiB), or
past `storage.include.max_bytes` for the whole response (default 8 MiB), or past the first
`MAX_INCLUDED_FILES` files, is listed with `contents: null` and `omitted` saying why; a file missing from
the store is listed with `omitted: "missing"`. Files of type `x-crdt/yjs` (collaborative documents) are
left out unless `x-crdt/yjs` is named too (which alone asks for those files of every such column).
The rows are already those the caller may read; reads run off the event loop, one file at a time.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from portside.core import filetext
from portside.core.config import ConfigStore
from portside.core.model import TableModel
from portside.core.records import RowData
from portside.errors import NotFound
from portside.storage.assets import AssetFiles, in_store
from portside.tools import jsonutil

MAX_FILE_KEY = "storage.include.max_file_bytes"
MAX_TOTAL_KEY = "storage.include.max_bytes"
DEFAULT_MAX_FILE = 1024 * 1024
DEFAULT_MAX_TOTAL = 8 * 1024 * 1024
MAX_INCLUDED_FILES = 200


def _entries(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        try:
            value = jsonutil.loads(value) if value.strip() else []
        except jsonutil.JSONError:
            return []
    return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


async def included_files(
    files: AssetFiles, config: ConfigStore, tm: TableModel, rows: Sequence[RowData], names: Sequence[str]
) -> list[dict[str, Any]]:
    yjs = filetext.YJS_TYPE in names
    columns = [
        c
        for c in tm.columns.values()
        if in_store(c) and not c.exclude_from_api and ("*" in names or c.column_name in names or yjs)
    ]
    if not columns:
        return []
    per_file = max(0, config.get_int(MAX_FILE_KEY, DEFAULT_MAX_FILE))
    left = max(0, config.get_int(MAX_TOTAL_KEY, DEFAULT_MAX_TOTAL))
    out: list[dict[str, Any]] = []
    for row in rows:
        for col in columns:
            named = "*" in names or col.column_name in names
            for index, meta in enumerate(_entries(row.attrs.get(col.column_name))):
                is_yjs = filetext.is_yjs(meta)
                if (is_yjs and not yjs) or (not is_yjs and not named):
                    continue
                attrs = {k: meta.get(k) for k in ("name", "type", "size", "md5", "path", "src")}
                attrs.update({"reference_id": row.ref, "column": col.column_name, "contents": None})
                if len(out) >= MAX_INCLUDED_FILES:
                    attrs["omitted"] = f"more than {MAX_INCLUDED_FILES} files in one response"
                else:
                    try:
                        data = await files.read(col, meta, min(per_file, left))
                    except NotFound:
                        attrs["omitted"] = "missing"
                    else:
                        if data is None:
                            too_big = per_file if left >= per_file else left
                            attrs["omitted"] = f"larger than the include limit ({too_big} bytes left)"
                        else:
                            left -= len(data)
                            attrs["contents"] = base64.b64encode(data).decode()
                kind = col.column_type or col.family
                out.append({"type": kind, "id": f"{row.ref}/{col.column_name}/{index}", "attributes": attrs})
    return out
