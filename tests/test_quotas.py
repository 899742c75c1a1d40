"""Per-minute and per-day limits: exact under concurrency, 429 with Retry-After, headers."""

from __future__ import annotations

import datetime as dt
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from tests.conftest import Daemon
from tests.daemon import run_cli
from tests.test_api import assert_error_body


def away_from_minute_edge() -> None:
    # The minute window is the UTC minute; a burst straddling its edge would see two windows.
    second = dt.datetime.now(dt.UTC).second
    if second >= 50:
        time.sleep(61 - second)


def test_concurrent_calls_at_the_edge_of_the_limit(daemon: Daemon) -> None:
    run_cli(
        daemon.data_dir,
        "plans",
        "set",
        "ten",
        "--api",
        "--calls-per-minute",
        "10",
        "--calls-per-day",
        "1000",
    )
    secret = daemon.create_key("burst", "--plan", "ten")
    away_from_minute_edge()
    url = f"{daemon.base}/keys/me"
    with ThreadPoolExecutor(max_workers=30) as pool:
        responses = list(
            pool.map(
                lambda _: requests.get(url, headers={"X-API-Key": secret}, timeout=30), range(40)
            )
        )
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) == 10 and codes.count(429) == 30, codes
    for resp in responses:
        if resp.status_code == 429:
            body = assert_error_body(resp, 429)
            assert "minute" in body["message"]
            assert 1 <= int(resp.headers["Retry-After"]) <= 60
            assert resp.headers["X-RateLimit-Remaining"] == "0"
            assert resp.headers["X-RateLimit-Limit"] == "10"
    remaining = sorted(
        int(r.headers["X-RateLimit-Remaining"]) for r in responses if r.status_code == 200
    )
    assert remaining == list(range(10))
    # Refused calls were not counted.
    assert settled_usage_count(daemon, "burst", 10) == 10


def settled_usage_count(daemon: Daemon, name: str, expected: int) -> int:
    """A key's usage_count as `keys list` shows it, which is up to a second behind."""
    deadline = time.monotonic() + 5
    while True:
        keys_list = json.loads(run_cli(daemon.data_dir, "keys", "list", "--json").stdout)
        count = int(next(k for k in keys_list if k["name"] == name)["usage_count"])
        if count >= expected or time.monotonic() > deadline:
            return count
        time.sleep(0.2)


def test_day_limit_and_keys_me_counts(daemon: Daemon) -> None:
    run_cli(
        daemon.data_dir,
        "plans",
        "set",
        "daily3",
        "--api",
        "--calls-per-day",
        "3",
        "--calls-per-minute",
        "unlimited",
    )
    secret = daemon.create_key("daily", "--plan", "daily3")
    url = f"{daemon.base}/keys/me"
    first = requests.get(url, headers={"X-API-Key": secret}, timeout=5)
    body = first.json()
    limits = body["rate_limits"]
    assert limits == {
        "calls_per_day": 3,
        "calls_per_minute": None,
        "used_today": 1,
        "used_this_minute": 1,
        "remaining_today": 2,
    }
    assert body["usage_count"] == 1 and body["last_used_at"] is not None
    assert body["scopes"] == [
        "user.read",
        "user.write",
        "task.read",
        "task.write",
        "webhook.read",
        "webhook.write",
    ]
    assert body["admin"] is False
    assert set(body) == {
        "ok",
        "scopes",  # convertd's own, beside the seed's fields: what the page shows
        "admin",
        "key_id",
        "name",
        "plan",
        "restriction_type",
        "allowed_ips",
        "allowed_domains",
        "usage_count",
        "last_used_at",
        "created_at",
        "rate_limits",
    }
    assert first.headers["X-RateLimit-Limit"] == "3"
    assert first.headers["X-RateLimit-Remaining"] == "2"
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    assert int(first.headers["X-RateLimit-Reset"]) == int(tomorrow.timestamp())
    requests.get(url, headers={"X-API-Key": secret}, timeout=5)
    requests.get(url, headers={"X-API-Key": secret}, timeout=5)
    over = requests.get(url, headers={"X-API-Key": secret}, timeout=5)
    body = assert_error_body(over, 429)
    assert "day" in body["message"]
    retry = int(over.headers["Retry-After"])
    assert abs(retry - (tomorrow - dt.datetime.now(dt.UTC)).total_seconds()) < 5
    # Raising the limit with the CLI takes effect at once, while the daemon runs.
    run_cli(daemon.data_dir, "plans", "set", "daily3", "--calls-per-day", "4")
    assert requests.get(url, headers={"X-API-Key": secret}, timeout=5).status_code == 200


def test_unlimited_plan(daemon: Daemon, key: str) -> None:
    resp = requests.get(f"{daemon.base}/keys/me", headers={"X-API-Key": key}, timeout=5)
    limits = resp.json()["rate_limits"]
    assert limits["calls_per_day"] is None and limits["calls_per_minute"] is None
    assert limits["remaining_today"] is None and limits["used_today"] >= 1
    assert "X-RateLimit-Limit" not in resp.headers


def test_basic_plan_headers_use_the_tightest_window(daemon: Daemon) -> None:
    secret = daemon.create_key("basic-user")
    away_from_minute_edge()
    resp = requests.get(f"{daemon.base}/formats", headers={"X-API-Key": secret}, timeout=5)
    assert resp.headers["X-RateLimit-Limit"] == "60"
    assert resp.headers["X-RateLimit-Remaining"] == "59"
    reset = int(resp.headers["X-RateLimit-Reset"])
    assert reset % 60 == 0 and 0 < reset - time.time() <= 60


def test_counts_survive_a_restart(make_daemon: Any) -> None:
    d = make_daemon()
    run_cli(d.data_dir, "plans", "set", "daily4", "--api", "--calls-per-day", "4")
    secret = d.create_key("restarted", "--plan", "daily4")
    url = f"{d.base}/formats"
    for _ in range(3):
        assert requests.get(url, headers={"X-API-Key": secret}, timeout=5).status_code == 200
    d.stop()  # SIGTERM: the counts still in memory are written on the way out
    d.start()
    url = f"{d.base}/formats"
    assert requests.get(url, headers={"X-API-Key": secret}, timeout=5).status_code == 200
    assert requests.get(url, headers={"X-API-Key": secret}, timeout=5).status_code == 429
    assert settled_usage_count(d, "restarted", 4) == 4
