"""A /v2 job survives kill -9 of the daemon at any moment and finishes exactly once: every
state change is committed, convert tasks run on the queue's crash recovery, and the tasks the
engine runs itself start again from scratch."""

from __future__ import annotations

import io
import sqlite3
import time
import zipfile
from pathlib import Path
from typing import Any

import requests
from PIL import Image

from tests.conftest import Daemon
from tests.test_queue import slow_image


def root(d: Daemon) -> str:
    return d.base.removesuffix("/v1")


def task_status(data_dir: Path, job_id: str) -> dict[str, str]:
    conn = sqlite3.connect(data_dir / "convertd.db")
    try:
        rows = conn.execute("SELECT name, status FROM tasks WHERE job_id = ?", (job_id,)).fetchall()
    finally:
        conn.close()
    return dict(rows)


def conversion(data_dir: Path, job_id: str, name: str) -> tuple[str, int] | None:
    """The queued conversion behind a convert task: its status and attempts, once queued."""
    conn = sqlite3.connect(data_dir / "convertd.db")
    try:
        row = conn.execute(
            "SELECT c.status, c.attempts FROM tasks t JOIN jobs c ON c.id = t.conversion_id "
            "WHERE t.job_id = ? AND t.name = ?",
            (job_id, name),
        ).fetchone()
    finally:
        conn.close()
    return None if row is None else (row[0], row[1])


def wait_until(data_dir: Path, job_id: str, name: str, status: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while task_status(data_dir, job_id).get(name) != status:
        assert time.monotonic() < deadline, f"{name} never reached {status}"
        time.sleep(0.02)


def test_a_five_task_job_survives_kill_9_at_every_stage(make_daemon: Any) -> None:
    d = make_daemon(workers=1)
    key = d.create_key("crash", "--plan", "pro")
    auth = {"Authorization": f"Bearer {key}"}
    created = requests.post(
        f"{root(d)}/v2/jobs",
        headers=auth,
        json={
            "tag": "crash",
            "tasks": {
                "up": {"operation": "import/upload"},
                "webp": {
                    "operation": "convert",
                    "input": "up",
                    "output_format": "webp",
                    "quality": 100,
                },
                "png": {
                    "operation": "convert",
                    "input": "webp",
                    "output_format": "png",
                    "width": 400,
                },
                "pack": {"operation": "archive", "input": ["webp", "png"], "output_format": "zip"},
                "out": {"operation": "export/url", "input": "pack"},
            },
        },
        timeout=30,
    )
    assert created.status_code == 201, created.text
    job = created.json()["data"]
    form = next(t for t in job["tasks"] if t["name"] == "up")["result"]["form"]

    d.kill()  # before the upload: nothing runs yet
    d = make_daemon(workers=1, data_dir=d.data_dir)
    upload = requests.post(
        form["url"].replace(form["url"].split("/v2/")[0], root(d)),
        data=form["parameters"],
        files={"file": ("noise.png", slow_image())},
        timeout=60,
    )
    assert upload.status_code == 201, upload.text

    wait_until(d.data_dir, job["id"], "webp", "processing")
    time.sleep(0.3)
    d.kill()  # in the middle of the first conversion
    assert task_status(d.data_dir, job["id"])["webp"] == "processing"
    d = make_daemon(workers=1, data_dir=d.data_dir)

    wait_until(d.data_dir, job["id"], "png", "processing")
    deadline = time.monotonic() + 120
    while (conversion(d.data_dir, job["id"], "png") or ("",))[0] != "processing":
        assert time.monotonic() < deadline, "the png conversion never started"
        time.sleep(0.02)
    d.kill()  # in the middle of the second, or just after it finished: both must end exactly once
    png_at_kill = conversion(d.data_dir, job["id"], "png")
    assert png_at_kill is not None and png_at_kill[0] in ("processing", "finished"), png_at_kill
    png_attempts = 2 if png_at_kill[0] == "processing" else 1
    d = make_daemon(workers=1, data_dir=d.data_dir)

    done = requests.get(f"{root(d)}/sync/v2/jobs/{job['id']}", headers=auth, timeout=180).json()[
        "data"
    ]
    assert done["status"] == "finished", done
    assert {t["name"]: t["status"] for t in done["tasks"]} == dict.fromkeys(
        ("up", "webp", "png", "pack", "out"), "finished"
    )
    url = next(t for t in done["tasks"] if t["name"] == "out")["result"]["files"][0]["url"]
    archive = requests.get(url, timeout=30)
    assert archive.status_code == 200
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zf:
        assert sorted(zf.namelist()) == ["noise.png", "noise.webp"]
        with Image.open(io.BytesIO(zf.read("noise.webp"))) as im:
            assert im.format == "WEBP" and im.size == (4000, 4000)
        with Image.open(io.BytesIO(zf.read("noise.png"))) as im:
            assert im.format == "PNG" and im.size == (400, 400)

    # Exactly once: one queued conversion per convert task, each finished, none left over.
    conn = sqlite3.connect(d.data_dir / "convertd.db")
    try:
        conversions = conn.execute(
            "SELECT t.name, c.status, c.attempts FROM tasks t JOIN jobs c ON c.id = t.conversion_id "
            "WHERE t.job_id = ? ORDER BY t.name",
            (job["id"],),
        ).fetchall()
        v2_jobs = conn.execute("SELECT COUNT(*) FROM jobs WHERE source = 'v2'").fetchone()[0]
    finally:
        conn.close()
    assert [(name, status) for name, status, _ in conversions] == [
        ("png", "finished"),
        ("webp", "finished"),
    ]
    assert [attempts for _, _, attempts in conversions] == [png_attempts, 2], conversions
    assert v2_jobs == 2
    assert sorted(p.name for p in (d.data_dir / "tasks").iterdir()) == sorted(
        t["id"] for t in done["tasks"]
    )


def test_a_download_cut_by_kill_9_starts_again_and_finishes_once(
    make_daemon: Any, file_server: Any
) -> None:
    env = {"CONVERTD_IMPORT_URL_ALLOW": "127.0.0.1/32"}
    d = make_daemon(env=env)
    key = d.create_key("cut", "--plan", "pro")
    auth = {"Authorization": f"Bearer {key}"}
    source = "pdf/outline-bookmarks.pdf"
    url = file_server.url(f"trickle?path={source}")
    task = requests.post(
        f"{root(d)}/v2/import/url", headers=auth, json={"url": url}, timeout=10
    ).json()["data"]
    deadline = time.monotonic() + 20
    while sum("trickle" in h for h in file_server.hits) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.5)  # part of the file has arrived
    d.kill()
    d = make_daemon(env=env, data_dir=d.data_dir)
    assert "processing again after an unclean stop" in d.log()
    done = requests.get(f"{root(d)}/sync/v2/tasks/{task['id']}", headers=auth, timeout=60).json()
    done = done["data"]
    from tests.conftest import CORPUS

    expected = (CORPUS / source).read_bytes()
    assert done["status"] == "finished", done
    assert done["result"]["files"] == [{"filename": "trickle", "size": len(expected)}]
    got = (d.data_dir / "tasks" / task["id"] / "trickle").read_bytes()
    assert got == expected
    assert sorted(p.name for p in (d.data_dir / "tasks").iterdir()) == [task["id"]]
    conn = sqlite3.connect(d.data_dir / "convertd.db")
    try:
        attempts = conn.execute("SELECT attempts FROM tasks WHERE id = ?", (task["id"],)).fetchone()
    finally:
        conn.close()
    assert attempts == (2,)
