"""The retention sweep: uploads and results older than the retention period are deleted."""

from __future__ import annotations

import asyncio
import logging

from convertd import clock
from convertd.config import Config
from convertd.files import DataDir
from convertd.store import jobs, quotas, uploads
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
    # Day counters are needed for one day; keep two for the sake of clock skew at midnight.
    await quotas.prune_counters(db, clock.now() - 2 * 86400)
    if expired_jobs or expired_uploads:
        logger.info(
            "retention: deleted %d upload(s) and %d job result(s) older than %d s",
            len(expired_uploads),
            len(expired_jobs),
            config.retention_seconds,
        )
