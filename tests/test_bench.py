"""The benchmark command runs (quick mode) and writes its table; figures are not asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


# Every group of the bench, in quick mode: ~90 s on an idle 2-core machine, more under load.
@pytest.mark.timeout(360)
def test_bench_quick_runs(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = out.read_text()
    for case in (
        "document:",
        "image:",
        "video:",
        "operations: OCR",
        "operations: merge",
        "PDFs convertd holds",
        "operations: HTML",
        "queue:",
        "control plane:",
        "?wait= requests",
        "cluster: ",  # PostgreSQL is there: packaging/setup installs it, as for the tests
        "cluster queue: claim + finish",
        "small jobs end to end:",
    ):
        assert case in table
