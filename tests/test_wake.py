"""A `?wait=` hears of every end of its job (issue 19): a job whose end its worker is recording
is never taken for one cancelled (a job stopped by a revoke: tests/test_outside_ends.py).

The lost wake-up these guard against: the worker pool's check for jobs cancelled from outside
(`_stop_cancelled`, once a second) read a job's row just after its worker had committed the
job's end and before the worker heard back; it took the ended job for one no longer running
here and stopped the worker, which then never announced the end. The `?wait=` ran its full
time, the job was counted cancelled and its "finished" log line was lost. Rare with the check
once a second (none in 20,000 jobs here; the likely cause of the pipeline bench's one 33 s
run); with the check every 2 ms, 41 of 4,000 waits ran their full 5 s, and none with the fix."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from convertd.config import Config
from convertd.converters.base import Limits
from convertd.converters.hash import HashConverter
from convertd.converters.registry import Registry
from convertd.converters.run import Runner
from convertd.files import DataDir
from convertd.metrics import Metrics
from convertd.store import jobs, uploads
from convertd.store.db import Conn
from convertd.store.sqlite import SqliteDatabase
from convertd.worker import WorkerPool

T = TypeVar("T")
HASH = jobs.Conversion("hash", "txt", "sha256", {})


class CheckAfterCommit(SqliteDatabase):
    """The real database, with one timing forced: after each job's end is committed, the pool's
    cancellation check runs before the worker hears that its write was done (as it can when the
    check's read lands between the writer thread's commit and its answer reaching the loop)."""

    pool: WorkerPool | None = None

    async def write(self, fn: Callable[[Conn], T], *, contended: bool = False) -> T:
        result = await super().write(fn, contended=contended)
        if self.pool is not None and result is True:  # jobs.finish and jobs.fail say True
            check = asyncio.ensure_future(self.pool._stop_cancelled())
            await asyncio.sleep(0)  # the check reads the committed end, the worker waits
            await check
        return result


def test_a_job_ending_is_not_taken_for_a_cancelled_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> tuple[list[str], list[str], dict[str, str]]:
        config = Config(data_dir=tmp_path, workers=2)
        data = DataDir(tmp_path)
        data.ensure_local()
        data.ensure_storage()
        db = await CheckAfterCommit.open(tmp_path / "convertd.db")
        runner = Runner(Limits.from_config(config)).start()
        pool = WorkerPool(config, db, Registry([HashConverter()]), data, runner, None, Metrics())
        ended: list[str] = []
        pool.on_job_end(lambda job: ended.append(job.id))
        queued = []
        for n in range(6):
            name = f"{n:016x}/a.txt"
            data.upload_file(name).parent.mkdir(parents=True, exist_ok=True)
            data.upload_file(name).write_bytes(b"a")
            (upload,) = await uploads.record_uploads(db, None, [(name, "a.txt", 1, "txt")])
            queued.append((await jobs.create(db, upload.id, HASH, key_id=None)).id)
        db.pool = pool
        pool.start()
        try:
            for _ in range(600):
                rows = await db.fetch_all("SELECT status FROM jobs WHERE status = 'finished'")
                if len(rows) == len(queued) and len(ended) == len(queued):
                    break
                await asyncio.sleep(0.05)
        finally:
            db.pool = None
            await pool.stop()
            runner.stop()
        statuses = {row[0]: row[1] for row in await db.fetch_all("SELECT id, status FROM jobs", ())}
        await db.close()
        return queued, ended, statuses

    caplog.set_level(logging.INFO, logger="convertd.worker")
    queued, ended, statuses = asyncio.run(scenario())
    assert statuses == {job_id: "finished" for job_id in queued}
    # Each end announced once: none lost to a stop, none said twice.
    assert sorted(ended) == sorted(queued)
    assert [r.getMessage() for r in caplog.records if "stopping it" in r.getMessage()] == []
