"""The seven v1 endpoints. Each validates its input, then calls jobs/keys/uploads/quotas."""

from __future__ import annotations

import asyncio
import mimetypes
from importlib import resources
from typing import Any
from urllib.parse import quote

from aiohttp import web

from convertd import __version__, jobs, keys, uploads
from convertd.api.openapi import openapi_document
from convertd.api.receive import Body, json_field, read_body
from convertd.api.state import API_KEY, CALLS, CONFIG, DATA, DB, POOL, REGISTRY
from convertd.clock import iso
from convertd.converters.base import OptionError, canonical_format
from convertd.converters.registry import FILETYPES
from convertd.errors import BadRequest, Conflict, NotFound, ServiceUnavailable
from convertd.files import is_job_id
from convertd.sniff import sniff_file

ENDPOINTS = [
    ("GET", "/v1/", "API version info and endpoints; needs no key"),
    ("GET", "/v1/formats", "Supported input and output formats by filetype"),
    ("POST", "/v1/upload", "Upload one or more files (multipart field 'file', repeatable)"),
    ("POST", "/v1/convert", "Start a conversion job from 'file' or 'file_path'"),
    ("GET", "/v1/status/{job_id}", "A job's status"),
    ("GET", "/v1/download/{job_id}", "A finished job's result"),
    ("GET", "/v1/keys/me", "This key's details and remaining quota"),
    ("GET", "/v1/docs", "This API's reference (Markdown)"),
    ("GET", "/v1/openapi.json", "This API as an OpenAPI 3 document"),
]

# Content types mimetypes may not know on a minimal system.
EXTRA_TYPES = {
    "webp": "image/webp",
    "ico": "image/vnd.microsoft.icon",
    "md5": "text/plain",
    "sha1": "text/plain",
    "sha256": "text/plain",
    "sha512": "text/plain",
    "crc32": "text/plain",
    "blake2b": "text/plain",
    "zip": "application/zip",
}


def base_url(request: web.Request) -> str:
    scheme, host = request.scheme, request.host
    if request.app[CONFIG].trust_proxy:
        scheme = request.headers.get("X-Forwarded-Proto", scheme).split(",")[0].strip()
        host = request.headers.get("X-Forwarded-Host", host).split(",")[0].strip()
    return f"{scheme}://{host}"


def job_urls(request: web.Request, job_id: str) -> dict[str, str]:
    base = base_url(request)
    return {
        "status_url": f"{base}/v1/status/{job_id}",
        "download_url": f"{base}/v1/download/{job_id}",
    }


async def api_info(request: web.Request) -> web.Response:
    base = base_url(request)
    return web.json_response(
        {
            "ok": True,
            "name": "convertd",
            "version": __version__,
            "api_version": "v1",
            "endpoints": [{"method": m, "path": p, "description": d} for m, p, d in ENDPOINTS],
            "docs_url": f"{base}/v1/docs",
        }
    )


async def docs(request: web.Request) -> web.Response:
    text = resources.files("convertd.api").joinpath("reference.md").read_text(encoding="utf-8")
    return web.Response(text=text, content_type="text/markdown")


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(base_url(request)))


async def formats(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "filetypes": request.app[REGISTRY].formats()})


def _upload_json(upload: uploads.Upload) -> dict[str, Any]:
    return {
        "file_path": upload.file_path,
        "file_name": upload.file_name,
        "file_size": upload.file_size,
        "upload_id": upload.id,
        "extension": upload.extension,
    }


async def upload(request: web.Request) -> web.Response:
    if request.content_type != "multipart/form-data":
        raise BadRequest(
            "Uploads must be sent as multipart/form-data.", "e.g. curl -F file=@photo.png ..."
        )
    body = await read_body(request, allow_files=True)
    if not body.files:
        raise BadRequest("No file was sent.", "Send the file in a multipart field named 'file'.")
    records = await _record(request, body)
    return web.json_response({"ok": True, "files": [_upload_json(u) for u in records]})


async def _record(request: web.Request, body: Body) -> list[uploads.Upload]:
    try:
        return await uploads.record_uploads(
            request.app[DB],
            request[API_KEY].id,
            [(f.file_path, f.file_name, f.size, f.extension) for f in body.files],
        )
    except BaseException:
        await asyncio.to_thread(body.discard, request.app[DATA])
        raise


async def convert(request: web.Request) -> web.Response:
    body = await read_body(request, allow_files=True)
    try:
        job = await _start_job(request, body)
    except BaseException:
        await asyncio.to_thread(body.discard, request.app[DATA])
        raise
    request.app[POOL].notify()
    return web.json_response(
        {"ok": True, "job_id": job.id, "status": job.status.value, **job_urls(request, job.id)},
        status=202,
    )


async def _start_job(request: web.Request, body: Body) -> jobs.Job:
    fields = body.fields
    registry = request.app[REGISTRY]

    filetype = fields.get("filetype", "").strip().lower()
    if not filetype:
        raise BadRequest("The field 'filetype' is required.", f"One of: {', '.join(FILETYPES)}.")
    if filetype not in FILETYPES:
        raise BadRequest(
            f"The field 'filetype' has an unknown value {filetype!r}.",
            f"One of: {', '.join(FILETYPES)}.",
        )
    converter = registry.get(filetype)
    if converter is None:
        known = registry.known(filetype)
        if known is not None:
            raise ServiceUnavailable(
                f"The {filetype} converter needs {', '.join(known.missing_tools())}, which is "
                "not installed on this server.",
                "Install it and restart convertd; `convertd doctor` shows what is missing.",
            )
        available = ", ".join(c.filetype for c in registry.available())
        raise BadRequest(
            f"The filetype {filetype!r} is not available on this server.",
            f"Available here: {available}. See GET /v1/formats.",
        )

    output_format = canonical_format(fields.get("output_format", ""))
    if not output_format:
        raise BadRequest(
            "The field 'output_format' is required.",
            f"For {filetype}: {', '.join(converter.output_formats)}.",
        )
    if output_format not in converter.output_formats:
        raise BadRequest(
            f"The field 'output_format' has a value {output_format!r} that {filetype} cannot make.",
            f"For {filetype}: {', '.join(converter.output_formats)}.",
        )
    try:
        options = converter.validate_options(json_field(fields, "options"), output_format)
    except OptionError as exc:
        raise BadRequest(f"The field 'options' is invalid: {exc}.") from None

    source = await _input_upload(request, body)
    input_format = canonical_format(source.extension)
    if not converter.accepts_input(input_format):
        path = request.app[DATA].upload_file(source.file_path)
        sniffed = await asyncio.to_thread(sniff_file, path)
        if sniffed is None or not converter.accepts_input(sniffed):
            raise BadRequest(
                f"The {filetype} converter cannot read {input_format or 'this'} files.",
                f"It reads: {', '.join(converter.input_formats)}.",
            )
        input_format = sniffed
    try:
        converter.check_pair(input_format, output_format)
    except OptionError as exc:
        raise BadRequest(
            f"The field 'output_format' does not fit this input: {exc}.",
            "See GET /v1/formats.",
        ) from None

    return await jobs.create(
        request.app[DB],
        key_id=request[API_KEY].id,
        upload_id=source.id,
        filetype=filetype,
        input_format=input_format or "bin",
        output_format=output_format,
        options=options,
    )


async def _input_upload(request: web.Request, body: Body) -> uploads.Upload:
    file_path = body.fields.get("file_path", "").strip()
    if body.files and file_path:
        raise BadRequest("Send either 'file' or 'file_path', not both.")
    if len(body.files) > 1:
        raise BadRequest("Send one 'file' per conversion.", "Upload several, then convert each.")
    if body.files:
        return (await _record(request, body))[0]
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
    job = await jobs.get(request.app[DB], job_id) if is_job_id(job_id) else None
    if job is None or job.key_id != request[API_KEY].id:
        raise NotFound(f"No job with id {job_id!r}.", "Use the job_id that POST /v1/convert gave.")
    if job.expired:
        raise NotFound(
            f"Job {job_id} has expired: its files were deleted after the retention period.",
            "Convert the file again.",
        )
    return job


async def status(request: web.Request) -> web.Response:
    job = await _owned_job(request)
    out: dict[str, Any] = {
        "ok": job.status is not jobs.Status.FAILED,
        "job_id": job.id,
        "status": job.status.value,
        "filetype": job.filetype,
        "output_format": job.output_format,
        "created_at": iso(job.created_at),
    }
    if job.status is jobs.Status.PROCESSING:
        out["progress"] = job.progress or 0
        out["started_at"] = iso(job.started_at)
    elif job.status is jobs.Status.FINISHED:
        out["download_url"] = job_urls(request, job.id)["download_url"]
        out["file_name"] = job.result_name
        out["file_size"] = job.result_size
        out["file_count"] = job.result_count
        out["finished_at"] = iso(job.finished_at)
    elif job.status is jobs.Status.FAILED:
        out["error"] = job.error
        out["finished_at"] = iso(job.finished_at)
    return web.json_response(out)


def content_disposition(name: str) -> str:
    """RFC 6266 with an RFC 5987 `filename*` for names that are not plain ASCII."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    if fallback == name:
        return f'attachment; filename="{name}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def content_type(name: str) -> str:
    ext = name.rpartition(".")[2].lower()
    return EXTRA_TYPES.get(ext) or mimetypes.guess_type(name)[0] or "application/octet-stream"


async def download(request: web.Request) -> web.StreamResponse:
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
    if not await asyncio.to_thread(path.is_file):
        raise NotFound(
            f"Job {job.id} has expired: its files were deleted.", "Convert the file again."
        )
    return web.FileResponse(
        path,
        headers={
            "Content-Disposition": content_disposition(job.result_name),
            "Content-Type": content_type(job.result_name),
        },
    )


async def keys_me(request: web.Request) -> web.Response:
    # Write the pending usage, then read the key again: the copy authentication loaded
    # predates this call being counted.
    await request.app[CALLS].flush()
    key = await keys.get_key(request.app[DB], request[API_KEY].id) or request[API_KEY]
    usage = await request.app[CALLS].usage(key)
    return web.json_response(
        {
            "ok": True,
            **keys.describe(key),
            "rate_limits": {
                "calls_per_day": key.plan.calls_per_day,
                "calls_per_minute": key.plan.calls_per_minute,
                "used_today": usage.day.used,
                "used_this_minute": usage.minute.used,
                "remaining_today": usage.day.remaining,
            },
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/", api_info, name="api_info")
    app.router.add_get("/v1", api_info, name="api_info_bare")
    app.router.add_get("/v1/docs", docs, name="docs")
    app.router.add_get("/v1/openapi.json", openapi, name="openapi")
    app.router.add_get("/v1/formats", formats)
    app.router.add_post("/v1/upload", upload)
    app.router.add_post("/v1/convert", convert)
    app.router.add_get("/v1/status/{job_id}", status)
    app.router.add_get("/v1/download/{job_id}", download)
    app.router.add_get("/v1/keys/me", keys_me)
