"""The retention sweep: uploads, results and /v2 jobs and tasks older than the retention period
are deleted. With several nodes, the leading one sweeps (cluster/leader.py)."""

from __future__ import annotations

import asyncio
import functools
import logging

from convertd import clock
from convertd.config import Config
from convertd.files import DataDir
from convertd.store import jobs, nodes, quotas, task_jobs, tasks, uploads, webhooks
from convertd.store.db import Database

logger = logging.getLogger(__name__)


async def sweep_once(config: Config, db: Database, data: DataDir) -> None:
    """Delete what has outlived the retention period."""
    cutoff = clock.now() - config.retention_seconds
    expired_jobs = await jobs.expire_older_than(db, cutoff)
    for job_id in expired_jobs:
        await asyncio.to_thread(data.remove_job_files, job_id)
    expired_uploads = await uploads.expire_older_than(db, cutoff)
    for file_path in expired_uploads:
        await asyncio.to_thread(data.remove_upload, file_path)
    old_jobs, old_tasks = await task_jobs.expired(db, cutoff)
    for job_id in old_jobs:
        old_tasks += await db.write(functools.partial(task_jobs.delete_job, job_id=job_id))
    for task_id in old_tasks:
        await db.write(functools.partial(tasks.delete_task, task_id=task_id))
        await asyncio.to_thread(data.remove_task_files, task_id)
    await _sweep_orphaned_task_files(db, data, cutoff)
    # Webhook events and their deliveries' answers, once nothing is left to send.
    await webhooks.forget_before(db, cutoff)
    # Day counters are needed for one day; keep two for the sake of clock skew at midnight.
    await quotas.prune_counters(db, clock.now() - 2 * 86400)
    await nodes.forget_before(db, clock.now() - nodes.FORGET_AFTER_SECONDS)
    if expired_jobs or expired_uploads or old_tasks:
        logger.info(
            "retention: deleted %d upload(s), %d job result(s) and %d /v2 task(s) older than %d s",
            len(expired_uploads),
            len(expired_jobs),
            len(old_tasks),
            config.retention_seconds,
        )


async def _sweep_orphaned_task_files(db: Database, data: DataDir, cutoff: float) -> None:
    """Task directories (and staging left by a crash) older than the retention period whose
    task no longer exists: what a race between a delete and a task's last write leaves."""
    old = await asyncio.to_thread(data.task_dirs_older_than, cutoff)
    if not old:
        return
    live = await tasks.existing(db, list(old))
    for task_id in sorted(set(old) - live):
        await asyncio.to_thread(data.remove_task_files, task_id)
