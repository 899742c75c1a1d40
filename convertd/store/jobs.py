"""The job queue: create, claim, progress, finish, fail, requeue, recover, expire.

Every state change is one committed transaction that also checks the state it expects, so a job
is never run by two workers at once and a late writer (a worker whose job was requeued under it)
changes nothing.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import uuid
from typing import Any

from convertd import clock, logs
from convertd.store import uploads
from convertd.store.db import Conn, Database, Row, from_row, marks

logger = logging.getLogger(__name__)


class Status(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    FINISHED = "finished"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class Job:
    id: str
    key_id: int | None
    upload_id: int
    filetype: str
    input_format: str
    output_format: str
    options: dict[str, Any]
    status: Status
    progress: int | None
    error: str | None
    attempts: int
    result_name: str | None
    result_count: int | None
    result_size: int | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    expired: bool
    source: str  # 'api', 'drop' or 'v2' (a /v2 convert task)
    timeout_seconds: float | None  # a /v2 task's own timeout, when tighter than the limit
    node: str | None = None  # the node whose worker runs it (or last ran it)

    @classmethod
    def from_row(cls, row: Row) -> Job:
        return from_row(
            cls,
            row,
            options=json.loads(row["options"]),
            status=Status(row["status"]),
            expired=bool(row["expired"]),
        )


@dataclasses.dataclass(frozen=True)
class Conversion:
    """What a job makes: from which filetype and input format, to what, with which (validated)
    options."""

    filetype: str
    input_format: str
    output_format: str
    options: dict[str, Any]
    timeout_seconds: float | None = None


def insert(
    conn: Conn,
    upload_id: int,
    conversion: Conversion,
    *,
    key_id: int | None,
    source: str = "api",
    webhook_url: str | None = None,
) -> Row:
    """Insert a pending job inside the caller's transaction; returns its row. A `webhook_url`
    hears of its end (the trigger v1_job_ended)."""
    c = conversion
    row: Row = conn.execute(
        """INSERT INTO jobs (id, key_id, upload_id, filetype, input_format, output_format,
                             options, created_at, source, timeout_seconds, webhook_url)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *""",
        (
            str(uuid.uuid4()),
            key_id,
            upload_id,
            c.filetype,
            c.input_format,
            c.output_format,
            json.dumps(c.options),
            clock.now(),
            source,
            c.timeout_seconds,
            webhook_url,
        ),
    ).fetchone()
    logger.info(
        "job %s pending: %s %s -> %s (%s)",
        row["id"],
        c.filetype,
        c.input_format,
        c.output_format,
        source,
        extra=logs.job(row["id"]),
    )
    return row


async def create(
    db: Database,
    upload_id: int,
    conversion: Conversion,
    *,
    key_id: int | None,
    webhook_url: str | None = None,
) -> Job:
    """Queue a job for an API client, in its own transaction."""
    row = await db.write(
        lambda conn: insert(conn, upload_id, conversion, key_id=key_id, webhook_url=webhook_url)
    )
    return Job.from_row(row)


async def create_with_upload(
    db: Database,
    received: tuple[str, str, int, str],
    conversion: Conversion,
    *,
    key_id: int | None,
    webhook_url: str | None = None,
) -> Job:
    """Record a file a request sent (file_path, file_name, size, extension) as the key's
    upload and queue its job, in one transaction: one commit per small job instead of two."""

    def both(conn: Conn) -> Row:
        upload_id = uploads.insert(conn, key_id, *received, clock.now())
        return insert(conn, upload_id, conversion, key_id=key_id, webhook_url=webhook_url)

    return Job.from_row(await db.write(both))


async def get(db: Database, job_id: str) -> Job | None:
    row = await db.fetch_one("SELECT * FROM jobs WHERE id = ?", (job_id,))
    return Job.from_row(row) if row else None


async def get_with_live_key(db: Database, job_id: str) -> Job | None:
    """The job, if its key is live (not revoked): what a signed download link opens. One read
    for both (a download was two)."""
    row = await db.fetch_one(
        """SELECT j.* FROM jobs j JOIN api_keys k ON k.id = j.key_id
           WHERE j.id = ? AND k.revoked_at IS NULL""",
        (job_id,),
    )
    return Job.from_row(row) if row else None


def _claim(conn: Conn, db: Database, owner: str, node: str | None) -> Row | None:
    order = db.dialect.insertion_order
    row: Row | None = conn.execute(
        f"""UPDATE jobs SET status = 'processing', owner = ?, node = ?,
                          attempts = attempts + 1, started_at = ?, progress = NULL, error = NULL
           WHERE id = (SELECT id FROM jobs WHERE status = 'pending'
                       ORDER BY created_at, {order} LIMIT 1 {db.dialect.skip_locked})
           RETURNING *""",  # noqa: S608 (the dialect's own words)
        (owner, node, clock.now()),
    ).fetchone()
    return row


def _claimed(row: Row, owner: str) -> Job:
    job = Job.from_row(row)
    logger.info(
        "job %s processing (attempt %d, %s)", job.id, job.attempts, owner, extra=logs.job(job.id)
    )
    return job


async def claim_next(db: Database, owner: str, node: str | None = None) -> Job | None:
    """Take the oldest pending job for `owner`, in one statement: two claimers never share one.
    On PostgreSQL, claimers on other nodes skip the row this one has locked rather than wait
    for it (and then find it taken): each takes the next."""
    row = await db.write(lambda conn: _claim(conn, db, owner, node), contended=True)
    return None if row is None else _claimed(row, owner)


async def claim_with_input(
    db: Database, owner: str, node: str | None = None
) -> tuple[Job, uploads.Upload | None] | None:
    """claim_next, with the record of the job's input file read in the same transaction: what
    a worker needs to start, in one trip to the database instead of two."""

    def claim(conn: Conn) -> tuple[Row, Row | None] | None:
        row = _claim(conn, db, owner, node)
        if row is None:
            return None
        found: Row | None = conn.execute(
            "SELECT * FROM uploads WHERE id = ?", (row["upload_id"],)
        ).fetchone()
        return row, found

    claimed = await db.write(claim, contended=True)
    if claimed is None:
        return None
    row, found = claimed
    return _claimed(row, owner), uploads.Upload.from_row(found) if found else None


async def set_progress(db: Database, job_id: str, owner: str, percent: int) -> None:
    await db.write(
        lambda conn: conn.execute(
            "UPDATE jobs SET progress = ? WHERE id = ? AND owner = ? AND status = 'processing'",
            (max(0, min(100, percent)), job_id, owner),
        )
    )


async def finish(
    db: Database, job_id: str, owner: str, result_name: str, result_count: int, result_size: int
) -> bool:
    done = await db.write(
        lambda conn: (
            conn.execute(
                """UPDATE jobs SET status = 'finished', progress = 100, finished_at = ?,
                              result_name = ?, result_count = ?, result_size = ?, owner = NULL
               WHERE id = ? AND owner = ? AND status = 'processing'""",
                (clock.now(), result_name, result_count, result_size, job_id, owner),
            ).rowcount
            == 1
        )
    )
    if done:
        logger.info(
            "job %s finished: %s (%d bytes)",
            job_id,
            result_name,
            result_size,
            extra=logs.job(job_id),
        )
    return done


async def fail(db: Database, job_id: str, owner: str, error: str) -> bool:
    done = await db.write(
        lambda conn: (
            conn.execute(
                """UPDATE jobs SET status = 'failed', error = ?, finished_at = ?, owner = NULL
               WHERE id = ? AND owner = ? AND status = 'processing'""",
                (error, clock.now(), job_id, owner),
            ).rowcount
            == 1
        )
    )
    if done:
        logger.info("job %s failed: %s", job_id, error, extra=logs.job(job_id))
    return done


async def requeue(db: Database, job_id: str, owner: str) -> None:
    """Give back a job this process had to abandon (shutdown); the attempt does not count."""
    requeued = await db.write(
        lambda conn: (
            conn.execute(
                """UPDATE jobs SET status = 'pending', owner = NULL, progress = NULL,
                              attempts = MAX(attempts - 1, 0)
               WHERE id = ? AND owner = ? AND status = 'processing'""",
                (job_id, owner),
            ).rowcount
        )
    )
    if requeued:
        logger.info("job %s pending: requeued at shutdown", job_id, extra=logs.job(job_id))


async def recover_orphans(db: Database, max_attempts: int) -> tuple[int, int]:
    """At start-up: jobs left 'processing' by a process that died run again, up to
    `max_attempts` attempts in all; past that they fail with the reason. Returns (requeued, failed).
    """
    reason = (
        f"Gave up after {max_attempts} attempts: convertd stopped unexpectedly while running this "
        "job each time."
    )

    def recover(conn: Conn) -> tuple[list[str], list[str]]:
        failed = conn.execute(
            """UPDATE jobs SET status = 'failed', error = ?, finished_at = ?, owner = NULL
               WHERE status = 'processing' AND attempts >= ? RETURNING id""",
            (reason, clock.now(), max_attempts),
        ).fetchall()
        requeued = conn.execute(
            """UPDATE jobs SET status = 'pending', owner = NULL, progress = NULL
               WHERE status = 'processing' RETURNING id""",
        ).fetchall()
        return [row[0] for row in requeued], [row[0] for row in failed]

    requeued, failed = await db.write(recover)
    for job_id in requeued:
        logger.info(
            "job %s pending: recovered after an unclean stop", job_id, extra=logs.job(job_id)
        )
    for job_id in failed:
        logger.info("job %s failed: %s", job_id, reason, extra=logs.job(job_id))
    return len(requeued), len(failed)


def fail_unfinished_of_key(conn: Conn, key_id: int, error: str) -> None:
    """Inside the caller's transaction: the key's queued and running jobs fail with `error`
    (a worker running one stops it: no_longer_running)."""
    conn.execute(
        """UPDATE jobs SET status = 'failed', error = ?, finished_at = ?, owner = NULL
           WHERE key_id = ? AND status IN ('pending', 'processing')""",
        (error, clock.now(), key_id),
    )


def cancel(conn: Conn, job_ids: list[str], error: str) -> list[tuple[str, str]]:
    """Inside the caller's transaction: these jobs, if queued or running, fail with `error`
    (a worker running one stops it: no_longer_running). The filetype and output format of
    each that was queued (no worker counts its end)."""
    queued = conn.execute(
        f"SELECT filetype, output_format FROM jobs "  # noqa: S608 (placeholders only)
        f"WHERE id IN ({marks(job_ids)}) AND status = 'pending'",
        job_ids,
    ).fetchall()
    conn.execute(
        f"""UPDATE jobs SET status = 'failed', error = ?, finished_at = ?, owner = NULL
           WHERE id IN ({marks(job_ids)}) AND status IN ('pending', 'processing')""",  # noqa: S608
        (error, clock.now(), *job_ids),
    )
    return [(row[0], row[1]) for row in queued]


async def held_by(db: Database, job_id: str, owner: str) -> bool:
    row = await db.fetch_one(
        "SELECT 1 FROM jobs WHERE id = ? AND owner = ? AND status = 'processing'", (job_id, owner)
    )
    return row is not None


async def no_longer_running(db: Database, held: dict[str, str]) -> dict[str, str]:
    """Which of these jobs (id: the owner running it here) the database no longer has as run
    by that owner, and why: cancelled from outside (a key revoked by the admin CLI, a DELETE on
    another node), or given to another node while this one was not seen (stopped, cut off)."""
    rows = await db.fetch_all(
        f"SELECT id, status, owner FROM jobs WHERE id IN ({marks(held)})",  # noqa: S608
        list(held),
    )
    found = {row[0]: (row[1], row[2]) for row in rows}
    gone = {}
    for job_id, owner in held.items():
        status, holder = found.get(job_id, ("failed", None))  # deleted: as cancelled
        if status == "processing" and holder == owner:
            continue
        # Failed (or gone) while here: cancelled. Queued again, run or ended elsewhere: this
        # node was not seen for a while, and the job was given to another.
        gone[job_id] = "cancelled" if status == "failed" else "given to another node"
    return gone


async def expire_older_than(db: Database, cutoff: float) -> list[str]:
    """Mark finished and failed jobs that ended before `cutoff` expired; returns their ids."""
    rows = await db.write(
        lambda conn: conn.execute(
            """UPDATE jobs SET expired = 1
               WHERE expired = 0 AND status IN ('finished', 'failed') AND finished_at < ?
               RETURNING id""",
            (cutoff,),
        ).fetchall()
    )
    expired = [row[0] for row in rows]
    for job_id in expired:
        logger.info(
            "job %s expired: its files were deleted after the retention period",
            job_id,
            extra=logs.job(job_id),
        )
    return expired
