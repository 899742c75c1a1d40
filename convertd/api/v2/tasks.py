"""Tasks: created alone (`POST /v2/{operation}`) or as part of a job, then listed, shown, waited
for, cancelled, retried and deleted."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from typing import Any

from aiohttp import web

from convertd.api.receive import read_json
from convertd.api.state import API_KEY, CHANGES, CONFIG, DATA, DB, ENGINE, PRESETS, REGISTRY
from convertd.api.v2.render import DEFAULT_PER_PAGE, MAX_PER_PAGE, Page, data, task_json
from convertd.changes import task_items
from convertd.errors import Invalid, NotFound, PayloadTooLarge
from convertd.files import DataDir, is_job_id, safe_filename
from convertd.store import tasks
from convertd.tasks.checking import where
from convertd.tasks.operations import (
    IMPORTS,
    check_task,
    format_hint,
    input_names,
    name_brought,
    with_image,
)
from convertd.tasks.parameters import INPUT_OPTIONAL, image_task
from convertd.tasks.presets import UnknownPreset, expand_convert

# A JSON body may carry a file for import/base64 or import/raw (CloudConvert advises against
# more than 10 MB that way; uploads take files of any size).
MAX_JSON_BYTES = 64 * 1024 * 1024
JSON_HINT = "Send large files with an import/upload task (its form takes up to max_upload_bytes)."
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


def page_of(request: web.Request) -> Page:
    numbers = {}
    for name, default, most in (
        ("page", 1, 1_000_000),
        ("per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE),
    ):
        raw = request.query.get(name, str(default))
        if not (raw.isascii() and raw.isdecimal()) or not 1 <= int(raw) <= most:
            raise Invalid(
                f"The {name} parameter must be a whole number from 1 to {most}.",
                {name: [f"must be from 1 to {most}"]},
            )
        numbers[name] = int(raw)
    return Page(request, numbers["page"], numbers["per_page"])


def one_of(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    value = request.query.get(name)
    if value is not None and value not in allowed:
        raise Invalid(
            f"The {name} parameter must be one of: {', '.join(allowed)}.",
            {name: [f"must be one of: {', '.join(allowed)}"]},
        )
    return value


async def owned_task(request: web.Request) -> tasks.Task:
    task_id = request.match_info["task_id"]
    task = await tasks.get(request.app[DB], task_id) if is_job_id(task_id) else None
    if task is None or task.key_id != request[API_KEY].id:
        raise NotFound(f"No task with id {task_id!r}.")
    return task


_DATA_URI = re.compile(r"^data:[^,]{0,200};base64,", re.IGNORECASE)
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/=]")


def decode_base64(content: str) -> bytes:
    """Base64 as encoders write it: a `data:...;base64,` prefix, line breaks, the URL-safe
    alphabet and missing padding are forgiven; any other character is a 422, never dropped."""
    text = _DATA_URI.sub("", content.strip())
    text = "".join(text.split()).replace("-", "+").replace("_", "/")
    core = text.rstrip("=")
    try:
        # validate=True refuses any character outside the alphabet, so the search for the
        # one to name runs only when decoding failed (it took longer than the decoding).
        return base64.b64decode(core + "=" * (-len(core) % 4), validate=True)
    except (binascii.Error, ValueError):
        if bad := _NOT_BASE64.search(text):
            raise Invalid(
                f"The file field must be base64; it has {bad.group()!r} at {bad.start()}.",
                {"file": ["must be base64"]},
            ) from None
        raise Invalid("The file field must be base64.", {"file": ["must be base64"]}) from None


def imported_file(
    data_dir: DataDir, task_id: str, operation: str, payload: dict[str, Any], limit: int
) -> dict[str, Any]:
    """Blocking: write an import/base64 or import/raw task's file; returns its result."""
    content = payload.pop("file")
    raw = decode_base64(content) if operation == "import/base64" else content.encode()
    if len(raw) > limit:
        raise PayloadTooLarge(
            f"The file is larger than this server's limit of {limit:,} bytes.",
            "Send a smaller file, or ask the admin to raise max_upload_bytes.",
        )
    name = safe_filename(payload["filename"])
    staging = data_dir.fresh_task_staging(task_id)
    (staging / name).write_bytes(raw)
    data_dir.publish_task_files(task_id, staging)
    return {"files": [{"filename": name, "size": len(raw)}]}


async def expand(request: web.Request, operation: Any, raw: dict[str, Any], prefix: str) -> Any:
    """A convert task's `preset` applied (its own fields win); other tasks as they came."""
    if operation != "convert" or "preset" not in raw:
        return raw
    field = where(prefix, "preset")
    try:
        preset = await request.app[PRESETS].get(request.app[DB], raw["preset"])
    except UnknownPreset as exc:
        raise Invalid(f"The {field} field: {exc.message}.", {field: [exc.message]}) from None
    return expand_convert(raw, preset)


async def new_task(
    request: web.Request,
    name: str,
    operation: Any,
    raw: dict[str, Any],
    prefix: str,
    depends_on: list[str],
    input_hint: str | None = None,
) -> tasks.NewTask:
    """Check one task and, for the imports that carry their file, write it."""
    payload = check_task(request.app[REGISTRY], operation, raw, prefix, input_hint)
    ignore_error = raw.get("ignore_error", False)
    if not isinstance(ignore_error, bool):
        raise Invalid(
            f"The {prefix}.ignore_error field must be true or false.",
            {f"{prefix}.ignore_error": ["must be true or false"]},
        )
    task_id = tasks.new_id()
    result = None
    if operation in ("import/base64", "import/raw"):
        payload["file"] = raw["file"]
        result = await asyncio.to_thread(
            imported_file,
            request.app[DATA],
            task_id,
            operation,
            payload,
            request.app[CONFIG].max_upload_bytes,
        )
    if operation in IMPORTS:
        depends_on = []
    return tasks.NewTask(task_id, name, operation, payload, depends_on, ignore_error, result)


async def create(request: web.Request) -> web.Response:
    """`POST /v2/{operation}`: one task on its own; its input names other tasks by id."""
    operation = request.path.removeprefix("/v2/")
    raw = await read_json(request, MAX_JSON_BYTES, JSON_HINT)
    raw.pop("operation", None)
    raw = await expand(request, operation, raw, "")
    depends_on: list[tasks.Task] = []
    if operation not in IMPORTS and not (operation in INPUT_OPTIONAL and "input" not in raw):
        # A watermark's image is another task's file: that task is depended on too, last.
        ids = with_image(operation, raw, input_names(raw) if "input" in raw else [])
        depends_on = await _owned_inputs(request, raw, ids)
    hint = None
    if len(depends_on) == 1:
        source = depends_on[0]
        made = source.files[0]["filename"] if source.files else None
        hint = format_hint(made or name_brought(source.operation, source.payload))
    task = await new_task(request, operation, operation, raw, "", [t.id for t in depends_on], hint)
    key_id = request[API_KEY].id
    try:
        await request.app[DB].write(
            lambda conn: tasks.insert_task(conn, task, key_id=key_id, job_id=None)
        )
    except BaseException:
        await asyncio.to_thread(request.app[DATA].remove_task_files, task.id)
        raise
    request.app[ENGINE].added()
    request.app[CHANGES].publish(key_id, ("task", task.id))
    return data(task_json(request, await _created(request, task.id)), status=201)


async def _owned_inputs(
    request: web.Request, raw: dict[str, Any], ids: list[str]
) -> list[tasks.Task]:
    if "input" not in raw:
        raise Invalid("The input field is required.", {"input": ["is required"]})
    found = await tasks.get_many(request.app[DB], [i for i in ids if is_job_id(i)])
    mine = {t.id: t for t in found if t.key_id == request[API_KEY].id}
    if missing := [i for i in ids if i not in mine]:
        field = "image" if missing[0] == image_task(raw.get("image")) else "input"
        raise Invalid(
            f"The {field} {missing[0]!r} is not a task of this key.",
            {field: [f"no task with id {m!r}" for m in missing]},
        )
    return [mine[i] for i in ids]


async def _created(request: web.Request, task_id: str) -> tasks.Task:
    """A task just made, read back (deleted meanwhile by another request: a 404)."""
    task = await tasks.get(request.app[DB], task_id)
    if task is None:
        raise NotFound(f"Task {task_id} was deleted just after it was made.")
    return task


async def show(request: web.Request) -> web.Response:
    return data(task_json(request, await owned_task(request)))


async def wait(request: web.Request) -> web.Response:
    """`GET /sync/v2/tasks/{id}`: the task once it has ended (or at the longest wait)."""
    task = await owned_task(request)
    task = await request.app[CHANGES].until(
        task.id,
        lambda: owned_task(request),
        lambda t: t.ended,
        request.app[CONFIG].sync_wait_seconds,
    )
    return data(task_json(request, task))


async def listing(request: web.Request) -> web.Response:
    page = page_of(request)
    found, total = await tasks.list_tasks(
        request.app[DB],
        request[API_KEY].id,
        job_id=request.query.get("filter[job_id]"),
        status=one_of(request, "filter[status]", tuple(s.value for s in tasks.Status)),
        operation=request.query.get("filter[operation]"),
        limit=page.per_page,
        offset=page.offset,
    )
    return page.answer([task_json(request, t) for t in found], total)


async def cancel(request: web.Request) -> web.Response:
    task = await owned_task(request)
    if task.ended:
        raise Invalid(
            f"Task {task.id} has already ended ({task.status.value}); only waiting or "
            "processing tasks can be cancelled.",
            {"status": ["Cannot cancel: the task has already ended."]},
        )
    await request.app[ENGINE].cancel(task.id)
    return data(task_json(request, await owned_task(request)))


async def retry(request: web.Request) -> web.Response:
    """A new task with the failed (or finished) one's operation, parameters and inputs (an
    import/upload gets a new form)."""
    task = await owned_task(request)
    if not task.ended:
        raise Invalid(
            f"Task {task.id} has not ended yet; only ended tasks can be retried.",
            {"status": ["Cannot retry: the task has not ended."]},
        )
    if task.operation in ("import/base64", "import/raw"):
        raise Invalid(
            f"An {task.operation} task cannot be retried: its file came with the request that "
            "made it.",
            {"operation": ["Create a new task and send the file again."]},
        )
    inputs = await tasks.get_many(request.app[DB], task.depends_on)
    if missing := sorted(set(task.depends_on) - {t.id for t in inputs}):
        raise Invalid(
            f"Task {task.id} cannot be retried: its input task {missing[0]} was deleted.",
            {"input": [f"task {m} no longer exists" for m in missing]},
        )
    copy = tasks.NewTask(
        tasks.new_id(),
        task.name,
        task.operation,
        task.payload,
        task.depends_on,
        task.ignore_error,
        retry_of=task.id,
    )
    await request.app[DB].write(
        lambda conn: tasks.insert_task(conn, copy, key_id=task.key_id, job_id=task.job_id)
    )
    request.app[ENGINE].added()
    request.app[CHANGES].publish(task.key_id, *task_items(copy.id, task.job_id))
    return data(task_json(request, await _created(request, copy.id)), status=201)


async def delete(request: web.Request) -> web.Response:
    task = await owned_task(request)
    await request.app[ENGINE].delete([task], lambda conn: tasks.delete_task(conn, task.id))
    return web.Response(status=204)


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))
