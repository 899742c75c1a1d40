"""`GET /v1/events` and `GET /v2/events`: Server-Sent Event streams of the calling key's jobs
and tasks as they change, with their progress, for pages and apps that want to watch without
polling (an `EventSource` passes the key as `?api_key=`, since it cannot send headers).

Each message is `event: <name>` and `data: {"event": <name>, "job"|"task": ...}`, the subject
rendered as the API's status answers render it. Names: job.created, job.updated, job.finished,
job.failed, job.deleted, and the same for task.* on /v2. A comment line every HEARTBEAT_SECONDS
keeps proxies from closing a quiet stream. Nothing is replayed: a client that reconnects asks
the status of what it watches, then goes on with the stream.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from convertd.api.auth import admit
from convertd.api.routes import scope_of
from convertd.api.state import API_KEY, CHANGES, DB
from convertd.api.v1.jobs import status_json
from convertd.api.v2.render import job_json, task_json
from convertd.changes import Item
from convertd.errors import Forbidden
from convertd.store import job_lists, jobs, keys, task_jobs, tasks

HEARTBEAT_SECONDS = 15
# Streams one key may hold open at once (each is a socket and a subscription).
MAX_STREAMS_PER_KEY = 16
# v1's and v2's statuses, as the end of an event's name.
NAMES = {
    "pending": "updated",  # a v1 job is created by ("new_job", id); pending again: requeued
    "waiting": "created",
    "processing": "updated",
    "finished": "finished",
    "failed": "failed",
    "error": "failed",
}


# Events that end their subject, and how many of them a stream remembers having sent.
ENDS = (".finished", ".failed", ".deleted")
MAX_TOLD = 10_000


def _subject_id(message: dict[str, Any]) -> str:
    subject = message.get("job") or message.get("task") or {}
    return str(subject.get("id") or subject.get("job_id"))


def _name(kind: str, status: str) -> str:
    return f"{kind}.{NAMES[status]}"


async def _v1_messages(request: web.Request, item: Item) -> list[dict[str, Any]]:
    kind, subject = item
    if kind not in ("job", "new_job"):
        return []
    job = await jobs.get(request.app[DB], subject)
    if job is None:
        return [{"event": "job.deleted", "job": {"job_id": subject}}]
    if job.source != "api":
        return []
    name = "job.created" if kind == "new_job" else _name("job", job.status.value)
    return [{"event": name, "job": status_json(request, job)}]


async def _v2_messages(request: web.Request, item: Item) -> list[dict[str, Any]]:
    kind, subject = item
    db = request.app[DB]
    if kind in ("task_job", "new_task_job"):
        job = await task_jobs.get_job(db, subject)
        if job is None:
            return [{"event": "job.deleted", "job": {"id": subject}}]
        name = "job.created" if kind == "new_task_job" else _name("job", job.status)
        message = {"event": name, "job": job_json(request, job, with_tasks=False)}
        if not name.endswith(ENDS):
            return [message]
        # A job's end comes after its tasks' ends, which may still be on their way to this
        # stream (its item was queued first): they are told here, and skipped when they come.
        ends = [
            {"event": name, "task": task_json(request, t)}
            for t in job.tasks
            if (name := _name("task", t.status.value)).endswith(ENDS)
        ]
        return [*ends, message]
    if kind == "task":
        task = await tasks.get(db, subject)
        if task is None:
            return [{"event": "task.deleted", "task": {"id": subject}}]
    elif kind == "job":  # a queued job: shown as the convert task it runs for, with its percent
        found = await tasks.of_conversion(db, subject)
        if found is None:
            return []
        task = found
    else:
        return []
    return [{"event": _name("task", task.status.value), "task": task_json(request, task)}]


# What a stream says last when its key is revoked: the ends of what the revoke failed while it
# was queued, which nothing else announces (the worker stopping a running job announces that
# one; a queued job's row is only failed by whoever revoked, perhaps the CLI).
LastWords = Callable[[job_lists.RevokedBeforeStart], list[Item]]


def _v1_revoked(ended: job_lists.RevokedBeforeStart) -> list[Item]:
    return [("job", job_id) for job_id in ended.jobs]


def _v2_revoked(ended: job_lists.RevokedBeforeStart) -> list[Item]:
    # A convert task whose conversion was queued is told as that conversion (its job); the
    # tasks still waiting for their inputs, as themselves; then the /v2 jobs they made up.
    items: list[Item] = [("job", job_id) for job_id in ended.jobs]
    items += [("task", task_id) for task_id in ended.tasks]
    return items + [("task_job", job_id) for job_id in ended.task_jobs]


async def _last_words(
    request: web.Request, key: keys.ApiKey | None, last_words: LastWords
) -> list[Item]:
    """What a stream whose key was revoked or deleted says before it ends."""
    if key is None or key.revoked_at is None:
        return []  # deleted, and its jobs with it
    return last_words(await job_lists.revoked_before_start(request.app[DB], key.id, key.revoked_at))


def _refusal(request: web.Request, key: keys.ApiKey) -> str | None:
    """Why this live key may no longer read this stream, as a new one would be refused (auth's
    one rule: `convertd keys set` moved it to a plan without API access, took the scope away,
    or restricted it to elsewhere), or None."""
    try:
        admit(request, key, scope_of(request))
    except Forbidden as refused:
        return refused.message
    return None


async def _stream(request: web.Request, render: Any, last_words: LastWords) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: pass each message on at once
        }
    )
    await response.prepare(request)
    await response.write(b": convertd events\nretry: 3000\n\n")
    changes, key_id = request.app[CHANGES], request[API_KEY].id
    subscription = changes.subscribe(key_id)
    sent = 0
    # The ends already told, each once: an item is rendered as its subject stands when it is
    # read, so a progress item read after the end would tell that end a second time.
    told: dict[str, str] = {}  # subject id -> the end told

    async def send(items: list[Item]) -> None:
        nonlocal sent
        messages = [m for item in items for m in await render(request, item)]
        for message in messages:
            subject = _subject_id(message)
            if not message["event"].endswith(ENDS):
                told.pop(subject, None)  # going again (a retried /v2 job): its next end is new
            elif told.get(subject) == message["event"]:
                continue
            else:
                told[subject] = message["event"]
                if len(told) > MAX_TOLD:
                    del told[next(iter(told))]
            sent += 1
            data = json.dumps(message, separators=(",", ":"))
            await response.write(
                f"id: {sent}\nevent: {message['event']}\ndata: {data}\n\n".encode()
            )

    try:
        while not subscription.closed:
            items = await subscription.next(HEARTBEAT_SECONDS)
            # The key as it is now, whoever changed it (the CLI, the admin API, another node).
            key = await keys.get_key(request.app[DB], key_id)
            live = key is not None and key.revoked_at is None
            if key is not None and live and (why := _refusal(request, key)):
                # No longer allowed: not one more message, and a reconnect hears the 403.
                await response.write(f": ended: {why}\n\n".encode())
                break
            if items:
                await send(items)
            if not live:
                # Revoked or deleted: the stream ends, once it has told the ends of the jobs
                # the revoke failed before they started.
                await send(await _last_words(request, key, last_words))
                break
            if not items:
                await response.write(b": ping\n\n")
    except (ConnectionResetError, RuntimeError):
        pass  # the client went away
    finally:
        changes.unsubscribe(key_id, subscription)
    return response


async def v1_events(request: web.Request) -> web.StreamResponse:
    return await _stream(request, _v1_messages, _v1_revoked)


async def v2_events(request: web.Request) -> web.StreamResponse:
    return await _stream(request, _v2_messages, _v2_revoked)
