"""Waiting without polling on v1 (`?wait=`), and browsers as clients (CORS)."""

from __future__ import annotations

from typing import Any

import requests

from tests.conftest import Daemon
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
