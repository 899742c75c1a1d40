"""Jobs read several at a time: the most recent (`convertd jobs list`), and which of the jobs
and /v2 tasks this daemon's waits are on have ended (events/outside.py)."""

from __future__ import annotations

from collections.abc import Sequence

from convertd.store.db import Database, marks
from convertd.store.jobs import Job


async def recent(db: Database, status: str | None = None, limit: int = 50) -> list[Job]:
    if status:
        rows = await db.fetch_all(
            "SELECT * FROM jobs WHERE status = ? ORDER BY created_at DESC LIMIT ?", (status, limit)
        )
    else:
        rows = await db.fetch_all("SELECT * FROM jobs ORDER BY created_at DESC LIMIT ?", (limit,))
    return [Job.from_row(r) for r in rows]


async def ended_among(db: Database, subjects: Sequence[str]) -> list[str]:
    """Those of `subjects` (what waits wait on: v1 job ids, /v2 task and job ids) that have
    ended: a job finished or failed, a task or a /v2 job finished or in error."""
    ids = tuple(subjects)
    rows = await db.fetch_all(
        # marks() only: no value is ever part of the SQL text.
        f"""SELECT id FROM jobs WHERE id IN ({marks(ids)}) AND status IN ('finished', 'failed')
        UNION ALL
        SELECT id FROM tasks WHERE id IN ({marks(ids)}) AND status IN ('finished', 'error')
        UNION ALL
        SELECT job_id FROM task_job_status
        WHERE job_id IN ({marks(ids)}) AND status IN ('finished', 'error')""",  # noqa: S608
        ids * 3,
    )
    return [row[0] for row in rows]
