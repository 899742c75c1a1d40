"""Keys and jobs served from memory on the read path (store/cache.py) are never older than the
database: a key revoked or changed, a plan changed, a job that moved on, from any process (the
CLI, raw SQL, the daemon's own worker, another node), shows at the very next request. Each test
reads first, so that what it changes is in memory when it changes."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import requests

from convertd.store.postgres_sql import numbered
from tests.conftest import Daemon
from tests.daemon import run_cli
from tests.media import make_video
from tests.postgres import Cluster
from tests.test_api import assert_error_body
from tests.test_quotas import away_from_minute_edge


def raw_sql(daemon: Daemon, sql: str, params: tuple[Any, ...] = ()) -> None:
    """A change made behind the daemon's back, as an admin's SQL shell would: committed by
    another process, through no convertd code."""
    if daemon.database is None:
        conn = sqlite3.connect(daemon.data_dir / "convertd.db", timeout=10)
        try:
            with conn:
                conn.execute(sql, params)
        finally:
            conn.close()
        return

    async def run() -> None:
        conn = await asyncpg.connect(daemon.database)
        try:
            await conn.execute(numbered(sql), *params)
        finally:
            await conn.close()

    asyncio.run(run())


def tiny_job(daemon: Daemon, key: str) -> str:
    resp = daemon.convert(key, b"a", "a.txt", "hash", "md5")
    assert resp.status_code == 202, resp.text
    return str(resp.json()["status_url"])


def reads(session: requests.Session, url: str, times: int = 5) -> None:
    """A few reads that succeed: what they read is in memory from now on."""
    for _ in range(times):
        resp = session.get(url, timeout=10)
        assert resp.status_code == 200, resp.text


def keyed(key: str) -> requests.Session:
    session = requests.Session()
    session.headers["X-API-Key"] = key
    return session


class Poller:
    """A client that keeps reading `url` with its own key: each answer's status, with the time
    its request was sent."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.session = url, keyed(key)
        self.answers: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            sent = time.monotonic()
            self.answers.append((sent, self.session.get(self.url, timeout=10).status_code))

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def test_a_key_revoked_by_the_cli_is_refused_at_the_next_request(daemon: Daemon) -> None:
    key = daemon.create_key("revoked-while-polled", "--plan", "pro")
    url = tiny_job(daemon, key)
    session = keyed(key)
    reads(session, url)
    key_id = session.get(f"{daemon.base}/keys/me", timeout=10).json()["key_id"]
    with Poller(url, key) as poller:
        time.sleep(0.3)
        run_cli(daemon.data_dir, "keys", "revoke", str(key_id))
        revoked_at = time.monotonic()
        assert_error_body(session.get(url, timeout=10), 401)
        time.sleep(0.3)
    before = [status for sent, status in poller.answers if sent < revoked_at]
    after = [status for sent, status in poller.answers if sent > revoked_at]
    assert before and set(before) <= {200, 401}, before
    assert 200 in before
    assert after and set(after) == {401}, after


def test_a_plan_change_takes_effect_at_once(daemon: Daemon, engine: str) -> None:
    plan = f"cached-{engine}"
    run_cli(daemon.data_dir, "plans", "set", plan, "--api", "--calls-per-minute", "unlimited")
    key = daemon.create_key("plan-changes", "--plan", plan)
    url = tiny_job(daemon, key)
    session = keyed(key)
    away_from_minute_edge()
    reads(session, url, 10)
    # Fewer calls a minute than this key has made already: refused from the next one on.
    run_cli(daemon.data_dir, "plans", "set", plan, "--calls-per-minute", "5")
    assert_error_body(session.get(url, timeout=10), 429)
    run_cli(daemon.data_dir, "plans", "set", plan, "--calls-per-minute", "unlimited", "--no-api")
    assert_error_body(session.get(url, timeout=10), 403)
    # The same by SQL, as another program would write it: no convertd code runs.
    raw_sql(daemon, "UPDATE plans SET api_access = 1 WHERE name = ?", (plan,))
    reads(session, url, 1)


def test_a_key_moved_by_keys_set_is_seen_at_the_next_request(daemon: Daemon, engine: str) -> None:
    """`convertd keys set`, which the 403 and 429 hints name: a key moved to a plan without API
    access, locked to an IP it is not used from, lifted again, each at the very next request."""
    plan = f"no-api-{engine}"
    run_cli(daemon.data_dir, "plans", "set", plan, "--no-api")
    key = daemon.create_key("moved-by-the-cli", "--plan", "pro")
    session = keyed(key)
    me = f"{daemon.base}/keys/me"
    reads(session, me)
    key_id = str(session.get(me, timeout=10).json()["key_id"])
    run_cli(daemon.data_dir, "keys", "set", key_id, "--plan", plan)
    refused = session.get(me, timeout=10)
    assert_error_body(refused, 403)
    assert f"convertd keys set {key_id} --plan" in refused.json()["hint"]
    run_cli(daemon.data_dir, "keys", "set", key_id, "--plan", "pro")
    reads(session, me, 2)
    run_cli(daemon.data_dir, "keys", "set", key_id, "--restrict", "ip", "--allow", "192.0.2.0/24")
    assert_error_body(session.get(me, timeout=10), 403)
    out = run_cli(daemon.data_dir, "keys", "set", key_id, "--restrict", "all", "--name", "back")
    assert "restriction all" in out.stdout
    assert session.get(me, timeout=10).json()["name"] == "back"
    run_cli(daemon.data_dir, "keys", "set", key_id, "--scope", "user.read")
    assert session.get(me, timeout=10).json()["scopes"] == ["user.read"]
    v2_jobs = daemon.base.removesuffix("/v1") + "/v2/jobs"
    assert session.get(v2_jobs, timeout=10).status_code == 403  # task.read is gone


def test_a_job_the_retention_sweep_expires_is_gone_from_status_and_download_at_once(
    make_daemon: Any,
) -> None:
    """The sweep marks a job expired, then deletes its files (retention.py). The first stranger
    read `finished` and then a 404 from the download and took it for a second of stale status;
    the log showed that status read had come 87 ms before the sweep. Here the status is read
    from memory until the sweep's own log line says the job expired; every read after that
    line, status and both downloads alike, is a 404, never a cached `finished`."""
    d = make_daemon(env={"CONVERTD_RETENTION_SECONDS": "2", "CONVERTD_SWEEP_INTERVAL_SECONDS": "1"})
    key = d.create_key("swept", "--plan", "pro")
    job = d.convert(key, b"swept", "s.txt", "hash", "md5").json()
    session = keyed(key)
    status_url, signed = job["status_url"], job["download_url"]
    assert session.get(f"{status_url}?wait=30", timeout=40).json()["status"] == "finished"
    expired_line = f"job {job['job_id']} expired"
    deadline = time.monotonic() + 30
    while expired_line not in d.log():
        assert time.monotonic() < deadline, d.log()
        status = session.get(status_url, timeout=10)  # kept in memory between commits
        assert status.status_code == 404 or status.json()["status"] == "finished", status.text
    by_key = f"{d.base}/download/{job['job_id']}"
    for url, who in ((status_url, session), (by_key, session), (signed, requests)):
        body = assert_error_body(who.get(url, timeout=10), 404)
        assert "expired" in body["message"], (url, body)
    while (d.data_dir / "results" / job["job_id"]).exists():  # deleted just after the mark
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_key_changed_or_deleted_by_sql_is_seen_at_once(daemon: Daemon) -> None:
    key = daemon.create_key("changed-by-sql", "--plan", "pro")
    session = keyed(key)
    me = f"{daemon.base}/keys/me"
    reads(session, me)
    key_id = session.get(me, timeout=10).json()["key_id"]
    raw_sql(
        daemon,
        "UPDATE api_keys SET restriction_type = 'ip', allowed_ips = ? WHERE id = ?",
        ('["203.0.113.5"]', key_id),
    )
    assert_error_body(session.get(me, timeout=10), 403)
    raw_sql(
        daemon,
        "UPDATE api_keys SET restriction_type = 'all', allowed_ips = '[]' WHERE id = ?",
        (key_id,),
    )
    reads(session, me, 2)
    raw_sql(daemon, "DELETE FROM api_keys WHERE id = ?", (key_id,))
    assert_error_body(session.get(me, timeout=10), 401)


def test_a_job_changed_by_another_process_shows_at_the_next_poll(make_daemon: Any) -> None:
    daemon = make_daemon(workers=0)  # no worker: the job stays pending until SQL says otherwise
    key = daemon.create_key("job-changed", "--plan", "pro")
    url = tiny_job(daemon, key)
    session = keyed(key)
    reads(session, url)
    assert session.get(url, timeout=10).json()["status"] == "pending"
    job_id = url.rsplit("/", 1)[1]
    raw_sql(
        daemon,
        "UPDATE jobs SET status = 'failed', error = 'failed by hand', finished_at = 1 WHERE id = ?",
        (job_id,),
    )
    body = session.get(url, timeout=10).json()
    assert body["status"] == "failed" and body["error"] == "failed by hand"


def test_status_is_never_stale_across_a_jobs_end(daemon: Daemon, key: str, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "clip.mp4", 4.0).read_bytes()
    resp = requests.post(
        f"{daemon.base}/convert",
        headers={"X-API-Key": key},
        files={"file": ("clip.mp4", clip)},
        data={"filetype": "video", "output_format": "mp4"},
        timeout=60,
    )
    assert resp.status_code == 202, resp.text
    url = resp.json()["status_url"]
    session = keyed(key)
    first = session.get(url, timeout=10).json()["status"]
    assert first in {"pending", "processing"}, first  # in memory before the job ends
    waited = session.get(url, params={"wait": "120"}, timeout=130).json()
    assert waited["status"] == "finished", waited
    again = session.get(url, timeout=10).json()
    assert again["status"] == "finished" and again["file_size"] == waited["file_size"]
    download = session.get(again["download_url"], timeout=30)
    assert download.status_code == 200 and download.content[4:8] == b"ftyp"


@pytest.fixture
def two_nodes(pg_cluster: Cluster, tmp_path: Path) -> Iterator[list[Daemon]]:
    database = pg_cluster.new_database()
    shared = tmp_path / "shared"
    shared.mkdir()
    started: list[Daemon] = []
    try:
        for n in range(2):
            node = Daemon(
                tmp_path / f"node{n}" / "data", database=database, args=("--storage", str(shared))
            )
            started.append(node.start())
        yield started
    finally:
        for node in started:
            node.stop()


def test_a_key_revoked_on_one_node_is_refused_on_the_other_at_once(
    two_nodes: list[Daemon],
) -> None:
    a, b = two_nodes
    key = a.create_key("revoked-elsewhere", "--plan", "pro")
    url = tiny_job(a, key)
    session = keyed(key)
    reads(session, url)
    key_id = session.get(f"{a.base}/keys/me", timeout=10).json()["key_id"]
    run_cli(b.data_dir, "keys", "revoke", str(key_id))
    assert_error_body(session.get(url, timeout=10), 401)
