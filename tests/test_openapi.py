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
