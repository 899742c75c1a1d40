"""The v1 API (the SkyConvert contract), described once: the router, the key check, the endpoint
list at `GET /v1/` and the OpenAPI document are all made from ROUTES."""

from __future__ import annotations

from typing import Any

from convertd.api.openapi import error, index_route, json_body, self_description
from convertd.api.routes import Route
from convertd.api.v1.formats import formats
from convertd.api.v1.jobs import convert, download, status
from convertd.api.v1.keys import keys_me
from convertd.api.v1.uploads import upload
from convertd.converters.registry import FILETYPES
from convertd.events.stream import v1_events

JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
CONVERT_FIELDS = {
    "type": "object",
    "properties": {
        "file": {"type": "string", "format": "binary"},
        "file_path": {"type": "string"},
        "filetype": {"type": "string", "enum": list(FILETYPES)},
        "output_format": {"type": "string"},
        "options": {
            "type": "string",
            "description": "A JSON object of converter options; GET /v1/formats describes each "
            "(what video_codec copy keeps and which outputs take it, where a trimmed copy "
            "starts)",
        },
        "preset": {
            "type": "string",
            "description": "A preset's name: its filetype, output_format and options fill in "
            "what the request does not give (filetype and output_format are then optional)",
        },
    },
    "description": "filetype and output_format are required unless a preset gives them",
}
STATUS = {
    "type": "object",
    "required": ["ok", "job_id", "status"],
    "properties": {
        "ok": {"type": "boolean"},
        "job_id": {"type": "string"},
        "status": {"type": "string", "enum": ["pending", "processing", "finished", "failed"]},
        "progress": {"type": "integer"},
        "download_url": {"type": "string"},
        "error": {"type": "string"},
        "file_name": {"type": "string"},
        "file_size": {"type": "integer"},
        "file_count": {"type": "integer"},
    },
}
KEY = {
    "type": "object",
    "required": [
        "ok",
        "key_id",
        "name",
        "restriction_type",
        "allowed_ips",
        "allowed_domains",
        "usage_count",
        "last_used_at",
        "created_at",
        "rate_limits",
    ],
}


def _ok(description: str, required: list[str], **properties: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "required": required}
    if properties:
        schema["properties"] = properties
    return json_body(description, schema)


ROUTES: list[Route] = [
    index_route("v1", lambda: ROUTES, ok=True),
    Route(
        "GET",
        "/v1/formats",
        formats,
        "Supported input and output formats by filetype",
        scope="task.read",
        operation={
            "responses": {
                "200": _ok(
                    "Formats by filetype",
                    ["ok", "filetypes"],
                    ok={"type": "boolean"},
                    filetypes={"type": "object"},
                )
            }
        },
    ),
    Route(
        "POST",
        "/v1/upload",
        upload,
        "Upload one or more files (multipart field 'file', repeatable)",
        scope="task.write",
        operation={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "file": {
                                    "type": "array",
                                    "items": {"type": "string", "format": "binary"},
                                }
                            },
                        },
                    }
                },
            },
            "responses": {
                "200": _ok(
                    "Stored files",
                    ["ok", "files"],
                    ok={"type": "boolean"},
                    files={"type": "array"},
                ),
                "400": error("No file, or a malformed body"),
                "408": error("The upload stalled"),
                "413": error("Larger than max_upload_bytes"),
            },
        },
    ),
    Route(
        "POST",
        "/v1/convert",
        convert,
        "Start a conversion job from 'file' or 'file_path'",
        scope="task.write",
        operation={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {"schema": CONVERT_FIELDS},
                    "application/x-www-form-urlencoded": {"schema": CONVERT_FIELDS},
                    "application/json": {"schema": {"type": "object"}},
                },
            },
            "responses": {
                "202": _ok("Job queued", ["ok", "job_id", "status", "status_url", "download_url"]),
                "400": error("A missing or invalid field, named in the message"),
                "404": error("No such file_path for this key"),
                "408": error("The upload stalled"),
                "413": error("Larger than max_upload_bytes"),
                "503": error("The converter's tool is not installed"),
            },
        },
    ),
    Route(
        "GET",
        "/v1/events",
        v1_events,
        "A Server-Sent Event stream of this key's jobs as they change, with their progress",
        scope="task.read",
        operation={"responses": {"200": {"content": {"text/event-stream": {}}}}},
    ),
    Route(
        "GET",
        "/v1/status/{job_id}",
        status,
        "A job's status; with ?wait=SECONDS (at most 300), as soon as the job ends",
        scope="task.read",
        operation={
            "parameters": [
                JOB_ID,
                {
                    "name": "wait",
                    "in": "query",
                    "schema": {"type": "number", "minimum": 0, "maximum": 300},
                },
            ],
            "responses": {
                "200": json_body("The job", STATUS),
                "400": error("A 'wait' that is not a number of seconds from 0 to 300"),
                "404": error("Unknown, another key's, or expired job"),
            },
        },
    ),
    Route(
        "GET",
        "/v1/download/{job_id}",
        download,
        "A finished job's result, with the key or by the signed download_url (no key)",
        public=True,  # the handler checks the key, or the link's signature instead
        operation={
            "parameters": [
                JOB_ID,
                {"name": "expires", "in": "query", "schema": {"type": "string"}},
                {"name": "signature", "in": "query", "schema": {"type": "string"}},
                {"name": "inline", "in": "query", "schema": {"type": "string", "enum": ["1"]}},
            ],
            "responses": {
                "200": {
                    "description": "The result's bytes",
                    "content": {"application/octet-stream": {}},
                },
                "401": error("No key and no signature"),
                "403": error("A wrong or expired signature, or a key without task.read"),
                "404": error("Unknown, another key's, or expired job"),
                "409": error("Not finished yet, or failed"),
                "429": error("Rate limit reached; see Retry-After"),
            },
        },
    ),
    Route(
        "GET",
        "/v1/keys/me",
        keys_me,
        "This key's details and remaining quota",
        scope="user.read",
        operation={"responses": {"200": json_body("This key and its quota", KEY)}},
    ),
    *self_description("v1", "convertd v1 API", lambda: ROUTES),
]
