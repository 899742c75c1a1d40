"""`GET /health` and `/health/live` on real daemons: each check passes, and fails by name when
the disk is full (a real tmpfs) or a tool is taken off PATH; X-Request-Id on every answer."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import small_disk

QUIET = {"CONVERTD_OFFICE_PREWARM": "false", "CONVERTD_DROP_ENABLED": "false"}


def health(d: Any) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{d.port}/health", timeout=30)


def health_becomes(d: Any, status: int, within: float = 40) -> dict[str, Any]:
    """/health's body once it answers `status` (tool lookups are remembered for 10 s)."""
    deadline = time.monotonic() + within
    while True:
        resp = health(d)
        if resp.status_code == status or time.monotonic() > deadline:
            assert resp.status_code == status, resp.text
            body: dict[str, Any] = resp.json()
            return body
        time.sleep(0.5)


def test_health_answers_with_its_checks(daemon: Any, key: str) -> None:
    resp = health(daemon)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "ok" and body["failing"] == []
    assert set(body["checks"]) == {"database", "workers", "disk", "tools"}
    assert all(check["ok"] for check in body["checks"].values())
    assert "committed" in body["checks"]["database"]["detail"]
    assert body["checks"]["disk"]["free_bytes"] > 0
    assert body["checks"]["tools"]["missing"] == []
    assert resp.headers["Cache-Control"] == "no-store"
    # Keyless, and it costs no quota: a key's usage does not move.
    before = requests.get(f"{daemon.base}/keys/me", headers={"X-API-Key": key}, timeout=10)
    health(daemon)
    after = requests.get(f"{daemon.base}/keys/me", headers={"X-API-Key": key}, timeout=10)
    assert after.json()["usage_count"] == before.json()["usage_count"] + 1


def test_live_answers_without_touching_anything(daemon: Any) -> None:
    resp = requests.get(f"http://127.0.0.1:{daemon.port}/health/live", timeout=10)
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}
    head = requests.head(f"http://127.0.0.1:{daemon.port}/health/live", timeout=10)
    assert head.status_code == 200


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("3f2b9c1e-7a4d-4e2b-9f0a-1c2d3e4f5a6b", True),
        ("nginx-0123456789abcdef", True),
        ("a" * 128, True),
        ("a" * 129, False),  # too long
        ("has space", False),
        ("semi;colon", False),
        ("-leading-dash", False),
        ("", False),
    ],
)
def test_request_id_is_kept_when_sane(daemon: Any, sent: str, kept: bool) -> None:
    resp = requests.get(f"{daemon.base}/", headers={"X-Request-Id": sent}, timeout=10)
    got = resp.headers["X-Request-Id"]
    if kept:
        assert got == sent
    else:
        assert got != sent and len(got) == 32 and int(got, 16) >= 0


def test_every_answer_has_a_fresh_request_id(daemon: Any, key: str) -> None:
    base = f"http://127.0.0.1:{daemon.port}"
    answers = [
        requests.get(f"{base}/v1/", timeout=10),  # public
        requests.get(f"{base}/v1/keys/me", timeout=10),  # 401
        requests.get(f"{base}/v1/keys/me", headers={"X-API-Key": key}, timeout=10),
        requests.get(f"{base}/nowhere", timeout=10),  # 404
        requests.get(f"{base}/v2/jobs", headers={"Authorization": f"Bearer {key}"}, timeout=10),
        requests.options(
            f"{base}/v1/convert",
            headers={"Origin": "https://a.example", "Access-Control-Request-Method": "POST"},
            timeout=10,
        ),
    ]
    ids = [resp.headers.get("X-Request-Id") for resp in answers]
    assert all(ids) and len(set(ids)) == len(ids), [(r.status_code, r.headers) for r in answers]
    # A browser page may send and read it.
    assert "X-Request-Id" in answers[-1].headers["Access-Control-Allow-Headers"]


def path_without(tmp_path: Path, missing: str) -> Path:
    """A directory of links to every program on PATH but `missing`: a PATH without it."""
    farm = tmp_path / "bin"
    farm.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not directory or not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            target = farm / entry.name
            if entry.name == missing or target.exists() or target.is_symlink():
                continue
            if entry.is_file() and os.access(entry.path, os.X_OK):
                target.symlink_to(entry.path)
    return farm


def test_a_tool_missing_from_path_fails_health_by_name(make_daemon: Any, tmp_path: Path) -> None:
    import shutil

    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg is not None
    farm = path_without(tmp_path, "ffmpeg")
    d = make_daemon(env={**QUIET, "PATH": str(farm)}, workers=1)

    body = health_becomes(d, 503, within=1)
    assert body["status"] == "failing" and body["failing"] == ["tools"], body
    assert body["checks"]["tools"]["missing"] == ["ffmpeg"]
    assert "ffmpeg" in body["checks"]["tools"]["detail"]
    assert body["checks"]["database"]["ok"] and body["checks"]["disk"]["ok"]

    # Installed while it runs: healthy again once the lookup is redone (10 s at most).
    (farm / "ffmpeg").symlink_to(ffmpeg)
    assert health_becomes(d, 200)["failing"] == []
    # Taken away while it runs: failing again, naming it.
    (farm / "ffmpeg").unlink()
    assert health_becomes(d, 503)["checks"]["tools"]["missing"] == ["ffmpeg"]
    assert health(d).status_code == 503
    # Each change is logged once, however many answers found it so.
    log = d.log()
    assert log.count("WARNING convertd.api.health: health: tools check failing") == 2, log
    assert log.count("INFO convertd.api.health: health: tools check passes again") == 1, log


def test_optional_tools_are_reported_not_failed(make_daemon: Any, tmp_path: Path) -> None:
    farm = path_without(tmp_path, "qpdf")
    d = make_daemon(env={**QUIET, "PATH": str(farm)}, workers=1)
    body = health_becomes(d, 200, within=1)
    assert body["checks"]["tools"]["optional_missing"] == ["qpdf (no merge and optimize of PDFs)"]
    # Unless the admin requires it.
    d.stop()
    d2 = make_daemon(
        env={**QUIET, "PATH": str(farm), "CONVERTD_HEALTH_TOOLS": "ffmpeg,qpdf"},
        workers=1,
        data_dir=tmp_path / "data2",
    )
    body = health_becomes(d2, 503, within=1)
    assert body["checks"]["tools"]["missing"] == ["qpdf"]


@pytest.fixture(name="small_disk")
def small_disk_fixture(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs: the hostile suite's full-disk trick."""
    with small_disk(tmp_path, 16) as mount:
        yield mount


def test_a_full_disk_fails_health_by_name(make_daemon: Any, small_disk: Path) -> None:
    wanted = 4 * 1024**2
    d = make_daemon(
        env={**QUIET, "CONVERTD_HEALTH_MIN_FREE_BYTES": str(wanted)},
        workers=1,
        data_dir=small_disk / "data",
    )
    body = health_becomes(d, 200, within=1)
    assert body["checks"]["disk"]["free_bytes"] >= wanted

    filler = small_disk / "filler"
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    filler.write_bytes(b"\0" * (free - wanted // 2))
    body = health_becomes(d, 503, within=1)
    assert "disk" in body["failing"], body
    assert not body["checks"]["disk"]["ok"]
    assert body["checks"]["disk"]["free_bytes"] < wanted
    assert "at least 4.0 MiB" in body["checks"]["disk"]["detail"]

    filler.unlink()
    assert health_becomes(d, 200, within=1)["failing"] == []
