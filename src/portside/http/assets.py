"""`GET /asset/{table}/{ref}/{column}`: one file of an asset column, after the row's read checks.

The first file, or `?index=n`, or `?file=<name>`. Files kept in a cloud store stream from it; inline files
(base64 in the row) are decoded. The content type is the file entry's `type`. `?processImage=true` applies
image filters first (`http.images`: crop, width/height, rotate, grayscale, format, quality).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from portside.core import filetext
from portside.core.fieldtypes import ASSET_FAMILIES
from portside.errors import BadRequest, NotFound, PayloadTooLarge
from portside.http import images
from portside.http.common import actor, services
from portside.storage.assets import in_store
from portside.tools import jsonutil

CHUNK = 64 * 1024


def _pick(entries: list[Any], request: Request) -> dict[str, Any]:
    files = [e for e in entries if isinstance(e, dict)]
    wanted = request.query_params.get("file")
    index_text = request.query_params.get("index")
    if wanted is not None:
        found = [e for e in files if e.get("name") == wanted]
        if not found:
            raise NotFound("no such file in this column")
        return found[0]
    if index_text is not None:
        if not (index_text.isascii() and index_text.isdigit() and len(index_text) <= 6):
            raise BadRequest("index must be a number", parameter="index")
        if int(index_text) >= len(files):
            raise NotFound("no such file in this column")
        return files[int(index_text)]
    if not files:
        raise NotFound("this column holds no file")
    return files[0]


async def asset(request: Request) -> Response:
    svc = services(request)
    who = await actor(request)
    table, ref, column = (request.path_params[k] for k in ("table", "ref", "column"))
    tm = svc.model.table(table)
    col = tm.columns.get(column)
    if col is None or col.family not in ASSET_FAMILIES or col.exclude_from_api:
        raise NotFound(f"no asset column {column!r} in {table}")
    page = await svc.crud.get(who, table, ref)
    value = page.rows[0].attrs.get(column)
    entries = jsonutil.loads(value) if isinstance(value, str) and value.strip() else value
    entry = _pick(entries if isinstance(entries, list) else [], request)
    kind = str(entry.get("type") or "application/octet-stream")
    if (request.query_params.get("processImage") or "").lower() in ("true", "1"):
        return await _processed(request, col, entry, ref)
    if not in_store(col):
        data = filetext.decode(str(entry.get("file") or entry.get("contents") or ""))
        if data is None:
            raise NotFound("this file has no contents")
        return Response(data, media_type=kind)
    files = svc.crud.files
    if files is None:
        raise NotFound("cloud stores are not available on this server")
    stream, size = await files.open(col, entry)

    async def body() -> AsyncIterator[bytes]:
        try:
            while True:
                chunk = await asyncio.to_thread(stream.read, CHUNK)
                if not chunk:
                    return
                yield chunk
        finally:
            await asyncio.to_thread(stream.close)

    return StreamingResponse(body(), media_type=kind, headers={"Content-Length": str(size)})


async def _processed(request: Request, col: Any, entry: dict[str, Any], ref: str) -> Response:
    filters = images.parse(request.query_params)
    source = f"{ref}/{col.column_name}/{entry.get('name')}/{entry.get('md5')}/{entry.get('size')}"
    files = services(request).crud.files if in_store(col) else None
    if in_store(col):
        if files is None:
            raise NotFound("cloud stores are not available on this server")
        store, parts = await files.locate(col, entry)
        found = await asyncio.to_thread(store.info, parts)
        if found is None or found.is_dir:
            raise NotFound("the file is not in the store")
        source += f"/{found.size}/{found.mtime}"  # a file replaced in the store (FTP) gets a new tag
    tag = images.etag(source, filters)
    headers = {"ETag": tag, "Cache-Control": "private, max-age=300"}
    if tag in [t.strip() for t in (request.headers.get("if-none-match") or "").split(",")]:
        return Response(status_code=304, headers=headers)
    if files is not None:
        data = await files.read(col, entry, images.MAX_INPUT)
        if data is None:
            raise PayloadTooLarge(f"images over {images.MAX_INPUT} bytes are not processed")
    else:
        data = filetext.decode(str(entry.get("file") or entry.get("contents") or ""))
        if data is None:
            raise NotFound("this file has no contents")
    out, media = await asyncio.to_thread(images.process, data, filters)
    return Response(out, media_type=media, headers=headers)


routes = [Route("/asset/{table}/{ref}/{column}", asset, methods=["GET"])]
