"""What a webhook delivery says: `{"id", "event", "created_at", <subject>}`, the subject
rendered as the API that subscribed shows it (a /v2 job or task, v1's status body, a dropped
file), with links built on the `public_url` setting. Rendered at a delivery's first try and kept,
so every retry sends the same bytes."""

from __future__ import annotations

import json
import os
from typing import Any

from aiohttp import web

from convertd.api.state import DB
from convertd.api.urls import Site
from convertd.api.v1.jobs import status_json
from convertd.api.v2.render import iso, job_json, task_json
from convertd.store import drops, jobs, task_jobs, tasks
from convertd.store.webhooks import Delivery


async def render(app: web.Application, delivery: Delivery) -> bytes:
    d = delivery
    envelope: dict[str, Any] = {"id": d.event_id, "event": d.event, "created_at": iso(d.event_at)}
    subject = await _subject(app, d)
    return json.dumps({**envelope, **subject}, separators=(",", ":")).encode()


def _ended_status(delivery: Delivery) -> str:
    return "finished" if delivery.event.endswith(".finished") else "error"


async def _subject(app: web.Application, d: Delivery) -> dict[str, Any]:
    """The thing the event is about, as it stands; if it was deleted since, what is known."""
    site, db = Site.of(app), app[DB]
    if d.api == "v2" and d.task_id is not None:
        task = await tasks.get(db, d.task_id)
        if task is None:
            return {"task": {"id": d.task_id, "job_id": d.job_id, "status": _ended_status(d)}}
        return {"task": task_json(site, task)}
    if d.api == "v2" and d.job_id is not None:
        job = await task_jobs.get_job(db, d.job_id)
        if job is None:
            status = "waiting" if d.event == "job.created" else _ended_status(d)
            return {"job": {"id": d.job_id, "status": status, "tasks": []}}
        return {"job": job_json(site, job)}
    if d.api == "v1" and d.job_id is not None:
        v1_job = await jobs.get(db, d.job_id)
        if v1_job is None:
            failed = d.event == "job.failed"
            return {"job": {"ok": not failed, "job_id": d.job_id, "status": d.event[4:]}}
        return {"job": status_json(site, v1_job)}
    drop = await drops.get(db, d.drop_id) if d.drop_id is not None else None
    if drop is None:
        return {"drop": {"id": d.drop_id, "status": d.event[4:]}}
    return {
        "drop": {
            "id": drop.id,
            "rule": drop.rule,
            "file": os.fsdecode(drop.source_path),
            "status": "finished" if drop.status == "done" else "failed",
            "output": os.fsdecode(drop.output_path) if drop.output_path else None,
            "error": drop.error,
            "job_id": drop.job_id,
        }
    }
