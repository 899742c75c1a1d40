"""Jobs read several at a time: the most recent (`convertd jobs list`), which of the jobs
and /v2 tasks this daemon's waits are on have ended (events/outside.py), and those a revoke
failed before they started (the revoked key's event streams, events/stream.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from convertd.store.db import Database, marks
from convertd.store.jobs import Job
from convertd.store.keys import REVOKED


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


# The ends a revoked key's stream announces at most: a key with more queued work gets the rest
# from its status reads (which then answer 401, as the stream's reconnect does).
MAX_REVOKED_ENDS = 1000


@dataclasses.dataclass(frozen=True)
class RevokedBeforeStart:
    jobs: list[str]  # v1 jobs (and the conversions /v2 convert tasks queued)
    tasks: list[str]  # /v2 tasks
    task_jobs: list[str]  # the /v2 jobs the revoke ended


async def revoked_before_start(db: Database, key_id: int, since: float) -> RevokedBeforeStart:
    """The key's jobs and /v2 tasks that its revoke (at `since`) failed while they were still
    queued: no worker ran them, so no one announced their end (a running one's worker does)."""
    jobs = await db.fetch_all(
        """SELECT id FROM jobs WHERE key_id = ? AND status = 'failed' AND error = ?
           AND started_at IS NULL AND finished_at >= ? ORDER BY created_at LIMIT ?""",
        (key_id, REVOKED, since, MAX_REVOKED_ENDS),
    )
    # Every task the revoke cancelled, for the /v2 jobs they belong to (whose end no one
    # announces either); those that had not started, for themselves.
    tasks = await db.fetch_all(
        """SELECT id, job_id, started_at FROM tasks WHERE key_id = ? AND status = 'error'
           AND message = ? AND ended_at >= ? ORDER BY created_at LIMIT ?""",
        (key_id, REVOKED, since, MAX_REVOKED_ENDS),
    )
    return RevokedBeforeStart(
        [row[0] for row in jobs],
        [row[0] for row in tasks if row[2] is None],
        list(dict.fromkeys(row[1] for row in tasks if row[1] is not None)),
    )
