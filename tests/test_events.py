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
