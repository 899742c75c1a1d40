"""The two keyless doors, each opened by a signature: an import/upload task's form (`POST
/v2/upload/{task_id}`) and an export/url task's files (`GET /v2/files/{task_id}/{name}`)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from aiohttp import web

from convertd.api.downloads import check_signed, send_file
from convertd.api.receive import read_body
from convertd.api.state import DATA, DB, ENGINE
from convertd.api.v2.render import DOWNLOAD, UPLOAD, data, task_json
from convertd.errors import BadRequest, Conflict, Gone, NotFound
from convertd.files import is_job_id, safe_filename
from convertd.store import keys, tasks


def _signed(request: web.Request, purpose: str, subject: str) -> None:
    check_signed(
        request,
        purpose,
        subject,
        "Links work until retention_seconds after their task was made or ended; make a new "
        "task for a fresh one.",
    )


async def _owner_is_live(request: web.Request, task: tasks.Task) -> None:
    """A revoked key's forms and links stop working with it."""
    owner = await keys.get_key(request.app[DB], task.key_id) if task.key_id else None
    if owner is None or owner.revoked_at is not None:
        raise Gone("The API key that made this link was revoked.")


async def upload(request: web.Request) -> web.StreamResponse:
    task_id = request.match_info["task_id"]
    _signed(request, UPLOAD, task_id)
    db, engine = request.app[DB], request.app[ENGINE]
    if not is_job_id(task_id):
        raise NotFound(f"No import/upload task with id {task_id!r}.")
    # Claimed before the task is read: an upload that finishes meanwhile releases its claim only
    # after its task is recorded finished, so this one then sees that and goes no further.
    if not engine.receiving(task_id):
        raise Conflict(f"A file is already being uploaded to task {task_id}.")
    try:
        task = await tasks.get(db, task_id)
        if task is None or task.operation != "import/upload":
            raise NotFound(f"No import/upload task with id {task_id!r}.")
        await _owner_is_live(request, task)
        if task.status is not tasks.Status.WAITING:
            raise Gone(f"Task {task_id} has already received its file (or was cancelled).")
        body = await read_body(request, allow_files=True)
        try:
            if len(body.files) != 1:
                raise BadRequest(
                    f"Send exactly one file (in the multipart field 'file'); got {len(body.files)}."
                )
            received = body.files[0]
            source = request.app[DATA].upload_file(received.file_path)
            staging = await asyncio.to_thread(request.app[DATA].fresh_task_staging, task_id)
            name = safe_filename(received.file_name)
            await asyncio.to_thread(os.replace, source, staging / name)
        finally:
            await asyncio.to_thread(body.discard, request.app[DATA])
        if not await engine.uploaded(task, staging):
            raise Gone(f"Task {task_id} was cancelled or deleted during the upload.")
    finally:
        engine.received(task_id)
    redirect = task.payload.get("redirect")
    if redirect:
        raise web.HTTPSeeOther(redirect)
    done = await tasks.get(db, task_id)
    if done is None:
        raise Gone(f"Task {task_id} was deleted just after its upload.")
    return data(task_json(request, done), status=201)


async def download(request: web.Request) -> web.StreamResponse:
    task_id, name = request.match_info["task_id"], request.match_info["name"]
    _signed(request, DOWNLOAD, f"{task_id}/{name}")
    task = await tasks.get(request.app[DB], task_id) if is_job_id(task_id) else None
    files: list[dict[str, Any]] = task.files if task is not None else []
    if task is None or task.operation != "export/url" or name not in {f["filename"] for f in files}:
        raise NotFound("This file no longer exists: its task was deleted or has expired.")
    await _owner_is_live(request, task)
    path = request.app[DATA].task_file(task_id, name)
    response = await send_file(request, path, name, inline=bool(task.payload.get("inline")))
    if response is None:
        raise NotFound("This file no longer exists: its task was deleted or has expired.")
    return response
