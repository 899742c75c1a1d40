"""The queue never loses a job: crash recovery, bounded attempts, graceful stop, single claim."""

from __future__ import annotations

import asyncio
import io
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import requests
from PIL import Image

from convertd.store import jobs, uploads
from convertd.store.db import Database
from convertd.store.sqlite import SqliteDatabase
from tests.conftest import Daemon

HASH_TXT = jobs.Conversion("hash", "txt", "md5", {})

SLOW = {"quality": 100}


def slow_image() -> bytes:
    # Noise does not compress: a lossless-quality WebP of it takes seconds to encode.
    buf = io.BytesIO()
    Image.effect_noise((4000, 4000), 40).convert("RGB").save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def wait_for_status(d: Daemon, key: str, job_id: str, wanted: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = requests.get(f"{d.base}/status/{job_id}", headers={"X-API-Key": key}, timeout=5)
        if resp.json()["status"] == wanted:
            return
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never reached {wanted}")


def db_row(data_dir: Path, job_id: str) -> sqlite3.Row:
    conn = sqlite3.connect(data_dir / "convertd.db")
    conn.row_factory = sqlite3.Row
    try:
        row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    finally:
        conn.close()
    assert row is not None
    return row


def test_job_of_a_killed_daemon_runs_again_after_restart(make_daemon: Any) -> None:
    d = make_daemon(workers=1)
    key = d.create_key("crash", "--plan", "pro")
    job = d.convert(key, slow_image(), "noise.png", "image", "webp", SLOW).json()
    wait_for_status(d, key, job["job_id"], "processing")
    d.kill()
    row = db_row(d.data_dir, job["job_id"])
    assert row["status"] == "processing" and row["attempts"] == 1
    # Nothing half-written is downloadable.
    assert not (d.data_dir / "results" / job["job_id"]).exists()

    again = make_daemon(workers=1, data_dir=d.data_dir)
    assert "recovered 1 interrupted job" in again.log()
    status = again.wait(key, job["job_id"], timeout=120)
    assert status["status"] == "finished", status
    out = requests.get(status["download_url"], headers={"X-API-Key": key}, timeout=30)
    with Image.open(io.BytesIO(out.content)) as im:
        assert im.format == "WEBP" and im.size == (4000, 4000)
    assert db_row(d.data_dir, job["job_id"])["attempts"] == 2


def test_attempts_are_bounded_then_the_job_fails_with_a_reason(make_daemon: Any) -> None:
    d = make_daemon(workers=0)
    key = d.create_key("bounded", "--plan", "pro")
    doomed = d.convert(key, b"abc", "a.txt", "hash", "md5").json()["job_id"]
    saved = d.convert(key, b"abc", "b.txt", "hash", "md5").json()["job_id"]
    d.stop()
    # Provoke what a process dying mid-job leaves behind: rows stuck in 'processing'.
    conn = sqlite3.connect(d.data_dir / "convertd.db")
    with conn:
        conn.execute(
            "UPDATE jobs SET status='processing', attempts=3, owner='dead' WHERE id=?", (doomed,)
        )
        conn.execute(
            "UPDATE jobs SET status='processing', attempts=1, owner='dead' WHERE id=?", (saved,)
        )
    conn.close()
    again = make_daemon(workers=1, data_dir=d.data_dir)
    failed = again.wait(key, doomed)
    assert failed["status"] == "failed" and "3 attempts" in failed["error"]
    assert again.wait(key, saved)["status"] == "finished"


def test_sigterm_lets_a_running_job_finish(make_daemon: Any) -> None:
    d = make_daemon(workers=1)
    key = d.create_key("graceful", "--plan", "pro")
    job = d.convert(key, slow_image(), "noise.png", "image", "webp", SLOW).json()
    wait_for_status(d, key, job["job_id"], "processing")
    assert d.stop(signal.SIGTERM) == 0
    row = db_row(d.data_dir, job["job_id"])
    assert row["status"] == "finished", dict(row)
    assert "stopped" in d.log()


def test_sigterm_past_the_grace_period_requeues(make_daemon: Any) -> None:
    d = make_daemon(env={"CONVERTD_SHUTDOWN_GRACE_SECONDS": "0.2"}, workers=1)
    key = d.create_key("impatient", "--plan", "pro")
    job = d.convert(key, slow_image(), "noise.png", "image", "webp", SLOW).json()
    queued = d.convert(key, b"later", "later.txt", "hash", "sha1").json()
    wait_for_status(d, key, job["job_id"], "processing")
    assert d.stop(signal.SIGTERM) == 0
    row = db_row(d.data_dir, job["job_id"])
    assert row["status"] == "pending" and row["attempts"] == 0, dict(row)
    assert db_row(d.data_dir, queued["job_id"])["status"] == "pending"
    again = make_daemon(workers=2, data_dir=d.data_dir)
    assert again.wait(key, job["job_id"], timeout=120)["status"] == "finished"
    assert again.wait(key, queued["job_id"])["status"] == "finished"


def test_two_claimers_never_take_the_same_job(tmp_path: Path) -> None:
    # Two connections stand for two processes sharing one database file.
    async def scenario() -> list[str]:
        first = await SqliteDatabase.open(tmp_path / "q.db")
        second = await SqliteDatabase.open(tmp_path / "q.db")
        (upload,) = await uploads.record_uploads(first, None, [("t/x.txt", "x.txt", 1, "txt")])
        for _ in range(200):
            await jobs.create(first, upload.id, HASH_TXT, key_id=None)

        async def drain(db: Database, owner: str) -> list[str]:
            taken = []
            while (job := await jobs.claim_next(db, owner)) is not None:
                taken.append(job.id)
            return taken

        results = await asyncio.gather(
            *(drain(db, f"w{n}") for n, db in enumerate([first, second, first, second]))
        )
        await first.close()
        await second.close()
        return [job_id for taken in results for job_id in taken]

    claimed = asyncio.run(scenario())
    assert len(claimed) == 200 and len(set(claimed)) == 200


def test_late_writer_cannot_change_a_requeued_job(tmp_path: Path) -> None:
    async def scenario() -> tuple[bool, str]:
        db = await SqliteDatabase.open(tmp_path / "q.db")
        (upload,) = await uploads.record_uploads(db, None, [("t/x.txt", "x.txt", 1, "txt")])
        job = await jobs.create(db, upload.id, HASH_TXT, key_id=None)
        await jobs.claim_next(db, "old")
        await jobs.recover_orphans(db, max_attempts=3)
        await jobs.claim_next(db, "new")
        stale = await jobs.finish(db, job.id, "old", "x.md5", 1, 10)
        current = await jobs.get(db, job.id)
        await db.close()
        assert current is not None
        return stale, current.status.value

    stale, status = asyncio.run(scenario())
    assert stale is False and status == "processing"


def test_database_from_a_newer_convertd_is_refused(tmp_path: Path) -> None:
    from convertd.store.migrations import SCHEMA_VERSION
    from tests.daemon import run_cli

    data = tmp_path / "data"
    run_cli(data, "plans", "list")
    conn = sqlite3.connect(data / "convertd.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    proc = run_cli(data, "keys", "list", check=False)
    assert proc.returncode == 2 and "newer" not in proc.stdout
    assert "upgrade convertd" in proc.stderr
