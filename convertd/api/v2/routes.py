"""The /v2 API (CloudConvert's API v2), described once: the router, the key and scope checks
and the OpenAPI document at `/v2/openapi.json` are all made from ROUTES."""

from __future__ import annotations

from aiohttp import web

from convertd.api.openapi import index_route, self_description
from convertd.api.routes import Route
from convertd.api.v2 import account, drops, files, jobs, presets, tasks, webhooks
from convertd.api.v2.schemas import (
    CREATED_TASK,
    JOB,
    JOB_ID,
    PAGING,
    TASK,
    TASK_BODY,
    TASK_ID,
    error,
    json_request,
    many,
    one,
)
from convertd.errors import Invalid
from convertd.events.stream import v2_events
from convertd.tasks.operations import NOT_YET, OPERATIONS

READ, WRITE, USER = "task.read", "task.write", "user.read"
HOOKS_READ, HOOKS_WRITE = "webhook.read", "webhook.write"
WEBHOOK = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "url": {"type": "string"},
        "events": {"type": "array", "items": {"type": "string"}},
        "signing_secret": {"type": "string", "description": "only in the answer to POST"},
        "created_at": {"type": "string"},
    },
}


async def not_yet(request: web.Request) -> web.Response:
    operation = request.path.removeprefix("/v2/")
    raise Invalid(
        f"The operation {operation!r} is not available in convertd yet.",
        {"operation": [f"convertd does: {', '.join(OPERATIONS)}"]},
    )


def _operation_routes() -> list[Route]:
    routes = [
        Route(
            "POST",
            f"/v2/{operation}",
            tasks.create,
            f"Create {'an' if operation.startswith(('import', 'archive', 'export')) else 'a'} "
            f"{operation} task on its own",
            scope=WRITE,
            operation=CREATED_TASK,
        )
        for operation in OPERATIONS
    ]
    routes += [
        Route(
            "POST",
            f"/v2/{operation}",
            not_yet,
            f"{operation}: not available in convertd yet (422)",
            scope=WRITE,
            operation={"responses": {"422": error("Not available yet")}},
        )
        for operation in NOT_YET
    ]
    return routes


ROUTES: list[Route] = [
    index_route("v2", lambda: ROUTES, compatible_with="CloudConvert API v2"),
    Route(
        "POST",
        "/v2/jobs",
        jobs.create,
        "Create a job: a name -> task map, run in dependency order",
        scope=WRITE,
        operation={
            "requestBody": json_request(
                {
                    "type": "object",
                    "required": ["tasks"],
                    "properties": {
                        "tasks": {"type": "object", "additionalProperties": TASK_BODY},
                        "tag": {"type": "string"},
                        "webhook_url": {"type": "string"},
                    },
                }
            ),
            "responses": {
                "201": one("The job", JOB),
                "400": error("A malformed body"),
                "413": error("A body over 64 MiB"),
                "422": error("A missing or invalid field, named in `errors`"),
            },
        },
    ),
    Route(
        "GET",
        "/v2/jobs",
        jobs.listing,
        "This key's jobs, newest first",
        scope=READ,
        operation={
            "parameters": [
                {"name": "filter[status]", "in": "query", "schema": {"type": "string"}},
                {"name": "filter[tag]", "in": "query", "schema": {"type": "string"}},
                {"name": "include", "in": "query", "schema": {"type": "string"}},
                *PAGING,
            ],
            "responses": {"200": many("Jobs", JOB), "422": error("A bad filter or page")},
        },
    ),
    Route(
        "GET",
        "/v2/jobs/{job_id}",
        jobs.show,
        "A job with its tasks",
        scope=READ,
        operation={
            "parameters": [JOB_ID],
            "responses": {"200": one("The job", JOB), "404": error("No such job for this key")},
        },
    ),
    Route(
        "DELETE",
        "/v2/jobs/{job_id}",
        jobs.delete,
        "Cancel a job's running tasks and delete it with its files",
        scope=WRITE,
        operation={
            "parameters": [JOB_ID],
            "responses": {"204": {"description": "Deleted"}, "404": error("No such job")},
        },
    ),
    Route(
        "GET",
        "/sync/v2/jobs/{job_id}",
        jobs.wait,
        "Wait until a job has ended (at most sync_wait_seconds), then return it",
        scope=READ,
        operation={
            "parameters": [JOB_ID],
            "responses": {"200": one("The job", JOB), "404": error("No such job for this key")},
        },
    ),
    Route(
        "GET",
        "/v2/tasks",
        tasks.listing,
        "This key's tasks, newest first",
        scope=READ,
        operation={
            "parameters": [
                {"name": "filter[job_id]", "in": "query", "schema": {"type": "string"}},
                {"name": "filter[status]", "in": "query", "schema": {"type": "string"}},
                {"name": "filter[operation]", "in": "query", "schema": {"type": "string"}},
                *PAGING,
            ],
            "responses": {"200": many("Tasks", TASK), "422": error("A bad filter or page")},
        },
    ),
    Route(
        "GET",
        "/v2/tasks/{task_id}",
        tasks.show,
        "A task",
        scope=READ,
        operation={
            "parameters": [TASK_ID],
            "responses": {"200": one("The task", TASK), "404": error("No such task")},
        },
    ),
    Route(
        "DELETE",
        "/v2/tasks/{task_id}",
        tasks.delete,
        "Delete a task (cancelling it first) and its files",
        scope=WRITE,
        operation={
            "parameters": [TASK_ID],
            "responses": {"204": {"description": "Deleted"}, "404": error("No such task")},
        },
    ),
    Route(
        "POST",
        "/v2/tasks/{task_id}/cancel",
        tasks.cancel,
        "Cancel a waiting or processing task and the tasks that depend on it",
        scope=WRITE,
        operation={
            "parameters": [TASK_ID],
            "responses": {
                "200": one("The cancelled task", TASK),
                "404": error("No such task"),
                "422": error("The task has already ended"),
            },
        },
    ),
    Route(
        "POST",
        "/v2/tasks/{task_id}/retry",
        tasks.retry,
        "A new task with an ended task's operation, parameters and inputs",
        scope=WRITE,
        operation={
            "parameters": [TASK_ID],
            "responses": {
                "201": one("The new task", TASK),
                "404": error("No such task"),
                "422": error("The task has not ended, or cannot be retried"),
            },
        },
    ),
    Route(
        "GET",
        "/sync/v2/tasks/{task_id}",
        tasks.wait,
        "Wait until a task has ended (at most sync_wait_seconds), then return it",
        scope=READ,
        operation={
            "parameters": [TASK_ID],
            "responses": {"200": one("The task", TASK), "404": error("No such task")},
        },
    ),
    *_operation_routes(),
    Route(
        "POST",
        "/v2/upload/{task_id}",
        files.upload,
        "An import/upload task's form: the file, signed by the form's parameters (no key)",
        public=True,
        operation={
            "parameters": [
                TASK_ID,
                {"name": "expires", "in": "query", "required": True, "schema": {"type": "string"}},
                {
                    "name": "signature",
                    "in": "query",
                    "required": True,
                    "schema": {"type": "string"},
                },
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"file": {"type": "string", "format": "binary"}},
                        }
                    }
                },
            },
            "responses": {
                "201": one("The finished task", TASK),
                "303": {"description": "Sent to the task's redirect URL"},
                "400": error("Not exactly one file"),
                "403": error("A missing, wrong or expired signature"),
                "404": error("No such import/upload task"),
                "408": error("The upload stalled"),
                "409": error("Another upload to this task is under way"),
                "410": error("The task already has its file, or was cancelled"),
                "413": error("Larger than max_upload_bytes"),
            },
        },
    ),
    Route(
        "GET",
        "/v2/files/{task_id}/{name}",
        files.download,
        "An exported file, by the signed URL in its export/url task's result (no key)",
        public=True,
        operation={
            "parameters": [
                TASK_ID,
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "expires", "in": "query", "required": True, "schema": {"type": "string"}},
                {
                    "name": "signature",
                    "in": "query",
                    "required": True,
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": {"description": "The file", "content": {"application/octet-stream": {}}},
                "403": error("A missing, wrong or expired signature"),
                "404": error("The task or file no longer exists"),
            },
        },
    ),
    Route(
        "GET",
        "/v2/events",
        v2_events,
        "A Server-Sent Event stream of this key's jobs and tasks as they change, with percent",
        scope=READ,
        operation={"responses": {"200": {"content": {"text/event-stream": {}}}}},
    ),
    Route(
        "POST",
        "/v2/webhooks",
        webhooks.create,
        "Subscribe a URL to this key's events; the answer shows its signing_secret, once",
        scope=HOOKS_WRITE,
        operation={
            "requestBody": json_request(
                {
                    "type": "object",
                    "required": ["url", "events"],
                    "properties": {
                        "url": {"type": "string"},
                        "events": {
                            "type": "array",
                            "items": {
                                "type": "string",
                                "enum": [
                                    "job.created",
                                    "job.finished",
                                    "job.failed",
                                    "task.finished",
                                    "task.failed",
                                ],
                            },
                        },
                    },
                }
            ),
            "responses": {
                "201": one("The webhook, with its signing_secret", WEBHOOK),
                "400": error("A malformed body"),
                "413": error("A body over 64 KiB"),
                "422": error("A missing or invalid url or events"),
            },
        },
    ),
    Route(
        "GET",
        "/v2/webhooks",
        webhooks.listing,
        "This key's webhooks (without their secrets)",
        scope=HOOKS_READ,
        operation={
            "parameters": PAGING,
            "responses": {"200": many("Webhooks", WEBHOOK), "422": error("A bad page")},
        },
    ),
    Route(
        "DELETE",
        "/v2/webhooks/{webhook_id}",
        webhooks.delete,
        "Delete a webhook; its deliveries not yet sent are dropped",
        scope=HOOKS_WRITE,
        operation={
            "parameters": [
                {"name": "webhook_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {"204": {"description": "Deleted"}, "404": error("No such webhook")},
        },
    ),
    *presets.ROUTES,
    *drops.ROUTES,
    Route(
        "GET",
        "/v2/users/me",
        account.users_me,
        "The calling key as a user, with its quota",
        scope=USER,
        operation={"responses": {"200": one("The user", {"type": "object"})}},
    ),
    Route(
        "GET",
        "/v2/convert/formats",
        account.formats,
        "Every conversion this server can do (filter[input_format], filter[output_format], "
        "include=options); needs no key",
        public=True,
        operation={
            "parameters": [
                {"name": "filter[input_format]", "in": "query", "schema": {"type": "string"}},
                {"name": "filter[output_format]", "in": "query", "schema": {"type": "string"}},
                {"name": "filter[engine]", "in": "query", "schema": {"type": "string"}},
                {"name": "include", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {"200": one("Conversions", {"type": "array"})},
        },
    ),
    *self_description("v2", "convertd v2 API (CloudConvert API v2)", lambda: ROUTES, v2=True),
]
