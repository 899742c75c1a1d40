"""Jobs: `POST /v1/convert` queues one, `GET /v1/status/{job_id}` follows it, and
`GET /v1/download/{job_id}` fetches its result."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from convertd.api.auth import authorize
from convertd.api.downloads import check_signed, send_file
from convertd.api.receive import Body, ReceivedFile, json_field, read_body
from convertd.api.request_ids import about_job
from convertd.api.state import (
    API_KEY,
    CHANGES,
    CONFIG,
    DATA,
    DB,
    POOL,
    PRESETS,
    READS,
    REGISTRY,
    SIGNER,
)
from convertd.api.urls import Reached, base_url
from convertd.clock import iso
from convertd.converters.options import OptionError
from convertd.converters.registry import NO_EXTENSION_HINT, Unreadable
from convertd.errors import BadRequest, Conflict, NotFound
from convertd.events import targets
from convertd.files import is_job_id
from convertd.store import jobs, uploads
from convertd.tasks.presets import UnknownPreset, check_conversion, merged

DOWNLOAD = "v1-download"
PRESET_HINT = "GET /v2/presets (or `convertd presets list`) shows each preset."


def _link_expires(request: Reached, job: jobs.Job) -> int:
    """A download link lasts as long as the result can: the retention period after the job
    could have ended at the latest."""
    config = request.app[CONFIG]
    latest_end = job.created_at + config.job_timeout_seconds * config.max_attempts
    return int(latest_end + config.retention_seconds)


def job_urls(request: Reached, job: jobs.Job) -> dict[str, str]:
    """The status URL, and a download URL signed for this job, which a browser can follow
    without a key (the key in a header works too)."""
    base = base_url(request)
    expires = _link_expires(request, job)
    signature = request.app[SIGNER].sign(DOWNLOAD, job.id, expires)
    return {
        "status_url": f"{base}/v1/status/{job.id}",
        "download_url": f"{base}/v1/download/{job.id}?expires={expires}&signature={signature}",
    }


async def convert(request: web.Request) -> web.Response:
    body = await read_body(request, allow_files=True)
    try:
        job = await _start_job(request, body)
    except BaseException:
        await asyncio.to_thread(body.discard, request.app[DATA])
        raise
    about_job(request, job.id)
    request.app[POOL].notify()
    request.app[CHANGES].publish(job.key_id, ("new_job", job.id))
    return web.json_response(
        {"ok": True, "job_id": job.id, "status": job.status.value, **job_urls(request, job)},
        status=202,
    )


async def _start_job(request: web.Request, body: Body) -> jobs.Job:
    fields = body.fields
    registry = request.app[REGISTRY]
    filetype = fields.get("filetype", "")
    output_format = fields.get("output_format", "")
    raw = json_field(fields, "options")
    preset = None
    if name := fields.get("preset", "").strip():
        try:
            preset = await request.app[PRESETS].get(request.app[DB], name)
        except UnknownPreset as exc:
            raise BadRequest(f"The field 'preset': {exc.message}.", PRESET_HINT) from None
        filetype, output_format, raw = merged(preset, filetype.strip(), output_format.strip(), raw)
    converter, output_format, options = check_conversion(
        registry, filetype, output_format, raw, preset=preset.name if preset else None
    )

    webhook_url = _webhook_url(request, body)
    source = await _input_upload(request, body)
    try:
        # Most files' extension tells; only a file it does not is read (its first bytes).
        name = source.file_path.rpartition("/")[2]
        input_format = registry.named_format(converter, name, output_format)
        if input_format is None:
            path = request.app[DATA].upload_file
            input_format = await asyncio.to_thread(
                lambda: registry.input_format(converter, path(source.file_path), output_format)
            )
    except Unreadable as exc:
        reads = ", ".join(converter.input_formats)
        if exc.extension:
            raise BadRequest(
                f"The {converter.filetype} converter cannot read {exc.extension} files.",
                f"It reads: {reads}.",
            ) from None
        # No extension, and first bytes it does not know (a text format has no magic bytes).
        raise BadRequest(
            f"The {converter.filetype} converter cannot tell what this file is: its name has "
            "no extension, and its content is not of a format it recognises.",
            f"{NO_EXTENSION_HINT.capitalize()}; it reads: {reads}.",
        ) from None
    except OptionError as exc:
        raise BadRequest(
            f"The field 'output_format' does not fit this input: {exc}.",
            "See GET /v1/formats.",
        ) from None

    try:
        converter.check_input(input_format, options)
    except OptionError as exc:
        raise BadRequest(f"The field 'options' does not fit this input: {exc}.") from None

    conversion = jobs.Conversion(converter.filetype, input_format or "bin", output_format, options)
    key_id = request[API_KEY].id
    if isinstance(source, uploads.Upload):
        return await jobs.create(
            request.app[DB], source.id, conversion, key_id=key_id, webhook_url=webhook_url
        )
    sent = (source.file_path, source.file_name, source.size, source.extension)
    return await jobs.create_with_upload(
        request.app[DB], sent, conversion, key_id=key_id, webhook_url=webhook_url
    )


def _webhook_url(request: web.Request, body: Body) -> str | None:
    """`callback` (api2convert's name) or `webhook_url` (ConvertFly's): told of the job's end."""
    given = {
        name: value
        for name in ("callback", "webhook_url")
        if (value := body.fields.get(name, "").strip())
    }
    if len(set(given.values())) > 1:
        raise BadRequest(
            "The fields 'callback' and 'webhook_url' name different URLs.",
            "Send one of them (they mean the same: a URL told of the job's end).",
        )
    for name, url in given.items():
        if problem := targets.url_problem(request.app[CONFIG], url):
            raise BadRequest(
                f"The field {name!r} {problem}.",
                "It is POSTed the job's status, signed, when the job finishes or fails.",
            )
        return url
    return None


async def _input_upload(request: web.Request, body: Body) -> uploads.Upload | ReceivedFile:
    """The file to convert: one sent with the request (recorded with its job, in one
    transaction) or one uploaded before."""
    file_path = body.fields.get("file_path", "").strip()
    if body.files and file_path:
        raise BadRequest("Send either 'file' or 'file_path', not both.")
    if len(body.files) > 1:
        raise BadRequest("Send one 'file' per conversion.", "Upload several, then convert each.")
    if body.files:
        return body.files[0]
    if not file_path:
        raise BadRequest(
            "Either 'file' or 'file_path' is required.",
            "Send the file in a multipart field 'file', or a file_path from POST /v1/upload.",
        )
    found = await uploads.get_owned(request.app[DB], request[API_KEY].id, file_path)
    if found is None:
        raise NotFound(
            f"No uploaded file at file_path {file_path!r}.",
            "Use a file_path returned by POST /v1/upload with this key; uploads expire after "
            "the retention period.",
        )
    return found


async def _owned_job(request: web.Request) -> jobs.Job:
    job_id = request.match_info["job_id"]
    job = await request.app[READS].job(job_id) if is_job_id(job_id) else None
    if job is None or job.key_id != request[API_KEY].id:
        raise NotFound(f"No job with id {job_id!r}.", "Use the job_id that POST /v1/convert gave.")
    about_job(request, job.id)
    if job.expired:
        raise NotFound(
            f"Job {job_id} has expired: its files were deleted after the retention period.",
            "Convert the file again.",
        )
    return job


# The longest `?wait=` a status request may ask for, in seconds.
MAX_STATUS_WAIT = 300.0


def _wait_seconds(request: web.Request) -> float:
    raw = request.query.get("wait")
    if raw is None:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_STATUS_WAIT:  # NaN fails this too
        raise BadRequest(
            f"The 'wait' parameter must be a number of seconds from 0 to {MAX_STATUS_WAIT:.0f}.",
            "e.g. ?wait=30: the answer comes as soon as the job ends, or after 30 s as it stands.",
        )
    return seconds


def status_json(request: Reached, job: jobs.Job) -> dict[str, Any]:
    """The seed's status body, for GET /v1/status and the job's callback."""
    out: dict[str, Any] = {
        "ok": job.status is not jobs.Status.FAILED,
        "job_id": job.id,
        "status": job.status.value,
        "filetype": job.filetype,
        "output_format": job.output_format,
        "created_at": iso(job.created_at),
    }
    if job.started_at is not None:  # processing, finished or failed: when it began
        out["started_at"] = iso(job.started_at)
    if job.status is jobs.Status.PROCESSING:
        out["progress"] = job.progress or 0
    elif job.status is jobs.Status.FINISHED:
        out["download_url"] = job_urls(request, job)["download_url"]
        out["file_name"] = job.result_name
        out["file_size"] = job.result_size
        out["file_count"] = job.result_count
        out["finished_at"] = iso(job.finished_at)
    elif job.status is jobs.Status.FAILED:
        out["error"] = job.error
        out["finished_at"] = iso(job.finished_at)
    return out


async def status(request: web.Request) -> web.Response:
    wait = _wait_seconds(request)
    if not wait:
        job = await _owned_job(request)
    else:  # until() reads the job first: one read, whether it has ended or not
        job = await request.app[CHANGES].until(
            request.match_info["job_id"],
            lambda: _owned_job(request),
            lambda j: j.status in (jobs.Status.FINISHED, jobs.Status.FAILED),
            wait,
        )
    return web.json_response(status_json(request, job))


async def _signed_job(request: web.Request) -> jobs.Job:
    """The job a signed download link names, if the link is good and its key still live."""
    job_id = request.match_info["job_id"]
    check_signed(
        request,
        DOWNLOAD,
        job_id,
        "Ask GET /v1/status/{job_id} (with the key) for the job's current link.",
    )
    job = await jobs.get_with_live_key(request.app[DB], job_id)
    if job is None:
        raise NotFound(f"No job with id {job_id!r}.", "Its key was revoked, or it was deleted.")
    about_job(request, job.id)
    if job.expired:
        raise NotFound(
            f"Job {job_id} has expired: its files were deleted after the retention period.",
            "Convert the file again.",
        )
    return job


async def download(request: web.Request) -> web.StreamResponse:
    """With the key, or by the signed link the job's status gives (no key: a browser's)."""
    if "signature" in request.query:
        job = await _signed_job(request)
    else:
        await authorize(request, "task.read")
        job = await _owned_job(request)
    if job.status is jobs.Status.FAILED:
        raise Conflict(
            f"Job {job.id} failed, so there is nothing to download: {job.error}",
            "See GET /v1/status/{job_id} for the error; fix the input and convert again.",
        )
    if job.status is not jobs.Status.FINISHED or not job.result_name:
        raise Conflict(
            f"Job {job.id} is not finished yet (status: {job.status.value}).",
            "Poll GET /v1/status/{job_id} until its status is 'finished'.",
        )
    path = request.app[DATA].result_file(job.id, job.result_name)
    inline = request.query.get("inline") in ("1", "true")
    response = await send_file(request, path, job.result_name, inline=inline)
    if response is None:
        raise NotFound(
            f"Job {job.id} has expired: its files were deleted.", "Convert the file again."
        )
    return response
