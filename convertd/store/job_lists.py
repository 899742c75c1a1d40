"""Jobs read several at a time: the most recent (`convertd jobs list`), and which of the jobs
this daemon's waits are on have ended (events/outside.py)."""

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


async def ended_among(db: Database, job_ids: Sequence[str]) -> list[str]:
    """Those of `job_ids` that are jobs and have ended (finished or failed)."""
    rows = await db.fetch_all(
        f"SELECT id FROM jobs WHERE id IN ({marks(job_ids)}) "  # noqa: S608 (marks only)
        "AND status IN ('finished', 'failed')",
        tuple(job_ids),
    )
    return [row["id"] for row in rows]
