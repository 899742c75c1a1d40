"""Jobs of tasks (the /v2 API): a job is a name for a group of tasks, with a tag; its status is
read off its tasks (the view task_job_status), never stored, so it cannot disagree with them."""

from __future__ import annotations

import dataclasses
from typing import Any

from convertd import clock
from convertd.store.db import Conn, Database, Row, from_row
from convertd.store.tasks import (
    ENDED,
    NewTask,
    Task,
    count,
    finish_inline,
    insert_waiting,
    new_id,
    of_job,
)

# The status comes from the view task_job_status (store/migrations.py, 4), its one definition.
_SELECT_JOB = "SELECT j.*, s.status FROM task_jobs j JOIN task_job_status s ON s.job_id = j.id"


@dataclasses.dataclass(frozen=True)
class TaskJob:
    id: str
    key_id: int | None
    tag: str | None
    webhook_url: str | None
    status: str
    created_at: float
    tasks: list[Task]

    @property
    def started_at(self) -> float | None:
        started = [t.started_at for t in self.tasks if t.started_at is not None]
        return min(started) if started else None

    @property
    def ended_at(self) -> float | None:
        if self.status not in ENDED:
            return None
        ended = [t.ended_at for t in self.tasks if t.ended_at is not None]
        return max(ended) if ended else self.created_at


def insert_job(
    conn: Conn,
    key_id: int | None,
    tag: str | None,
    webhook_url: str | None,
    new_tasks: list[NewTask],
) -> str:
    """Insert a job and its tasks inside the caller's transaction; returns the job's id."""
    job_id = new_id()
    conn.execute(
        "INSERT INTO task_jobs (id, key_id, tag, webhook_url, created_at) VALUES (?, ?, ?, ?, ?)",
        (job_id, key_id, tag, webhook_url, clock.now()),
    )
    for task in new_tasks:
        insert_waiting(conn, task, key_id=key_id, job_id=job_id)
    for task in new_tasks:
        finish_inline(conn, task)
    return job_id


async def get_job(db: Database, job_id: str) -> TaskJob | None:
    row = await db.fetch_one(f"{_SELECT_JOB} WHERE j.id = ?", (job_id,))
    if row is None:
        return None
    return _job(row, await of_job(db, job_id))


def _job(row: Row, job_tasks: list[Task]) -> TaskJob:
    return from_row(TaskJob, row, tasks=job_tasks)


async def list_jobs(
    db: Database,
    key_id: int,
    *,
    status: str | None,
    tag: str | None,
    limit: int,
    offset: int,
) -> tuple[list[TaskJob], int]:
    """One page of a key's jobs, newest first, and how many there are in all."""
    where = "WHERE j.key_id = ? AND (CAST(? AS TEXT) IS NULL OR j.tag = ?)"
    args: tuple[Any, ...] = (key_id, tag, tag)
    inner = (
        f"SELECT * FROM ({_SELECT_JOB} {where}) AS page "
        "WHERE (CAST(? AS TEXT) IS NULL OR status = ?)"
    )
    args += (status, status)
    total = await count(db, f"SELECT COUNT(*) FROM ({inner}) AS matching", args)
    rows = await db.fetch_all(
        f"{inner} ORDER BY created_at DESC, id LIMIT ? OFFSET ?", (*args, limit, offset)
    )
    return [_job(row, await of_job(db, row["id"])) for row in rows], total


def delete_job(conn: Conn, job_id: str) -> list[str]:
    """Delete a job and its tasks; returns the tasks' ids."""
    ids = [
        row[0]
        for row in conn.execute("SELECT id FROM tasks WHERE job_id = ?", (job_id,)).fetchall()
    ]
    conn.execute("DELETE FROM tasks WHERE job_id = ?", (job_id,))
    conn.execute("DELETE FROM task_jobs WHERE id = ?", (job_id,))
    return ids


async def expired(db: Database, cutoff: float) -> tuple[list[str], list[str]]:
    """(job ids, ids of tasks made on their own) past the retention period: every task ended
    before `cutoff`, or was still waiting (for an upload that never came) since before it."""
    old_enough = """((t.ended_at IS NOT NULL AND t.ended_at < ?)
                     OR (t.status = 'waiting' AND t.created_at < ?))"""
    job_rows = await db.fetch_all(
        f"""SELECT j.id FROM task_jobs j WHERE j.created_at < ? AND NOT EXISTS (
                SELECT 1 FROM tasks t WHERE t.job_id = j.id AND NOT {old_enough})""",
        (cutoff, cutoff, cutoff),
    )
    task_rows = await db.fetch_all(
        f"SELECT t.id FROM tasks t WHERE t.job_id IS NULL AND {old_enough}", (cutoff, cutoff)
    )
    return [row[0] for row in job_rows], [row[0] for row in task_rows]
