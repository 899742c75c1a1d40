"""What `GET /metrics` reads from the database when it is scraped: the queue, drops in progress,
webhook deliveries. One statement on the reader connection, each count off an index (jobs by
status and age, drops by status, pending deliveries) but the failed deliveries', which the
retention sweep keeps few."""

from __future__ import annotations

from convertd import clock
from convertd.metrics import Readings
from convertd.store.db import Database

_READINGS = """SELECT
    (SELECT COUNT(*) FROM jobs WHERE status = 'pending') AS queued,
    (SELECT MIN(created_at) FROM jobs WHERE status = 'pending') AS oldest,
    (SELECT COUNT(*) FROM jobs WHERE status = 'processing') AS running,
    (SELECT COUNT(*) FROM drops WHERE status IN ('claiming', 'queued', 'delivering')) AS drops,
    (SELECT COUNT(*) FROM deliveries WHERE status = 'pending') AS pending,
    (SELECT COUNT(*) FROM deliveries WHERE status = 'failed') AS failed
"""


async def read(db: Database) -> Readings:
    row = await db.fetch_one(_READINGS)
    assert row is not None  # a SELECT without FROM has its one row
    oldest = row["oldest"]
    return Readings(
        jobs_queued=row["queued"],
        oldest_queued_seconds=max(0.0, clock.now() - oldest) if oldest is not None else 0.0,
        jobs_running=row["running"],
        drops_in_progress=row["drops"],
        webhooks_pending=row["pending"],
        webhooks_failed=row["failed"],
    )
