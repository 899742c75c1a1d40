"""The OpenAPI pieces the /v2 routes describe themselves with: CloudConvert's task and job."""

from __future__ import annotations

from typing import Any

from convertd.api.openapi import json_body


def error(description: str) -> dict[str, Any]:
    return json_body(description, {"$ref": "#/components/schemas/Error"})


UUID = {"type": "string", "format": "uuid"}
TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}
JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
PAGING = [
    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
    {
        "name": "per_page",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
    },
]
TASK = {
    "type": "object",
    "required": ["id", "operation", "status", "created_at", "depends_on_task_ids", "links"],
    "properties": {
        "id": UUID,
        "name": {"type": "string"},
        "job_id": {"type": "string", "nullable": True},
        "operation": {"type": "string"},
        "status": {"type": "string", "enum": ["waiting", "processing", "finished", "error"]},
        "message": {"type": "string", "nullable": True},
        "code": {"type": "string", "nullable": True},
        "percent": {"type": "integer"},
        "result": {"type": "object", "nullable": True},
        "created_at": {"type": "string"},
        "started_at": {"type": "string", "nullable": True},
        "ended_at": {"type": "string", "nullable": True},
        "depends_on_task_ids": {"type": "array", "items": {"type": "string"}},
        "links": {"type": "object"},
    },
}
JOB = {
    "type": "object",
    "required": ["id", "status", "created_at", "links"],
    "properties": {
        "id": UUID,
        "tag": {"type": "string", "nullable": True},
        "status": {"type": "string", "enum": ["waiting", "processing", "finished", "error"]},
        "tasks": {"type": "array", "items": TASK},
        "links": {"type": "object"},
    },
}


def one(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return json_body(
        description, {"type": "object", "required": ["data"], "properties": {"data": schema}}
    )


def many(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return json_body(
        description,
        {
            "type": "object",
            "required": ["data", "links", "meta"],
            "properties": {"data": {"type": "array", "items": schema}},
        },
    )


def json_request(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


TASK_BODY = {"type": "object", "additionalProperties": True}
CREATED_TASK = {
    "requestBody": json_request(TASK_BODY),
    "responses": {
        "201": one("The task", TASK),
        "400": error("A malformed body"),
        "413": error("A body over 64 MiB"),
        "422": error("A missing or invalid field, named in `errors`"),
    },
}
