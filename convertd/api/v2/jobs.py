"""Jobs: `POST /v2/jobs` takes a name -> task map and runs each task once its inputs have
finished; jobs are listed, shown, waited for and deleted."""

from __future__ import annotations

import asyncio
from graphlib import CycleError, TopologicalSorter
from typing import Any

from aiohttp import web

from convertd.api.limits import count_call
from convertd.api.receive import read_json
from convertd.api.state import API_KEY, CHANGES, CONFIG, DATA, DB, ENGINE
from convertd.api.v2.render import data, job_json
from convertd.api.v2.tasks import (
    JSON_HINT,
    MAX_JSON_BYTES,
    expand,
    new_task,
    one_of,
    page_of,
    valid_name,
)
from convertd.errors import Invalid, NotFound
from convertd.events import targets
from convertd.files import is_job_id
from convertd.store import task_jobs, tasks
from convertd.tasks.operations import (
    IMPORTS,
    OPERATIONS,
    format_hint,
    input_names,
    name_brought,
    with_image,
)
from convertd.tasks.parameters import INPUT_OPTIONAL

MAX_TASKS = 100
JOB_STATUSES = tuple(status.value for status in tasks.Status)  # a job's are its tasks' own


def _text(body: dict[str, Any], name: str, limit: int) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise Invalid(
            f"The {name} field must be a string of at most {limit} characters.",
            {name: [f"must be a string of at most {limit} characters"]},
        )
    return value


def _task_specs(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    specs = body.get("tasks")
    if not isinstance(specs, dict) or not specs:
        raise Invalid(
            "The tasks field is required: an object of task names to tasks.",
            {"tasks": ["must be an object of task names to tasks"]},
        )
    if len(specs) > MAX_TASKS:
        raise Invalid(
            f"A job has at most {MAX_TASKS} tasks.", {"tasks": [f"at most {MAX_TASKS} tasks"]}
        )
    for name, spec in specs.items():
        if not valid_name(name):
            raise Invalid(
                f"The task name {name[:100]!r} must be 1 to 100 letters, digits, '-', '_' or '.'.",
                {f"tasks.{name[:100]}": ["invalid task name"]},
            )
        if not isinstance(spec, dict):
            raise Invalid(
                f"The task {name!r} must be an object.", {f"tasks.{name}": ["must be an object"]}
            )
    return specs


def _inputs_by_name(specs: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Each task's inputs, checked to be tasks of this job, in an order that can run."""
    graph: dict[str, list[str]] = {}
    for name, spec in specs.items():
        operation = spec.get("operation")
        if (
            operation in IMPORTS
            or operation not in OPERATIONS
            or (operation in INPUT_OPTIONAL and "input" not in spec)
        ):
            graph[name] = []  # imports take no input; an unknown operation is refused later
            continue
        if "input" not in spec:
            raise Invalid(
                f"The tasks.{name}.input field is required: the {operation} operation takes "
                "an input.",
                {f"tasks.{name}.input": ["is required"]},
            )
        inputs = input_names(spec, f"tasks.{name}")
        if unknown := [i for i in inputs if i not in specs]:
            raise Invalid(
                f"The input {unknown[0]!r} of task {name!r} is not a task of this job.",
                {f"tasks.{name}.input": [f"no task named {u!r} in this job" for u in unknown]},
            )
        # A watermark's image is another task's file: that task is depended on too, last.
        graph[name] = with_image(operation, spec, inputs, f"tasks.{name}")
        if (image := graph[name][-1]) not in specs:
            raise Invalid(
                f"The image {image!r} of task {name!r} is not a task of this job.",
                {f"tasks.{name}.image": [f"no task named {image!r} in this job"]},
            )
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise Invalid(
            f"The tasks' inputs form a cycle: {cycle}.", {"tasks": [f"cycle: {cycle}"]}
        ) from None
    return graph


JOB_FIELDS = ("tasks", "tag", "webhook_url")


async def create(request: web.Request) -> web.Response:
    body = await read_json(request, MAX_JSON_BYTES, JSON_HINT)
    if unknown := sorted(set(body) - set(JOB_FIELDS)):
        raise Invalid(
            f"The {unknown[0]} field is not a field of a job; known: {', '.join(JOB_FIELDS)}.",
            {name: [f"not a field of a job; known: {', '.join(JOB_FIELDS)}"] for name in unknown},
        )
    tag = _text(body, "tag", 255)
    webhook_url = _text(body, "webhook_url", targets.MAX_URL) or None  # "": none, as on v1
    if webhook_url and (problem := targets.url_problem(request.app[CONFIG], webhook_url)):
        raise Invalid(f"The webhook_url field {problem}.", {"webhook_url": [problem]})
    specs = {
        name: await expand(request, spec.get("operation"), spec, f"tasks.{name}")
        for name, spec in _task_specs(body).items()
    }
    graph = _inputs_by_name(specs)
    if len(specs) > 1:
        # Each task is a call: the request itself counted one, the others count now.
        await count_call(request, request[API_KEY], len(specs) - 1)
    new: list[tasks.NewTask] = []
    try:
        brings = {name: name_brought(spec.get("operation"), spec) for name, spec in specs.items()}
        for name, spec in specs.items():
            operation = spec.get("operation")
            raw = {k: v for k, v in spec.items() if k != "operation"}
            inputs = graph[name]
            hint = format_hint(brings[inputs[0]]) if len(inputs) == 1 else None
            new.append(await new_task(request, name, operation, raw, f"tasks.{name}", [], hint))
        ids = {task.name: task.id for task in new}
        new = [
            tasks.NewTask(
                t.id,
                t.name,
                t.operation,
                t.payload,
                [ids[n] for n in graph[t.name]],
                t.ignore_error,
                t.result,
            )
            for t in new
        ]
        key_id = request[API_KEY].id
        job_id = await request.app[DB].write(
            lambda conn: task_jobs.insert_job(conn, key_id, tag, webhook_url, new)
        )
    except BaseException:
        for task in new:
            await asyncio.to_thread(request.app[DATA].remove_task_files, task.id)
        raise
    request.app[ENGINE].added()
    request.app[CHANGES].publish(key_id, ("new_task_job", job_id), *[("task", t.id) for t in new])
    job = await task_jobs.get_job(request.app[DB], job_id)
    if job is None:
        raise NotFound(f"Job {job_id} was deleted just after it was made.")
    return data(job_json(request, job), status=201)


async def owned_job(request: web.Request) -> task_jobs.TaskJob:
    job_id = request.match_info["job_id"]
    job = await task_jobs.get_job(request.app[DB], job_id) if is_job_id(job_id) else None
    if job is None or job.key_id != request[API_KEY].id:
        raise NotFound(f"No job with id {job_id!r}.")
    return job


async def show(request: web.Request) -> web.Response:
    return data(job_json(request, await owned_job(request)))


def _ended(job: task_jobs.TaskJob) -> bool:
    return job.status in tasks.ENDED


async def wait(request: web.Request) -> web.Response:
    """`GET /sync/v2/jobs/{id}`: the job once it has ended (or at the longest wait)."""
    job = await owned_job(request)
    job = await request.app[CHANGES].until(
        job.id, lambda: owned_job(request), _ended, request.app[CONFIG].sync_wait_seconds
    )
    return data(job_json(request, job))


async def listing(request: web.Request) -> web.Response:
    page = page_of(request)
    include = request.query.get("include", "")
    found, total = await task_jobs.list_jobs(
        request.app[DB],
        request[API_KEY].id,
        status=one_of(request, "filter[status]", JOB_STATUSES),
        tag=request.query.get("filter[tag]"),
        limit=page.per_page,
        offset=page.offset,
    )
    with_tasks = "tasks" in include.split(",")
    return page.answer([job_json(request, j, with_tasks=with_tasks) for j in found], total)


async def delete(request: web.Request) -> web.Response:
    """Cancel what still runs (its tools are killed), then delete the job, its tasks and files."""
    job = await owned_job(request)
    await request.app[ENGINE].delete(job.tasks, lambda conn: task_jobs.delete_job(conn, job.id))
    return web.Response(status=204)
