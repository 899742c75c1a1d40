"""The benchmark command runs (quick mode) and writes its table; figures are not asserted."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


# Every group of the bench, in quick mode: ~3 min on an idle 2-core machine, more under load.
@pytest.mark.timeout(600)
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
        "two unoservers",  # the bench makes unoserver's venv from PyPI; a row it skipped fails
        "vs vipsthumbnail",
        "vs a bare aiohttp handler",  # wrk's rows
    ):
        assert case in table


# A row of the table before it had the load, repeats and command columns (another branch's, or
# an older run's): a run of other groups keeps it, with those columns filled in.
OLD_TABLE = """# convertd benchmark results

| group | case | convertd | other | ratio (convertd / other) | goal | run |
|---|---|---:|---:|---:|---|---|
| documents | document: 1-page DOCX -> PDF per file (API vs cold soffice) | 46 ms | 759 ms \
| 0.06x (16.6x faster) | ratio <= 0.1 (>= 10x faster) | 2026-11-29 full |
"""


@pytest.mark.timeout(300)
def test_bench_rows_say_load_repeats_and_command(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    out.write_text(OLD_TABLE)
    bench = [sys.executable, str(ROOT / "bench" / "bench.py")]
    proc = subprocess.run(
        [*bench, "--quick", "--only", "images", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = out.read_text().splitlines()
    assert "by `bench/run --quick --only images`;" in lines[2], lines[2]  # the group, not '...'
    assert any(line.endswith("| load | repeats | run | command |") for line in lines)
    table = [line[2:-2].split(" | ") for line in lines if line.startswith("| ")]
    rows = {cells[1]: cells for cells in table if cells[0] in {"documents", "images"}}
    kept = rows["document: 1-page DOCX -> PDF per file (API vs cold soffice)"]
    assert kept[6:] == [
        "not recorded",
        "not recorded",
        "2026-11-29 full",
        "`bench/run --only documents`",
    ]
    images = [cells for case, cells in rows.items() if case.startswith("image: ")]
    assert len(images) >= 5
    for cells in images:
        load, repeats, command = cells[6], cells[7], cells[9]
        assert all(float(x) >= 0 for x in load.split("-")), load  # sampled: numbers, not '-'
        assert "run" in repeats and ("stable" in repeats or "unknown" in repeats), repeats
        assert command == "`bench/run --quick --only images`"


def number(cell: str) -> float:
    found = re.match(r"[\d.]+", cell)
    assert found, cell
    return float(found[0])


# The pipeline group alone (~15 s): a quick run without --out.
@pytest.mark.timeout(300)
def test_bench_quick_run_keeps_to_its_own_file() -> None:
    """A quick run writes bench/results-quick.md (git ignores it) and leaves the full run's
    bench/results.md as it was; the pipeline rows read as the table's header says (other: the
    polling side; ratio: convertd's figure over the other's)."""
    full, quick = ROOT / "bench" / "results.md", ROOT / "bench" / "results-quick.md"
    before = full.read_bytes()
    saved = quick.read_bytes() if quick.exists() else None  # a user's own quick run
    quick.unlink(missing_ok=True)
    try:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "bench.py"), "--quick", "--only", "pipeline"],
            capture_output=True,
            text=True,
            timeout=280,
            cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert full.read_bytes() == before
        text = quick.read_text()
    finally:  # the checkout as it was
        if saved is None:
            quick.unlink(missing_ok=True)
        else:
            quick.write_bytes(saved)
    assert "by `bench/run --quick --only pipeline`;" in text
    rows = [line[2:-2].split(" | ") for line in text.splitlines() if line.startswith("| pipeline")]
    assert [cells[1].split(",")[0] for cells in rows] == [
        "small jobs end to end: 1-byte file -> sha256",
        "small jobs end to end: daemon CPU per job",
        "small jobs end to end: client CPU per job",
    ], rows
    for cells in rows:
        ours, other, ratio = cells[2:5]
        assert ours.split()[1:] == other.split()[1:], cells  # the same unit on both sides
        expected = number(ours) / number(other)  # from rounded figures: within 3 %
        assert abs(number(ratio) - expected) <= 0.03 * expected + 0.005, cells
        assert cells[6] == rows[0][6] and cells[7] == "one measurement", cells  # same runs
