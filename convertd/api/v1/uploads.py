"""`POST /v1/upload`, and the recording of uploaded files that `/v1/convert` shares."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from convertd.api.receive import Body, content_type_of, read_body
from convertd.api.state import API_KEY, DATA, DB
from convertd.errors import BadRequest
from convertd.store import uploads


def upload_json(upload: uploads.Upload) -> dict[str, Any]:
    return {
        "file_path": upload.file_path,
        "file_name": upload.file_name,
        "file_size": upload.file_size,
        "upload_id": upload.id,
        "extension": upload.extension,
    }


async def upload(request: web.Request) -> web.Response:
    if content_type_of(request) != "multipart/form-data":
        raise BadRequest(
            "Uploads must be sent as multipart/form-data.", "e.g. curl -F file=@photo.png ..."
        )
    body = await read_body(request, allow_files=True)
    if not body.files:
        raise BadRequest("No file was sent.", "Send the file in a multipart field named 'file'.")
    records = await record(request, body)
    return web.json_response({"ok": True, "files": [upload_json(u) for u in records]})


async def record(request: web.Request, body: Body) -> list[uploads.Upload]:
    """Record the files a request sent as this key's uploads; on failure, remove them."""
    try:
        return await uploads.record_uploads(
            request.app[DB],
            request[API_KEY].id,
            [(f.file_path, f.file_name, f.size, f.extension) for f in body.files],
        )
    except BaseException:
        await asyncio.to_thread(body.discard, request.app[DATA])
        raise
