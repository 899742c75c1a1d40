"""A job ended by another process (a key revoked with the CLI on the same data dir or database)
is heard of by the daemon's waits and streams: a `?wait=` (or a `/sync/v2` wait on a /v2 job)
answers with the end, not after its whole timeout, whether the job was queued
(events/outside.py's sweep) or running (the worker that stops it announces it); the revoked
key's event streams end (at their next message or heartbeat), so that a reconnecting client
hears 401, once they have told the ends of the jobs the revoke failed while queued."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.daemon import run_cli
from tests.media import make_video

# Long enough that an answer within CLIENT_TIMEOUT can only be a wake-up, never the wait's end.
WAIT = 120
CLIENT_TIMEOUT = 30


def key_id(daemon: Any, key: str) -> int:
    me = requests.get(f"{daemon.base}/keys/me", headers={"X-API-Key": key}, timeout=10)
    return int(me.json()["key_id"])


def waiting(url: str, key: str) -> tuple[threading.Thread, dict[str, Any]]:
    """A `?wait=WAIT` on `url` in a thread; its answer (or the client's timeout) lands in the
    dict."""
    answer: dict[str, Any] = {}

    def wait() -> None:
        try:
            resp = requests.get(
                url, params={"wait": WAIT}, headers={"X-API-Key": key}, timeout=CLIENT_TIMEOUT
            )
            answer["body"] = resp.json()
        except requests.Timeout:
            answer["body"] = "never woken"

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread, answer


def test_a_wait_on_a_queued_job_hears_of_a_revoke_by_the_cli(make_daemon: Any) -> None:
    d = make_daemon(workers=0)  # no worker: the job stays queued
    key = d.create_key("revoked-queued", "--plan", "pro")
    job = d.convert(key, b"a", "a.txt", "hash", "md5").json()
    thread, answer = waiting(job["status_url"], key)
    d.session(key).get(job["status_url"], timeout=10)  # the wait is open by now, or soon
    run_cli(d.data_dir, "keys", "revoke", str(key_id(d, key)))
    thread.join(CLIENT_TIMEOUT + 5)
    assert answer["body"] != "never woken", answer
    assert answer["body"]["status"] == "failed" and "revoked" in answer["body"]["error"]


def test_a_sync_wait_on_a_queued_v2_job_hears_of_a_revoke_by_the_cli(make_daemon: Any) -> None:
    d = make_daemon(workers=0)
    key = d.create_key("revoked-v2", "--plan", "pro")
    tasks = {
        "in": {"operation": "import/raw", "file": "a", "filename": "a.txt"},
        "h": {"operation": "convert", "input": "in", "output_format": "md5"},
    }
    root = d.base.removesuffix("/v1")
    made = requests.post(
        f"{root}/v2/jobs", json={"tasks": tasks}, headers={"X-API-Key": key}, timeout=30
    )
    assert made.status_code == 201, made.text
    job_id = made.json()["data"]["id"]
    answer: dict[str, Any] = {}

    def wait() -> None:
        try:
            resp = requests.get(
                f"{root}/sync/v2/jobs/{job_id}", headers={"X-API-Key": key}, timeout=CLIENT_TIMEOUT
            )
            answer["body"] = resp.json()
        except requests.Timeout:
            answer["body"] = "never woken"

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    thread.join(1)  # the wait under way
    run_cli(d.data_dir, "keys", "revoke", str(key_id(d, key)))
    thread.join(CLIENT_TIMEOUT + 5)
    assert answer["body"] != "never woken", answer
    assert answer["body"]["data"]["status"] == "error", answer


@pytest.mark.sqlite_only  # the worker's own announcement: the same on either engine
def test_a_wait_on_a_running_job_hears_of_a_revoke_by_the_cli(
    make_daemon: Any, tmp_path: Path
) -> None:
    d = make_daemon(workers=1)
    key = d.create_key("revoked-running", "--plan", "pro")
    clip = make_video(tmp_path / "long.mp4", 30, "640x360")
    job = d.convert(key, clip.read_bytes(), "long.mp4", "video", "webm").json()
    session = d.session(key)
    while session.get(job["status_url"], timeout=10).json()["status"] == "pending":
        pass  # until the worker has it
    thread, answer = waiting(job["status_url"], key)
    run_cli(d.data_dir, "keys", "revoke", str(key_id(d, key)))
    thread.join(CLIENT_TIMEOUT + 5)
    assert answer["body"] != "never woken", answer
    assert answer["body"]["status"] == "failed" and "revoked" in answer["body"]["error"]


def streaming(url: str, key: str) -> tuple[threading.Thread, list[str], threading.Event]:
    """An event stream read in a thread: (the thread, its lines so far, set once it ended)."""
    lines: list[str] = []
    ended = threading.Event()

    def read() -> None:
        try:
            with requests.get(
                url, headers={"X-API-Key": key}, stream=True, timeout=CLIENT_TIMEOUT
            ) as resp:
                for line in resp.iter_lines(decode_unicode=True):
                    lines.append(line)
            ended.set()
        except requests.RequestException:
            pass  # the client's timeout: the stream never ended

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while not lines:
        reader.join(0.05)  # until the stream has begun
    return reader, lines, ended


def events(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: ")]


def test_a_revoked_keys_event_streams_end_with_their_queued_jobs_failures(
    make_daemon: Any,
) -> None:
    """The streams end (at their next message or heartbeat), and first say job.failed (and on
    /v2 task.failed) for what the revoke failed while queued: no worker ran it, so no one else
    announces it (the second stranger: the stream ended without a word of the queued job)."""
    d = make_daemon(workers=0)  # no worker: the jobs stay queued
    key = d.create_key("revoked-stream", "--plan", "pro")
    root = d.base.removesuffix("/v1")
    job = d.convert(key, b"a", "a.txt", "hash", "md5").json()
    tasks = {
        "in": {"operation": "import/raw", "file": "a", "filename": "a.txt"},
        "h": {"operation": "convert", "input": "in", "output_format": "md5"},
    }
    made = requests.post(
        f"{root}/v2/jobs", json={"tasks": tasks}, headers={"X-API-Key": key}, timeout=30
    )
    assert made.status_code == 201, made.text
    v2_job = made.json()["data"]
    v1_reader, v1_lines, v1_ended = streaming(f"{d.base}/events", key)
    v2_reader, v2_lines, v2_ended = streaming(f"{root}/v2/events", key)
    run_cli(d.data_dir, "keys", "revoke", str(key_id(d, key)))
    v1_reader.join(CLIENT_TIMEOUT + 5)
    v2_reader.join(CLIENT_TIMEOUT + 5)
    assert v1_ended.is_set() and v2_ended.is_set(), (v1_lines, v2_lines)
    said = events(v1_lines)
    assert [(e["event"], e["job"]["job_id"]) for e in said] == [("job.failed", job["job_id"])]
    assert "revoked" in said[0]["job"]["error"], said
    said = events(v2_lines)
    convert = next(t["id"] for t in v2_job["tasks"] if t["name"] == "h")
    assert ("task.failed", convert) in [(e["event"], e.get("task", {}).get("id")) for e in said]
    assert [e["job"]["status"] for e in said if e["event"] == "job.failed"] == ["error"], said
    # Ended by the daemon, not cut off: a reconnecting EventSource then hears 401.
    again = requests.get(f"{d.base}/events", headers={"X-API-Key": key}, timeout=10)
    assert again.status_code == 401
    status = requests.get(
        f"{d.base}/status/{job['job_id']}", headers={"X-API-Key": key}, timeout=10
    )
    assert status.status_code == 401


def test_a_keys_event_streams_end_when_keys_set_takes_away_what_they_need(
    make_daemon: Any,
) -> None:
    """`convertd keys set` applies to open streams too, as the revoke does (the third stranger:
    after `--restrict ip --allow 10.9.9.9` and then `--scope task.write`, an open stream went on
    and delivered job.created). Moved to a plan without API access, restricted to elsewhere, or
    without task.read: each key's v1 and v2 streams end at their next message or heartbeat,
    sending nothing more, and a reconnect hears the 403 a new stream gets."""
    d = make_daemon(workers=0)  # no worker: jobs stay queued
    root = d.base.removesuffix("/v1")
    changes = {
        "plan": ("--plan", "free"),
        "ip": ("--restrict", "ip", "--allow", "10.9.9.9"),
        "scope": ("--restrict", "all", "--scope", "task.write"),
    }
    keys = {name: d.create_key(f"set-{name}", "--plan", "pro") for name in changes}
    streams = {
        (name, url): streaming(url, key)
        for name, key in keys.items()
        for url in (f"{d.base}/events", f"{root}/v2/events")
    }
    before = d.convert(keys["scope"], b"a", "a.txt", "hash", "md5").json()["job_id"]
    deadline = time.monotonic() + 10
    v1_scope = streams["scope", f"{d.base}/events"][1]
    while not any(e["job"]["job_id"] == before for e in events(v1_scope)):
        assert time.monotonic() < deadline, v1_scope  # the stream works before the change
        time.sleep(0.05)
    for name, args in changes.items():
        run_cli(d.data_dir, "keys", "set", str(key_id(d, keys[name])), *args)
    # Still allowed to submit, no longer to read: its job.created must not reach the stream.
    after = d.convert(keys["scope"], b"b", "b.txt", "hash", "md5")
    assert after.status_code == 202, after.text
    for (name, url), (reader, lines, ended) in streams.items():
        reader.join(CLIENT_TIMEOUT + 5)  # a heartbeat comes within 15 s
        assert ended.is_set(), (name, url, lines)
        said = [e.get("job", {}).get("job_id") for e in events(lines)]
        assert after.json()["job_id"] not in said, (name, url, lines)
        assert any(line.startswith(": ended: ") for line in lines), (name, url, lines)
        again = requests.get(url, headers={"X-API-Key": keys[name]}, timeout=10)
        assert again.status_code == 403, (name, url, again.text)
