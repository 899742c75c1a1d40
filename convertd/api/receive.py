"""Reading request bodies: multipart files streamed to disk under a size budget, plus form fields.

A file part is written chunk by chunk into the upload area, so memory stays flat whatever its
size; the request is refused with 413 as soon as its files pass the limit, and anything it had
written is removed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import BodyPartReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import content_disposition_filename, parse_content_disposition

from convertd import memory
from convertd.api.state import CONFIG, DATA, METRICS
from convertd.errors import (
    BadRequest,
    ConvertdError,
    InsufficientStorage,
    PayloadTooLarge,
    RequestTimeout,
)
from convertd.files import DataDir, extension_of

T = TypeVar("T")

CHUNK = 256 * 1024
# The socket hands a part over in pieces of 64 KiB or less: they are written a batch at a time,
# so a large upload costs a thread hop per MiB rather than one per piece.
WRITE_BATCH = 1024 * 1024
MAX_FIELD_BYTES = 64 * 1024
# One request's parts: files (POST /v1/upload takes several), and other fields (a handful).
MAX_FILES = 100
MAX_FIELDS = 64
YIELD_EVERY_PARTS = 16
# A JSON body carries fields only (files go as multipart): far less than this.
MAX_JSON_BYTES = 1024 * 1024
# Multipart boundaries and part headers add a little to the body beyond the files themselves.
ENVELOPE_SLACK = 64 * 1024


@dataclasses.dataclass
class ReceivedFile:
    file_path: str  # "<token>/<name>" inside the upload area
    file_name: str  # as the client named it (made safe)
    size: int
    extension: str


@dataclasses.dataclass
class Body:
    fields: dict[str, str]
    files: list[ReceivedFile]

    def discard(self, data: DataDir) -> None:
        for received in self.files:
            data.remove_upload(received.file_path)


def disk_full() -> InsufficientStorage:
    return InsufficientStorage(
        "The server's disk is full; the upload was not kept.",
        "Try again later; the admin can free space or wait for the retention sweep.",
    )


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The upload is larger than this server's limit of {limit:,} bytes.",
        "Send a smaller file, or ask the admin to raise max_upload_bytes.",
    )


def _stalled(idle: float) -> RequestTimeout:
    return RequestTimeout(
        f"The upload sent nothing for {idle:.0f} s and was dropped.",
        "Check the connection and send the file again.",
    )


async def _within(idle: float, pending: Awaitable[T]) -> T:
    """What `pending` gives, unless the client sends nothing for `idle` seconds: a 408."""
    try:
        async with asyncio.timeout(idle):
            return await pending
    except TimeoutError:
        raise _stalled(idle) from None


def _write_whole(dest: Path, content: bytes) -> None:
    """A new upload's folder, and its file holding `content`, in one go."""
    dest.parent.mkdir(mode=0o700)
    dest.write_bytes(content)


async def _receive_file(
    part: BodyPartReader,
    filename: str,
    data: DataDir,
    body: Body,
    budget_limit: tuple[int, int],
    idle: float,
) -> int:
    """Stream a file part into a new upload (listed in `body` at once, so a failure removes
    it); its size. A part that ends within its first CHUNK bytes (most API files, every small
    job) is written in one trip off the event loop instead of four (folder, open, write,
    close): at hundreds of small jobs a second those trips were a tenth of the daemon's CPU."""
    budget, limit = budget_limit
    first = bytes(await _within(idle, part.read_chunk(CHUNK)))
    size = len(first)
    if size > budget:
        raise _too_large(limit)
    head = [first] if first else []
    while size < CHUNK and (chunk := bytes(await _within(idle, part.read_chunk(CHUNK)))):
        head.append(chunk)  # a part may come in pieces; up to CHUNK bytes are kept in memory
        size += len(chunk)
        if size > budget:
            raise _too_large(limit)
    if size < CHUNK:  # the whole part
        # Listed before it is written: whatever becomes of the write, a failure removes it.
        file_path, dest = data.upload_path_for(filename)
        body.files.append(ReceivedFile(file_path, dest.name, size, extension_of(dest.name)))
        await asyncio.to_thread(_write_whole, dest, b"".join(head))
        return size
    file_path, dest = await asyncio.to_thread(data.new_upload_path, filename)
    body.files.append(ReceivedFile(file_path, dest.name, 0, extension_of(dest.name)))
    fh = await asyncio.to_thread(dest.open, "wb")
    batch, batched = head, size
    try:
        while chunk := bytes(await _within(idle, part.read_chunk(CHUNK))):
            size += len(chunk)
            if size > budget:
                raise _too_large(limit)
            batch.append(chunk)
            batched += len(chunk)
            if batched >= WRITE_BATCH:
                await asyncio.to_thread(fh.writelines, batch)
                batch, batched = [], 0
        await asyncio.to_thread(fh.writelines, batch)
    finally:
        await asyncio.to_thread(fh.close)
    body.files[-1].size = size
    return size


def content_type_of(request: web.Request) -> str:
    """What aiohttp's `request.content_type` says (the media type, lowercased; octet-stream if
    none or malformed), without its cost: aiohttp hands the header to the email package, and
    caches the answer by the whole header, which a multipart body's boundary makes new each
    time: ~80 us of the event loop per upload, measured here."""
    raw = request.headers.get(hdrs.CONTENT_TYPE)
    media_type = (raw or "").partition(";")[0].strip().lower()
    return media_type if media_type.count("/") == 1 else "application/octet-stream"


async def read_body(request: web.Request, *, allow_files: bool) -> Body:
    """Parse multipart, urlencoded or JSON bodies into fields and streamed files."""
    config = request.app[CONFIG]
    data = request.app[DATA]
    limit = config.max_upload_bytes
    if request.content_length is not None and request.content_length > limit + ENVELOPE_SLACK:
        raise _too_large(limit)

    media_type = content_type_of(request)
    if media_type == "multipart/form-data":
        return await _read_multipart(
            request, data, limit, allow_files, config.upload_idle_timeout_seconds
        )
    if media_type == "application/json":
        payload = await read_json(request)
        try:
            fields = {
                k: v if isinstance(v, str) else json.dumps(v)
                for k, v in payload.items()
                if v is not None
            }
        except RecursionError:
            raise _too_deep("The request body") from None
        return Body(fields=fields, files=[])
    if media_type == "application/x-www-form-urlencoded" or not request.body_exists:
        form = await _within(config.upload_idle_timeout_seconds, request.post())
        if len(form) > MAX_FIELDS:
            raise BadRequest(
                f"The request has more than {MAX_FIELDS} form fields.",
                "Send only the fields the endpoint takes.",
            )
        return Body(fields={k: str(v) for k, v in form.items()}, files=[])
    raise BadRequest(
        f"Unsupported Content-Type {media_type!r}.",
        "Send multipart/form-data (as curl -F does).",
    )


async def read_json(
    request: web.Request,
    limit: int = MAX_JSON_BYTES,
    hint: str = "Send files as multipart/form-data, not inside JSON.",
) -> dict[str, Any]:
    """A JSON object body of at most `limit` bytes (an empty body is an empty object)."""
    too_large = PayloadTooLarge(
        f"The JSON body is larger than the {limit:,} bytes this endpoint takes.", hint
    )
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    raw = bytearray()
    idle = request.app[CONFIG].upload_idle_timeout_seconds
    while chunk := await _within(idle, request.content.read(CHUNK)):
        raw += chunk
        if len(raw) > limit:
            raise too_large
    if not raw.strip():
        return {}
    if len(raw) > MAX_JSON_BYTES:  # a /v2 body with a file in it: parsed off the event loop
        try:
            payload = await asyncio.to_thread(_parse_json, raw, "The request body")
        finally:
            # Its copies, freed, stay in the heap until it is trimmed (memory.py).
            memory.reclaimer().work_done()
    else:
        payload = _parse_json(bytes(raw), "The request body")
    if not isinstance(payload, dict):
        raise BadRequest("The JSON body must be an object of fields.")
    return payload


async def _read_multipart(
    request: web.Request, data: DataDir, limit: int, allow_files: bool, idle: float
) -> Body:
    body = Body(fields={}, files=[])
    remaining = limit
    parts = 0
    try:
        reader = await request.multipart()
        while True:
            parts += 1
            if parts % YIELD_EVERY_PARTS == 0:
                # A body already in memory parses without ever waiting: let others run.
                await asyncio.sleep(0)
            part = await _within(idle, reader.next())
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                raise BadRequest("Nested multipart bodies are not supported.")
            # Parsed once: part.name and part.filename would each parse the header again.
            _, params = parse_content_disposition(part.headers.get(hdrs.CONTENT_DISPOSITION))
            name = content_disposition_filename(params, "name") or ""
            filename = content_disposition_filename(params, "filename")
            if filename is not None and name == "file":
                if not allow_files:
                    raise BadRequest("This endpoint does not take files.")
                if len(body.files) >= MAX_FILES:
                    raise BadRequest(
                        f"The request has more than {MAX_FILES} files.",
                        f"Send at most {MAX_FILES} files per request.",
                    )
                size = await _receive_file(part, filename, data, body, (remaining, limit), idle)
                request.app[METRICS].uploaded(size)
                remaining -= size
            elif filename is not None:
                await part.release()  # a file under some other field name: not ours to keep
            else:
                if parts - len(body.files) > MAX_FIELDS:
                    raise BadRequest(
                        f"The request has more than {MAX_FIELDS} form fields.",
                        "Send only the fields the endpoint takes.",
                    )
                value = await _within(idle, part.read(decode=True))
                if len(value) > MAX_FIELD_BYTES:
                    raise BadRequest(f"The field {name!r} is too long.")
                body.fields[name] = _decode(value, part.get_charset("utf-8"), name)
    except OSError as exc:
        await asyncio.to_thread(body.discard, data)
        if exc.errno == errno.ENOSPC:
            raise disk_full() from None
        raise
    except (HttpProcessingError, ValueError) as exc:
        # A part header aiohttp refuses (a NUL in a file name, say) is the client's mistake.
        await asyncio.to_thread(body.discard, data)
        if isinstance(exc, ConvertdError):
            raise
        raise BadRequest(
            "The multipart body is malformed.", "Send it as standard multipart/form-data."
        ) from exc
    except BaseException:
        await asyncio.to_thread(body.discard, data)
        raise
    return body


def _decode(value: bytes, charset: str, name: str) -> str:
    try:
        return value.decode(charset, errors="replace")
    except LookupError:
        raise BadRequest(
            f"The field {name!r} names a character set convertd does not know: {charset!r}.",
            "Send form fields as UTF-8.",
        ) from None


def _too_deep(what: str) -> BadRequest:
    return BadRequest(
        f"{what} is nested too deeply.", "Send a JSON object with fewer levels of nesting."
    )


def _parse_json(raw: str | bytes | bytearray, what: str) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest(f"{what} is not valid JSON.", "Send a well-formed JSON object.") from None
    except RecursionError:
        raise _too_deep(what) from None


def json_field(fields: dict[str, str], name: str) -> dict[str, Any]:
    raw = fields.get(name, "").strip()
    if not raw:
        return {}
    value = _parse_json(raw, f"The field {name!r}")
    if not isinstance(value, dict):
        raise BadRequest(f"The field {name!r} must be a JSON object.", 'e.g. {"quality": 80}')
    return value
