"""Waiting without polling on v1 (`?wait=`), event streams (SSE), and browsers as clients
(CORS)."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from typing import Any

import requests

from tests.conftest import Daemon
from tests.media import make_video
from tests.test_queue import SLOW, slow_image


def test_status_wait_answers_when_the_job_ends(daemon: Daemon, key: str) -> None:
    job = daemon.convert(key, slow_image(), "noise.png", "image", "webp", SLOW).json()
    status = requests.get(
        f"{job['status_url']}?wait=120", headers={"X-API-Key": key}, timeout=130
    ).json()
    assert status["status"] == "finished", status
    assert status["download_url"] == job["download_url"]
    for bad in ("abc", "-1", "301", "nan"):
        resp = requests.get(
            f"{job['status_url']}?wait={bad}", headers={"X-API-Key": key}, timeout=10
        )
        assert resp.status_code == 400 and "wait" in resp.json()["message"], bad


def test_status_wait_gives_the_status_as_it_stands_at_the_end(make_daemon: Any) -> None:
    d = make_daemon(workers=0)  # queue only: the job never starts
    key = d.create_key("waiting", "--plan", "pro")
    job = d.convert(key, b"abc", "a.txt", "hash", "md5").json()
    status = requests.get(f"{job['status_url']}?wait=0.5", headers={"X-API-Key": key}, timeout=10)
    assert status.status_code == 200 and status.json()["status"] == "pending"


def test_cors_preflight_and_headers(daemon: Daemon, key: str) -> None:
    origin = {"Origin": "https://app.example"}
    pre = requests.options(
        f"{daemon.base}/convert",
        headers={
            **origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key",
        },
        timeout=10,
    )
    assert pre.status_code == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in pre.headers["Access-Control-Allow-Methods"]
    assert "X-API-Key" in pre.headers["Access-Control-Allow-Headers"]
    v2 = requests.options(
        daemon.base.removesuffix("/v1") + "/v2/jobs",
        headers={**origin, "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert v2.status_code == 204
    ok = requests.get(f"{daemon.base}/formats", headers={**origin, "X-API-Key": key}, timeout=10)
    assert ok.headers["Access-Control-Allow-Origin"] == "*"
    assert "X-RateLimit-Remaining" in ok.headers["Access-Control-Expose-Headers"]
    refused = requests.get(f"{daemon.base}/formats", headers=origin, timeout=10)
    assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == "*"
    plain = requests.get(f"{daemon.base}/formats", headers={"X-API-Key": key}, timeout=10)
    assert "Access-Control-Allow-Origin" not in plain.headers


def test_cors_origins_can_be_narrowed(make_daemon: Any) -> None:
    d = make_daemon(env={"CONVERTD_CORS_ORIGINS": "https://nas.lan:8443"})
    allowed = requests.get(f"{d.base}/", headers={"Origin": "https://nas.lan:8443"}, timeout=10)
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://nas.lan:8443"
    assert allowed.headers["Vary"] == "Origin"
    other = requests.get(f"{d.base}/", headers={"Origin": "https://evil.example"}, timeout=10)
    assert "Access-Control-Allow-Origin" not in other.headers


def test_download_links_work_in_a_browser_without_a_key(daemon: Daemon, key: str) -> None:
    from tests.conftest import image_bytes

    status, out = daemon.convert_and_fetch(key, image_bytes(), "p.png", "image", "webp")
    assert out is not None
    link = status["download_url"]
    assert "signature=" in link
    plain = requests.get(link, timeout=10)  # no key, as a browser following the link
    assert plain.status_code == 200 and plain.content == out.content
    assert plain.headers["Content-Disposition"].startswith("attachment")
    shown = requests.get(link + "&inline=1", timeout=10)
    assert shown.headers["Content-Disposition"].startswith("inline")
    assert shown.headers["Content-Security-Policy"] == "sandbox"
    for tampered in (
        link.replace("signature=", "signature=0"),
        link.replace("expires=", "expires=1"),
    ):
        resp = requests.get(tampered, timeout=10)
        assert resp.status_code == 403 and resp.json()["error"] == "Forbidden"
    unsigned = link.split("?")[0]
    assert requests.get(unsigned, timeout=10).status_code == 401  # no key, no signature


def test_a_revoked_keys_download_links_stop(daemon: Daemon) -> None:
    from tests.conftest import image_bytes

    doomed = daemon.create_key("links", "--plan", "pro")
    status, out = daemon.convert_and_fetch(doomed, image_bytes(), "p.png", "image", "png")
    assert out is not None and requests.get(status["download_url"], timeout=10).status_code == 200
    key_id = next(
        line.split()[0]
        for line in daemon.cli("keys", "list").stdout.splitlines()
        if " links " in line
    )
    daemon.cli("keys", "revoke", key_id)
    assert requests.get(status["download_url"], timeout=10).status_code == 404


class EventReader:
    """A Server-Sent Events client on a thread: each message's event name and data, in order."""

    def __init__(self, url: str, key: str) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.response = requests.get(url, headers={"X-API-Key": key}, stream=True, timeout=60)
        assert self.response.status_code == 200, self.response.text
        assert self.response.headers["Content-Type"].startswith("text/event-stream")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        event, data = "", ""
        try:
            for line in self.response.iter_lines(decode_unicode=True):
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif line == "" and event:
                    self.messages.append((event, json.loads(data)))
                    event, data = "", ""
        except (requests.RequestException, AttributeError, ValueError):
            pass  # closed by close() under the reading thread

    def wait_for(self, name: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event, data in self.messages:
                if event == name:
                    return data
            time.sleep(0.05)
        raise AssertionError(f"no {name}: {[m[0] for m in self.messages]}")

    def close(self) -> None:
        self.response.close()
        self._thread.join(timeout=10)


def test_v1_events_stream_this_keys_jobs_with_progress(make_daemon: Any, tmp_path: Path) -> None:
    d = make_daemon(workers=1)
    key, other = d.create_key("watcher", "--plan", "pro"), d.create_key("other", "--plan", "pro")
    clip = make_video(
        tmp_path / "clip.mp4", 20.0, "640x360", "-c:v", "libx264", "-preset", "ultrafast"
    )
    mine = EventReader(f"{d.base}/events", key)
    theirs = EventReader(f"{d.base}/events", other)
    try:
        job = d.convert(
            key, clip.read_bytes(), "clip.mp4", "video", "webm", {"video_codec": "vp9", "crf": 10}
        ).json()
        created = mine.wait_for("job.created")
        assert created["job"]["job_id"] == job["job_id"]
        finished = mine.wait_for("job.finished", timeout=300)
        assert finished["job"]["download_url"] and finished["job"]["file_size"] > 0
        progress = [m[1]["job"]["progress"] for m in mine.messages if m[0] == "job.updated"]
        assert any(0 < p < 100 for p in progress), progress
        assert progress == sorted(progress), "progress only goes forward"
        failing = d.convert(key, b"not a png", "x.png", "image", "webp").json()
        assert mine.wait_for("job.failed")["job"]["job_id"] == failing["job_id"]
        assert theirs.messages == [], "another key hears nothing of these jobs"
    finally:
        mine.close()
        theirs.close()


def test_v2_events_stream_tasks_with_percent(make_daemon: Any, tmp_path: Path) -> None:
    d = make_daemon(workers=1)
    key = d.create_key("v2-watcher", "--plan", "pro")
    clip = make_video(
        tmp_path / "clip.mp4", 20.0, "640x360", "-c:v", "libx264", "-preset", "ultrafast"
    )
    root = d.base.removesuffix("/v1")
    stream = EventReader(f"{root}/v2/events", key)
    try:
        body = {
            "tasks": {
                "in": {
                    "operation": "import/base64",
                    "file": base64.b64encode(clip.read_bytes()).decode(),
                    "filename": "clip.mp4",
                },
                "webm": {
                    "operation": "convert",
                    "input": "in",
                    "output_format": "webm",
                    "video_codec": "vp9",
                    "crf": 10,
                },
            }
        }
        made = requests.post(
            f"{root}/v2/jobs", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        assert made.status_code == 201, made.text
        job_id = made.json()["data"]["id"]
        assert stream.wait_for("job.created")["job"]["id"] == job_id
        done = stream.wait_for("job.finished", timeout=300)
        assert done["job"]["id"] == job_id and done["job"]["status"] == "finished"
        percents = [
            m[1]["task"]["percent"]
            for m in stream.messages
            if m[0] == "task.updated" and m[1]["task"]["operation"] == "convert"
        ]
        assert any(0 < p < 100 for p in percents), percents
        finished = [m[1]["task"]["name"] for m in stream.messages if m[0] == "task.finished"]
        assert sorted(finished) == ["in", "webm"]
        gone = requests.delete(
            f"{root}/v2/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        assert gone.status_code == 204
        assert stream.wait_for("job.deleted")["job"]["id"] == job_id
    finally:
        stream.close()


def test_v2_a_jobs_end_comes_after_each_of_its_tasks_ends(make_daemon: Any) -> None:
    """A failed conversion fails its export in the same transaction; the stream tells both
    tasks' ends, each once, before the job's (a job's item queued earlier was told as
    `job.failed` ahead of its failing task, the fourth stranger's 26 jobs in 30)."""
    d = make_daemon(workers=1)
    key = d.create_key("v2-order", "--plan", "pro")
    root = d.base.removesuffix("/v1")
    stream = EventReader(f"{root}/v2/events", key)
    junk = base64.b64encode(b"not a picture at all").decode()
    body = {
        "tasks": {
            "in": {"operation": "import/base64", "file": junk, "filename": "junk.png"},
            "c": {"operation": "convert", "input": "in", "output_format": "jpg"},
            "out": {"operation": "export/url", "input": "c"},
        }
    }
    try:
        made = []
        for _ in range(12):
            resp = requests.post(
                f"{root}/v2/jobs", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
            )
            assert resp.status_code == 201, resp.text
            made.append(resp.json()["data"])
        deadline = time.monotonic() + 120
        while sum(m[0] == "job.failed" for m in stream.messages) < len(made):
            assert time.monotonic() < deadline, [m[0] for m in stream.messages]
            time.sleep(0.05)
        time.sleep(1)  # anything told late, twice or out of order would come now
        for job in made:
            task_ids = {t["id"]: t["name"] for t in job["tasks"]}
            told = [
                (name, data.get("task", {}).get("name") or "job")
                for name, data in stream.messages
                if data.get("job", {}).get("id") == job["id"]
                or data.get("task", {}).get("id") in task_ids
            ]
            ends = [t for t in told if t[0].endswith((".finished", ".failed"))]
            assert len(ends) == len(set(ends)), told  # each end once
            assert {("task.failed", "c"), ("task.failed", "out")} <= set(ends), told
            assert ends[-1] == ("job.failed", "job"), told
    finally:
        stream.close()
