"""Drop folders that run pipelines: a [[watch]] rule's `steps` (the /v2 operations, checked at
start) take each file through one queued job, and the output folder gets the last step's file.
What comes out is opened: pdftotext finds the scanned words, pypdf counts pages."""

from __future__ import annotations

import io
import signal
import subprocess
from pathlib import Path
from typing import Any

import pypdf
import pytest

from tests.daemon import run_cli
from tests.test_drops import FAST, files, wait_for, write_config, write_png
from tests.test_v2_operations import SCANNED_WORDS, scanned_page


def pdf_text(path: Path) -> str:
    done = subprocess.run(
        ["pdftotext", str(path), "-"], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def pipeline_rule(tmp_path: Path, name: str, steps: str, **extra: str) -> tuple[Path, Path, Path]:
    folder, out = tmp_path / name, tmp_path / f"{name}-out"
    folder.mkdir()
    lines = "".join(f"{k} = {v}\n" for k, v in extra.items())
    config = write_config(
        tmp_path / f"{name}.toml",
        f'[[watch]]\nname = "{name}"\nfolder = "{folder}"\noutput = "{out}"\n'
        f"steps = {steps}\n{lines}",
    )
    return folder, out, config


def test_a_scan_becomes_a_searchable_compact_pdf(make_daemon: Any, tmp_path: Path) -> None:
    folder, out, config = pipeline_rule(
        tmp_path,
        "scans",
        '[{operation = "convert", output_format = "pdf"}, {operation = "ocr"}, '
        '{operation = "optimize", profile = "web"}]',
    )
    make_daemon(env={**FAST, "CONVERTD_CONFIG": str(config)})
    (folder / "page-001.png").write_bytes(scanned_page())
    wait_for(lambda: files(out) == ["page-001.pdf"], timeout=180, what="the searchable PDF")
    text = pdf_text(out / "page-001.pdf").lower()
    assert all(word in text for word in SCANNED_WORDS), text
    assert len(pypdf.PdfReader(out / "page-001.pdf").pages) == 1
    wait_for(lambda: files(out / "processed") == ["page-001.png"], what="the original filed")


def test_a_failing_step_sends_the_file_to_failed_naming_the_step(
    make_daemon: Any, tmp_path: Path
) -> None:
    folder, out, config = pipeline_rule(
        tmp_path,
        "marks",
        '[{operation = "convert", output_format = "pdf"}, '
        '{operation = "watermark", text = "<b>DRAFT</b>\\u0007", opacity = 40}]',
    )
    make_daemon(env={**FAST, "CONVERTD_CONFIG": str(config)})
    write_png(folder / "photo.png", (400, 300))
    (folder / "notes.bin").write_bytes(b"\x00\x01 not a picture")
    wait_for(lambda: files(out) == ["photo.pdf"], timeout=120, what="the watermarked PDF")
    text = pdf_text(out / "photo.pdf")
    assert "<b>DRAFT</b>" in text  # drawn as the characters it is, never read as markup
    wait_for(lambda: "notes.bin" in files(out / "failed"), timeout=60, what="the failure")
    report = (out / "failed" / "notes.bin.error.txt").read_text()
    assert "step 1 (convert)" in report, report


@pytest.mark.parametrize(
    ("steps", "named"),
    [
        ('[{operation = "shred"}]', "steps"),
        ('[{operation = "optimize", profile = "tiny"}]', "profile"),
        ('[{operation = "convert", output_format = "xyz"}]', "output_format"),
        ('[{operation = "ocr", input = "x"}]', "input"),
        ("[]", "steps"),
    ],
)
def test_invalid_steps_stop_serve_naming_rule_and_field(
    tmp_path: Path, steps: str, named: str
) -> None:
    _, _, config = pipeline_rule(tmp_path, "bad-steps", steps)
    proc = run_cli(
        tmp_path / "d",
        "serve",
        "--port",
        "0",
        "--config",
        str(config),
        check=False,
        env={"CONVERTD_OFFICE_PREWARM": "false"},
    )
    assert proc.returncode == 2, proc.stderr[-500:]
    assert "bad-steps" in proc.stderr and named in proc.stderr, proc.stderr[-500:]


def test_a_pipeline_killed_mid_step_is_delivered_once_after_restart(
    make_daemon: Any, tmp_path: Path
) -> None:
    folder, out, config = pipeline_rule(
        tmp_path, "killed", '[{operation = "ocr"}, {operation = "optimize"}]'
    )
    env = {**FAST, "CONVERTD_CONFIG": str(config)}
    d = make_daemon(env=env)
    pages = [scanned_page() for _ in range(4)]
    from PIL import Image

    images = [Image.open(io.BytesIO(p)) for p in pages]
    images[0].save(folder / "batch.pdf", save_all=True, append_images=images[1:], resolution=300)

    def ocr_running() -> bool:
        return any(
            "ocrmypdf" in (p / "cmdline").read_bytes().decode(errors="replace")
            for p in Path("/proc").iterdir()
            if p.name.isdigit() and (p / "cmdline").exists()
        )

    wait_for(ocr_running, timeout=60, what="ocrmypdf to start")
    assert d.proc is not None
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    make_daemon(env=env, data_dir=d.data_dir)
    wait_for(lambda: files(out) == ["batch.pdf"], timeout=240, what="the result after restart")
    reader = pypdf.PdfReader(out / "batch.pdf")
    assert len(reader.pages) == 4
    assert "quietly" in pdf_text(out / "batch.pdf").lower()
    wait_for(lambda: files(out / "processed") == ["batch.pdf"], what="the original filed")
    assert files(out) == ["batch.pdf"]  # once, not twice
