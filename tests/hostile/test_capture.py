"""Hostile pages for capture-website, under the package's invariants (a healthy daemon, no tool
left running but the warm pools, memory handed back): a page that reaches for local files, a
private address and a canary gets none of them, and the daemon's network policy holds for
every request the page makes."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator

import pytest
import requests

from tests.canary import Canary
from tests.conftest import Daemon
from tests.test_v2_api import job_of, named, wait_job


@pytest.fixture
def canary() -> Iterator[Canary]:
    c = Canary()
    yield c
    c.close()


def test_a_page_reaching_for_local_files_private_addresses_and_a_canary_gets_nothing(
    daemon: Daemon, key: str, canary: Canary
) -> None:
    page = f"""<!doctype html><title>hostile</title><h1>Visible text</h1>
<img src="file:///etc/passwd"><iframe src="file:///etc/shadow"></iframe>
<object data="file:///etc/hostname"></object>
<img src="{canary.url("/img.png")}"><link rel="stylesheet" href="{canary.url("/a.css")}">
<img src="http://169.254.169.254/latest/meta-data/"><img src="http://10.0.0.1/x.png">
<img src="http://[::1]:{canary.port}/v6.png">
<script>
fetch("{canary.url("/fetch")}").catch(() => 0);
navigator.sendBeacon("{canary.url("/beacon")}", "x");
new EventSource("{canary.url("/events")}");
location.href = "file:///etc/passwd";
</script>"""
    job = job_of(
        daemon,
        key,
        {
            "in": {
                "operation": "import/base64",
                "file": base64.b64encode(page.encode()).decode(),
                "filename": "hostile.html",
            },
            "op": {"operation": "capture-website", "input": "in", "wait_until": "networkidle0"},
            "out": {"operation": "export/url", "input": "op"},
        },
    )
    done = wait_job(daemon, key, job["id"])
    assert done["status"] == "finished", done
    pdf = requests.get(named(done, "out")["result"]["files"][0]["url"], timeout=30).content
    text = subprocess.run(
        ["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True
    ).stdout.decode()
    assert "Visible text" in text and "root:" not in text, text
    assert canary.hits == []
    refused = named(done, "op")["result"]["capture"]
    assert refused["refused_count"] >= 4, refused
