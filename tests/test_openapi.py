"""The published OpenAPI document, and schemathesis fuzzing the running daemon against it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import requests


def test_openapi_document_is_served(daemon: Any) -> None:
    doc = requests.get(f"{daemon.base}/openapi.json", timeout=5).json()
    assert doc["openapi"].startswith("3.")
    assert {
        "/v1/convert",
        "/v1/upload",
        "/v1/status/{job_id}",
        "/v1/download/{job_id}",
        "/v1/keys/me",
        "/v1/formats",
        "/v1/",
    } <= set(doc["paths"])


def test_schemathesis_finds_no_5xx_and_no_schema_mismatch(make_daemon: Any) -> None:
    d = make_daemon(env={"CONVERTD_OFFICE_PREWARM": "false"})
    key = d.create_key("fuzz", "--plan", "pro")
    st = Path(sys.executable).with_name("st")
    proc = subprocess.run(
        [
            str(st),
            "run",
            f"{d.base}/openapi.json",
            "-H",
            f"X-API-Key: {key}",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_schema_conformance",
            # An event stream never ends by design: tests/test_events.py reads it.
            "--exclude-path",
            "/v1/events",
            "--max-examples",
            "40",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "unhandled error" not in d.log()


def test_v2_openapi_document_is_served(daemon: Any) -> None:
    root = daemon.base.removesuffix("/v1")
    doc = requests.get(f"{root}/v2/openapi.json", timeout=5).json()
    assert doc["openapi"].startswith("3.")
    assert {
        "/v2/jobs",
        "/v2/jobs/{job_id}",
        "/sync/v2/jobs/{job_id}",
        "/v2/tasks",
        "/v2/tasks/{task_id}/cancel",
        "/v2/import/upload",
        "/v2/convert",
        "/v2/export/url",
        "/v2/convert/formats",
        "/v2/users/me",
    } <= set(doc["paths"])
    assert doc["components"]["schemas"]["Error"]["required"] == ["message", "code"]


def test_schemathesis_finds_no_5xx_on_v2(make_daemon: Any) -> None:
    # A short sync wait: fuzzed waits on tasks that never end answer at that limit.
    d = make_daemon(env={"CONVERTD_OFFICE_PREWARM": "false", "CONVERTD_SYNC_WAIT_SECONDS": "0.2"})
    key = d.create_key("fuzz", "--plan", "pro")
    root = d.base.removesuffix("/v1")
    st = Path(sys.executable).with_name("st")
    proc = subprocess.run(
        [
            str(st),
            "run",
            f"{root}/v2/openapi.json",
            "-H",
            f"Authorization: Bearer {key}",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_schema_conformance",
            "--exclude-path",
            "/v2/events",
            "--max-examples",
            "25",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "unhandled error" not in d.log()
