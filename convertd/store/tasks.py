"""Jobs of tasks (the /v2 API): their rows and every change of a task's state.

A task is `waiting` until the tasks it depends on have finished, then `processing`, then
`finished` or `error`. Each change is one statement that checks the state it expects, so a task
is never started twice and a late writer (a task cancelled under it) changes nothing. A job has no
state of its own: it is read off its tasks (task_jobs.py).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import uuid
from typing import Any

from convertd import clock
from convertd.store.db import Conn, Database, Row, dialect_of, from_row, marks


class Status(enum.StrEnum):
    WAITING = "waiting"
    PROCESSING = "processing"
    FINISHED = "finished"
    ERROR = "error"


ENDED = (Status.FINISHED, Status.ERROR)

# A task with the progress of the queued job that runs it (convert tasks).
_SELECT_TASK = """SELECT t.*, c.progress AS conversion_progress, c.filetype AS conversion_filetype,
    c.input_format AS conversion_input_format
    FROM tasks t LEFT JOIN jobs c ON c.id = t.conversion_id"""


def new_id() -> str:
    return str(uuid.uuid4())


@dataclasses.dataclass(frozen=True)
class Task:
    id: str
    job_id: str | None
    key_id: int | None
    name: str
    operation: str
    payload: dict[str, Any]
    depends_on: list[str]
    ignore_error: bool
    status: Status
    code: str | None
    message: str | None
    conversion_id: str | None
    result: dict[str, Any] | None
    attempts: int
    retry_of: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    percent: int
    filetype: str | None  # of the converter running (or that ran) a convert task
    input_format: str | None  # what that converter read the input as

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    @property
    def files(self) -> list[dict[str, Any]]:
        return list((self.result or {}).get("files", []))

    @classmethod
    def from_row(cls, row: Row) -> Task:
        status = Status(row["status"])
        if status is Status.FINISHED:
            percent = 100
        elif status is Status.PROCESSING:
            percent = row["conversion_progress"] or 0
        else:
            percent = 0
        return from_row(
            cls,
            row,
            payload=json.loads(row["payload"]),
            depends_on=json.loads(row["depends_on"]),
            ignore_error=bool(row["ignore_error"]),
            status=status,
            result=json.loads(row["result"]) if row["result"] else None,
            percent=percent,
            filetype=row["conversion_filetype"],
            input_format=row["conversion_input_format"],
        )


@dataclasses.dataclass(frozen=True)
class NewTask:
    """A task about to be inserted; import/base64 and import/raw arrive already finished."""

    id: str
    name: str
    operation: str
    payload: dict[str, Any]
    depends_on: list[str]
    ignore_error: bool = False
    result: dict[str, Any] | None = None
    retry_of: str | None = None


def insert_task(conn: Conn, task: NewTask, *, key_id: int | None, job_id: str | None) -> None:
    insert_waiting(conn, task, key_id=key_id, job_id=job_id)
    finish_inline(conn, task)


def insert_waiting(conn: Conn, task: NewTask, *, key_id: int | None, job_id: str | None) -> None:
    conn.execute(
        """INSERT INTO tasks (id, job_id, key_id, name, operation, payload, depends_on,
                              ignore_error, retry_of, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (
            task.id,
            job_id,
            key_id,
            task.name,
            task.operation,
            json.dumps(task.payload),
            json.dumps(task.depends_on),
            int(task.ignore_error),
            task.retry_of,
            clock.now(),
        ),
    )


def finish_inline(conn: Conn, task: NewTask) -> None:
    """A task done as it was made (import/base64, import/raw) is finished once it and its job's
    other tasks exist, so the events its end records (migration 4) see the whole job."""
    if task.result is not None:
        now = clock.now()
        conn.execute(
            """UPDATE tasks SET status = 'finished', result = ?, started_at = ?, ended_at = ?
               WHERE id = ?""",
            (json.dumps(task.result), now, now, task.id),
        )


async def get(db: Database, task_id: str) -> Task | None:
    row = await db.fetch_one(f"{_SELECT_TASK} WHERE t.id = ?", (task_id,))
    return Task.from_row(row) if row else None


async def get_many(db: Database, task_ids: list[str]) -> list[Task]:
    rows = await db.fetch_all(f"{_SELECT_TASK} WHERE t.id IN ({marks(task_ids)})", task_ids)
    return [Task.from_row(row) for row in rows]


async def of_job(db: Database, job_id: str) -> list[Task]:
    rows = await db.fetch_all(
        f"{_SELECT_TASK} WHERE t.job_id = ? ORDER BY t.created_at, t.{db.dialect.insertion_order}",
        (job_id,),
    )
    return [Task.from_row(row) for row in rows]


async def count(db: Database, sql: str, args: tuple[Any, ...]) -> int:
    row = await db.fetch_one(sql, args)
    return int(row[0]) if row else 0


async def list_tasks(
    db: Database,
    key_id: int,
    *,
    job_id: str | None,
    status: str | None,
    operation: str | None,
    limit: int,
    offset: int,
) -> tuple[list[Task], int]:
    """One page of a key's tasks, newest first, and how many there are in all."""
    where = """WHERE t.key_id = ? AND (CAST(? AS TEXT) IS NULL OR t.job_id = ?)
               AND (CAST(? AS TEXT) IS NULL OR t.status = ?)
               AND (CAST(? AS TEXT) IS NULL OR t.operation = ?)"""
    args = (key_id, job_id, job_id, status, status, operation, operation)
    total = await count(db, f"SELECT COUNT(*) FROM tasks t {where}", args)
    rows = await db.fetch_all(
        f"{_SELECT_TASK} {where} ORDER BY t.created_at DESC, t.{db.dialect.insertion_order} DESC "
        "LIMIT ? OFFSET ?",
        (*args, limit, offset),
    )
    return [Task.from_row(row) for row in rows], total


async def ready(db: Database) -> list[Task]:
    """Waiting tasks whose inputs have all finished, or failed with `ignore_error` (they then
    bring no files); import/upload waits for its upload instead."""
    rows = await db.fetch_all(
        f"""{_SELECT_TASK} WHERE t.status = 'waiting' AND t.operation != 'import/upload'
            AND NOT EXISTS (SELECT 1 FROM {db.dialect.json_values("t.depends_on", "d")}
                            LEFT JOIN tasks u ON u.id = d.value
                            WHERE u.id IS NULL OR (u.status != 'finished'
                            AND NOT (u.status = 'error' AND u.ignore_error = 1)))
            ORDER BY t.created_at, t.{db.dialect.insertion_order}"""
    )
    return [Task.from_row(row) for row in rows]


def fail_orphans(conn: Conn, job_id: str | None = None) -> list[str]:
    """Inside the caller's transaction: waiting tasks (of this job, or of any) an input of which
    failed (without `ignore_error`), was cancelled or deleted, fail too (and theirs after them);
    returns their ids."""
    failed: list[str] = []
    inputs = dialect_of(conn).json_values("tasks.depends_on", "d")
    while True:
        rows = conn.execute(
            f"""UPDATE tasks SET status = 'error', code = 'INPUT_TASK_FAILED', ended_at = ?,
                      message = 'An input task failed, was cancelled or was deleted'
               WHERE status = 'waiting' AND (CAST(? AS TEXT) IS NULL OR job_id = ?) AND EXISTS (
                   SELECT 1 FROM {inputs} LEFT JOIN tasks u ON u.id = d.value
                   WHERE u.id IS NULL OR (u.status = 'error' AND u.ignore_error = 0))
               RETURNING id""",
            (clock.now(), job_id, job_id),
        ).fetchall()
        if not rows:
            return failed
        failed.extend(row[0] for row in rows)


def start(conn: Conn, task_id: str, conversion_id: str | None = None) -> bool:
    """waiting -> processing, inside the caller's transaction; False if it was not waiting."""
    return (
        conn.execute(
            """UPDATE tasks SET status = 'processing', started_at = ?, attempts = attempts + 1,
                      conversion_id = ?
               WHERE id = ? AND status = 'waiting'""",
            (clock.now(), conversion_id, task_id),
        ).rowcount
        == 1
    )


def restart(conn: Conn, task_id: str) -> bool:
    """A processing task whose process died runs again: one more attempt."""
    return (
        conn.execute(
            "UPDATE tasks SET attempts = attempts + 1 WHERE id = ? AND status = 'processing'",
            (task_id,),
        ).rowcount
        == 1
    )


def finish(
    conn: Conn,
    task_id: str,
    files: list[dict[str, Any]],
    *,
    waiting: bool = False,
    extra: dict[str, Any] | None = None,
) -> bool:
    """processing (or, for an upload or an export, waiting) -> finished with these files (and
    `extra` beside them in the result)."""
    expected = "waiting" if waiting else "processing"
    now = clock.now()
    return (
        conn.execute(
            """UPDATE tasks SET status = 'finished', result = ?, ended_at = ?,
                      started_at = COALESCE(started_at, ?), code = NULL, message = NULL
               WHERE id = ? AND status = ?""",
            (json.dumps({**(extra or {}), "files": files}), now, now, task_id, expected),
        ).rowcount
        == 1
    )


def fail(conn: Conn, task_id: str, code: str, message: str) -> list[str]:
    """waiting or processing -> error, inside the caller's transaction, and with it the waiting
    tasks of its job that depend on it (transitively, unless it may fail): no reader ever sees
    the job in error beside a task still waiting on the failed one (the job's status is read off
    its tasks, task_job_status). Returns the ids of the tasks that ended, this one first; [] if
    it had already ended."""
    ended = _end_in_error(conn, task_id, code, message)
    if not ended:
        return []
    # A task made on its own (no job) leaves its dependents to the engine's step.
    job_id = ended[0][0]
    return [task_id, *(fail_orphans(conn, str(job_id)) if job_id is not None else [])]


def _end_in_error(conn: Conn, task_id: str, code: str, message: str) -> list[Any]:
    """waiting or processing -> error; the task's row (its job id), none if it had ended."""
    return conn.execute(
        """UPDATE tasks SET status = 'error', code = ?, message = ?, ended_at = ?
           WHERE id = ? AND status IN ('waiting', 'processing') RETURNING job_id""",
        (code, message, clock.now(), task_id),
    ).fetchall()


def cancel(conn: Conn, task_ids: list[str]) -> list[Task]:
    """Cancel these tasks and every task that has not ended and depends on them, directly or
    through other such tasks (a finished task in between keeps its files, so what depends on it
    goes on). Returns the tasks as they were before (the caller stops those that ran)."""
    dialect = dialect_of(conn)
    rows = conn.execute(
        f"""WITH RECURSIVE doomed(id) AS (
                SELECT value FROM {dialect.json_values("?", "v")} UNION
                SELECT t.id FROM tasks t, doomed d
                WHERE t.status IN ('waiting', 'processing')
                AND EXISTS (SELECT 1 FROM {dialect.json_values("t.depends_on", "x")}
                            WHERE x.value = d.id)
            )
            {_SELECT_TASK} WHERE t.id IN (SELECT id FROM doomed)
            AND t.status IN ('waiting', 'processing')""",
        (json.dumps(task_ids),),
    ).fetchall()
    doomed = [Task.from_row(row) for row in rows]
    for task in doomed:  # each one is CANCELLED, not failed for its input
        _end_in_error(conn, task.id, "CANCELLED", "The task was cancelled")
    return doomed


async def conversions_ended(db: Database) -> list[Row]:
    """Convert tasks still processing whose queued job has ended."""
    return await db.fetch_all(
        """SELECT t.id AS task_id, c.id AS job_id, c.status, c.error, c.result_name
           FROM tasks t JOIN jobs c ON c.id = t.conversion_id
           WHERE t.status = 'processing' AND c.status IN ('finished', 'failed')"""
    )


async def running_here(db: Database) -> list[Task]:
    """Tasks left processing that the task engine itself runs (not by the queue)."""
    rows = await db.fetch_all(
        f"{_SELECT_TASK} WHERE t.status = 'processing' AND t.conversion_id IS NULL"
    )
    return [Task.from_row(row) for row in rows]


def forget_conversions(conn: Conn, task_ids: list[str]) -> list[tuple[str, str]]:
    """Inside the caller's transaction: the queued jobs that ran these tasks' conversions, and
    their uploads, expire now; returns their (job id, upload path) for their files to go."""
    rows = conn.execute(
        f"""SELECT c.id, u.file_path FROM tasks t JOIN jobs c ON c.id = t.conversion_id
           JOIN uploads u ON u.id = c.upload_id
           WHERE t.id IN ({marks(task_ids)})""",
        task_ids,
    ).fetchall()
    for job_id, file_path in rows:
        conn.execute("UPDATE jobs SET expired = 1 WHERE id = ?", (job_id,))
        conn.execute("UPDATE uploads SET expired = 1 WHERE file_path = ?", (file_path,))
    return [(row[0], row[1]) for row in rows]


def fail_unfinished_of_key(conn: Conn, key_id: int, message: str) -> None:
    """Inside the caller's transaction: the key's waiting and processing tasks are cancelled
    (their conversions are failed by jobs.fail_unfinished_of_key)."""
    conn.execute(
        """UPDATE tasks SET status = 'error', code = 'CANCELLED', message = ?, ended_at = ?
           WHERE key_id = ? AND status IN ('waiting', 'processing')""",
        (message, clock.now(), key_id),
    )


async def not_processing(db: Database, task_ids: list[str]) -> list[str]:
    """Which of these tasks are no longer processing (cancelled, deleted, ended)."""
    rows = await db.fetch_all(
        f"SELECT id FROM tasks WHERE id IN ({marks(task_ids)}) AND status = 'processing'",
        task_ids,
    )
    still = {row[0] for row in rows}
    return [task_id for task_id in task_ids if task_id not in still]


async def existing(db: Database, task_ids: list[str]) -> set[str]:
    """Which of these ids are tasks."""
    rows = await db.fetch_all(
        f"SELECT id FROM tasks WHERE id IN ({marks(task_ids)})",
        task_ids,
    )
    return {row[0] for row in rows}


def delete_task(conn: Conn, task_id: str) -> None:
    conn.execute("DELETE FROM tasks WHERE id = ?", (task_id,))


async def of_conversion(db: Database, conversion_id: str) -> Task | None:
    """The convert task a queued job runs for, if it runs for one."""
    row = await db.fetch_one(f"{_SELECT_TASK} WHERE t.conversion_id = ?", (conversion_id,))
    return Task.from_row(row) if row else None
