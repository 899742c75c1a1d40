"""Quotas across nodes (issue 18): three daemons on one PostgreSQL database admit exactly a
plan's limit between them, however the calls are spread, and a refused call counts nowhere."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import Daemon
from tests.postgres import Cluster
from tests.test_api import assert_error_body
from tests.test_quotas import away_from_minute_edge, settled_usage_count

NODES = 3
CALLS = 100
LIMIT = 10


@pytest.fixture(scope="module")
def nodes(pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Daemon]]:
    """Three nodes: a data dir each, one database and one shared storage dir between them."""
    database = pg_cluster.new_database()
    root = tmp_path_factory.mktemp("cluster-quotas")
    shared = root / "shared"
    shared.mkdir()
    started: list[Daemon] = []
    try:
        for n in range(NODES):
            data_dir = root / f"node{n}" / "data"
            node = Daemon(data_dir, database=database, args=("--storage", str(shared)))
            started.append(node.start())
        yield started
    finally:
        for node in started:
            node.stop()


def _burst(nodes: list[Daemon], secret: str) -> list[requests.Response]:
    """CALLS concurrent counted calls, dealt round the nodes in turn."""
    urls = [f"{nodes[i % len(nodes)].base}/keys/me" for i in range(CALLS)]
    with ThreadPoolExecutor(max_workers=48) as pool:
        return list(
            pool.map(lambda url: requests.get(url, headers={"X-API-Key": secret}, timeout=60), urls)
        )


def _stored_counts(node: Daemon, name: str) -> dict[str, int]:
    """The key's count in each window as the database holds it (the windows of the burst)."""
    listed = json.loads(node.cli("keys", "list", "--json").stdout)
    key_id = next(k["key_id"] for k in listed if k["name"] == name)
    rows = node.query(
        "SELECT span, count FROM call_counts WHERE key_id = ? ORDER BY span_start DESC", (key_id,)
    )
    latest: dict[str, int] = {}
    for span, count in rows:
        latest.setdefault(span, int(count))
    return latest


@pytest.mark.parametrize(
    ("window", "per_minute", "per_day"),
    [("minute", str(LIMIT), "unlimited"), ("day", "unlimited", str(LIMIT))],
)
def test_three_nodes_admit_exactly_the_limit(
    nodes: list[Daemon], window: str, per_minute: str, per_day: str
) -> None:
    first = nodes[0]
    plan, name = f"ten-a-{window}", f"burst-{window}"
    first.cli("plans", "set", plan, "--api", "--calls-per-minute", per_minute,
              "--calls-per-day", per_day)  # fmt: skip
    secret = first.create_key(name, "--plan", plan)
    away_from_minute_edge()  # one minute window for the whole burst (and so one day)

    responses = _burst(nodes, secret)

    codes = [r.status_code for r in responses]
    assert codes.count(200) == LIMIT and codes.count(429) == CALLS - LIMIT, sorted(codes)
    # Each admitted call saw a count of its own: 9 left, 8 left, ... 0 left.
    remaining = sorted(int(r.headers["X-RateLimit-Remaining"]) for r in responses if r.ok)
    assert remaining == list(range(LIMIT))
    for resp in responses:
        if resp.status_code == 429:
            body = assert_error_body(resp, 429)
            assert f"{LIMIT} calls allowed per {window}" in body["message"]
            assert resp.headers["X-RateLimit-Limit"] == str(LIMIT)
            assert resp.headers["X-RateLimit-Remaining"] == "0"
            assert int(resp.headers["Retry-After"]) >= 1
    # Refused calls counted in neither window (the other window's count was rolled back too),
    # and every node's share of the usage reached the key's record.
    assert _stored_counts(first, name) == {"minute": LIMIT, "day": LIMIT}
    assert settled_usage_count(first, name, LIMIT) == LIMIT
    # Whichever node is asked next refuses as well: the count is the database's, not a node's.
    for node in nodes:
        again = requests.get(f"{node.base}/keys/me", headers={"X-API-Key": secret}, timeout=10)
        assert again.status_code == 429


def test_a_refused_first_call_leaves_no_count(nodes: list[Daemon]) -> None:
    # A window's first call is an insert, which no limit stops in SQL: at a limit of 0 it must
    # be refused and rolled back all the same, on every node.
    first = nodes[0]
    first.cli("plans", "set", "none-today", "--api", "--calls-per-day", "0")
    secret = first.create_key("refused-first", "--plan", "none-today")
    for node in nodes:
        resp = requests.get(f"{node.base}/keys/me", headers={"X-API-Key": secret}, timeout=10)
        body = assert_error_body(resp, 429)
        assert "all 0 calls allowed per day" in body["message"]
        assert resp.headers["X-RateLimit-Remaining"] == "0"
    assert _stored_counts(first, "refused-first") == {}
