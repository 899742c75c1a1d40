"""Tasks, jobs and pages as CloudConvert's API v2 shows them (`{"data": ...}`), with the links
that need no key (upload forms, exported files) signed here."""

from __future__ import annotations

import datetime as dt
import math
import socket
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from convertd.api.state import CONFIG, REGISTRY, SIGNER
from convertd.api.urls import Reached, base_url
from convertd.store import task_jobs, tasks
from convertd.tasks.tool_versions import engine_of

UPLOAD = "upload"
DOWNLOAD = "download"
DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 1000
HOST_NAME = socket.gethostname()


def iso(ts: float | None) -> str | None:
    """CloudConvert's timestamps: `2019-05-30T10:53:01+00:00`."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(int(ts), dt.UTC).isoformat()


def upload_expires(request: Reached, task: tasks.Task) -> int:
    return int(task.created_at + request.app[CONFIG].retention_seconds)


def link_expires(request: Reached, task: tasks.Task) -> int:
    return int((task.ended_at or task.created_at) + request.app[CONFIG].retention_seconds)


def upload_form(request: Reached, task: tasks.Task) -> dict[str, Any]:
    expires = upload_expires(request, task)
    signature = request.app[SIGNER].sign(UPLOAD, task.id, expires)
    query = urlencode({"expires": expires, "signature": signature})
    return {
        "url": f"{base_url(request)}/v2/upload/{task.id}?{query}",
        "parameters": {"expires": expires, "signature": signature},
    }


def file_url(request: Reached, task: tasks.Task, filename: str) -> str:
    expires = link_expires(request, task)
    signature = request.app[SIGNER].sign(DOWNLOAD, f"{task.id}/{filename}", expires)
    query = urlencode({"expires": expires, "signature": signature})
    return f"{base_url(request)}/v2/files/{task.id}/{quote(filename, safe='')}?{query}"


def _result(request: Reached, task: tasks.Task) -> dict[str, Any] | None:
    if task.operation == "import/upload" and task.status is tasks.Status.WAITING:
        return {"form": upload_form(request, task)}
    if task.result is None:
        return None
    files = task.files
    if task.operation == "export/url":
        files = [{**f, "url": file_url(request, task, f["filename"])} for f in files]
    return {**task.result, "files": files}


def task_json(request: Reached, task: tasks.Task) -> dict[str, Any]:
    message = task.message
    if message is None and task.operation == "import/upload" and not task.ended:
        message = "Waiting for file upload"
    out: dict[str, Any] = {
        "id": task.id,
        "name": task.name,
        "job_id": task.job_id,
        "operation": task.operation,
        "status": task.status.value,
        "message": message,
        "code": task.code,
        "credits": 0 if task.ended else None,
        "percent": task.percent,
        "result": _result(request, task),
        "created_at": iso(task.created_at),
        "started_at": iso(task.started_at),
        "ended_at": iso(task.ended_at),
        "retry_of_task_id": task.retry_of,
        "copy_of_task_id": None,
        "user_id": task.key_id,
        "priority": 0,
        "host_name": HOST_NAME if task.started_at is not None else None,
        "storage": None,
        "depends_on_task_ids": task.depends_on,
        "payload": {"operation": task.operation, **task.payload},
        "links": {"self": f"{base_url(request)}/v2/tasks/{task.id}"},
    }
    if task.operation in ("convert", "archive"):
        out["engine"], out["engine_version"] = engine_of(request.app[REGISTRY], task)
    return out


def job_json(
    request: Reached, job: task_jobs.TaskJob, *, with_tasks: bool = True
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": job.id,
        "tag": job.tag,
        "status": job.status,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "ended_at": iso(job.ended_at),
    }
    if with_tasks:
        out["tasks"] = [task_json(request, t) for t in job.tasks]
    out["links"] = {"self": f"{base_url(request)}/v2/jobs/{job.id}"}
    return out


def data(payload: Any, status: int = 200) -> web.Response:
    return web.json_response({"data": payload}, status=status)


class Page:
    """`page` and `per_page` from the query, and the `links` and `meta` of the answer (Laravel's
    simple pagination, as CloudConvert answers)."""

    def __init__(self, request: web.Request, page: int, per_page: int) -> None:
        self.request = request
        self.page = page
        self.per_page = per_page

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    def _link(self, page: int) -> str:
        query = [(k, v) for k, v in self.request.query.items() if k != "page"]
        query.append(("page", str(page)))
        return f"{base_url(self.request)}{self.request.path}?{urlencode(query)}"

    def answer(
        self, items: list[Any], total: int, extra_meta: dict[str, Any] | None = None
    ) -> web.Response:
        last = max(1, math.ceil(total / self.per_page))
        start = self.offset + 1 if items else None
        return web.json_response(
            {
                "data": items,
                "links": {
                    "first": self._link(1),
                    "last": self._link(last),
                    "prev": self._link(self.page - 1) if self.page > 1 else None,
                    "next": self._link(self.page + 1) if self.page < last else None,
                },
                "meta": {
                    "current_page": self.page,
                    "from": start,
                    "last_page": last,
                    "path": f"{base_url(self.request)}{self.request.path}",
                    "per_page": self.per_page,
                    "to": self.offset + len(items) if items else None,
                    "total": total,
                    **(extra_meta or {}),
                },
            }
        )
