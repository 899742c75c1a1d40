"""Drop folders that run pipelines: a [[watch]] rule's `steps` (the /v2 operations, checked at
start) take each file through one queued job, and the output folder gets the last step's file.
What comes out is opened: pdftotext finds the scanned words, pypdf counts pages."""

from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pypdf
import pytest

from tests.test_drops import FAST, files, serve_refuses, wait_for, write_config, write_png
from tests.test_v2_operations import SCANNED_WORDS, scanned_page


def pdf_text(path: Path) -> str:
    done = subprocess.run(
        ["pdftotext", str(path), "-"], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def ocr_running() -> bool:
    return any(
        "ocrmypdf" in (p / "cmdline").read_bytes().decode(errors="replace")
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and (p / "cmdline").exists()
    )


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
    stderr = serve_refuses(config, tmp_path / "d")
    assert "bad-steps" in stderr and named in stderr, stderr[-500:]


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


def page_png(path: Path, colour: tuple[int, int, int]) -> None:
    from PIL import Image

    Image.new("RGB", (300, 400), colour).save(path, dpi=(100, 100))


def batch_rule(tmp_path: Path, steps: str = "[]") -> tuple[Path, Path, Path]:
    return pipeline_rule(tmp_path, "scanner", steps, merge="true", batch_seconds="2")


def test_files_that_arrive_together_become_one_merged_pdf(make_daemon: Any, tmp_path: Path) -> None:
    folder, out, config = batch_rule(tmp_path, '[{operation = "optimize"}]')
    make_daemon(env={**FAST, "CONVERTD_CONFIG": str(config)})
    # Written out of order, taken in name order; a folder moved in whole is a batch of its own.
    page_png(folder / "page-2.png", (0, 255, 0))
    page_png(folder / "page-1.png", (255, 0, 0))
    page_png(folder / "page-3.png", (0, 0, 255))
    elsewhere = tmp_path / "receipts"
    elsewhere.mkdir()
    for n in range(1, 3):
        page_png(elsewhere / f"r{n}.png", (n * 100, n * 100, n * 100))
    elsewhere.rename(folder / "receipts")
    wait_for(lambda: len(files(out)) == 2, timeout=120, what="two merged PDFs")
    assert "receipts.pdf" in files(out)
    [loose] = [n for n in files(out) if n.startswith("batch-")]
    reader = pypdf.PdfReader(out / loose)
    assert len(reader.pages) == 3
    assert len(pypdf.PdfReader(out / "receipts.pdf").pages) == 2
    # Page order is name order: page 1 is the red one.
    root = tmp_path / "first"
    subprocess.run(
        ["pdftoppm", "-f", "1", "-l", "1", "-r", "10", "-png", "-singlefile", out / loose, root],
        check=True,
    )
    from PIL import Image

    with Image.open(f"{root}.png") as first:
        r, g, b = first.convert("RGB").getpixel((first.width // 2, first.height // 2))
        assert r > 200 and g < 50 and b < 50, (r, g, b)
    wait_for(
        lambda: (
            sorted(p.name for p in (out / "processed").iterdir())
            == sorted([loose[:-4], "receipts"])
        ),
        what="the batches filed whole",
    )
    assert files(out / "processed" / loose[:-4]) == ["page-1.png", "page-2.png", "page-3.png"]
    assert list(folder.iterdir()) == []


def test_a_batch_that_fails_goes_to_failed_whole_with_the_reason(
    make_daemon: Any, tmp_path: Path
) -> None:
    folder, out, config = batch_rule(tmp_path)
    make_daemon(env={**FAST, "CONVERTD_CONFIG": str(config)})
    staged = tmp_path / "mixed"
    staged.mkdir()
    page_png(staged / "a.png", (255, 255, 255))
    (staged / "b.bin").write_bytes(b"\x00\x01 not a page")
    staged.rename(folder / "mixed")
    wait_for(lambda: (out / "failed" / "mixed").is_dir(), timeout=120, what="the failed batch")
    assert files(out / "failed" / "mixed") == ["a.png", "b.bin"]
    report = (out / "failed" / "mixed.error.txt").read_text()
    assert "step 1 (merge)" in report and "b.bin" in report, report
    assert files(out) == ["mixed.error.json", "mixed.error.txt"] or files(out) == []


def test_invalid_batch_rules_are_refused(tmp_path: Path) -> None:
    for extra, named in (
        ({"merge": "true", "originals": '"keep"'}, "originals"),
        ({"merge": "true", "batch_seconds": "0"}, "batch_seconds"),
        ({"merge": '"yes"'}, "merge"),
    ):
        (tmp_path / named).mkdir()
        _, _, config = pipeline_rule(tmp_path / named, "bad-batch", "[]", **extra)
        stderr = serve_refuses(config, tmp_path / named / "d")
        assert named in stderr, stderr[-500:]


def test_a_batch_killed_mid_step_is_delivered_once_after_restart(
    make_daemon: Any, tmp_path: Path
) -> None:
    folder, out, config = batch_rule(tmp_path, '[{operation = "ocr"}]')
    env = {**FAST, "CONVERTD_CONFIG": str(config)}
    d = make_daemon(env=env)
    for n in range(3):
        (folder / f"scan-{n}.png").write_bytes(scanned_page())
    wait_for(ocr_running, timeout=90, what="ocrmypdf to start")
    assert d.proc is not None
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    make_daemon(env=env, data_dir=d.data_dir)
    wait_for(lambda: len(files(out)) == 1, timeout=240, what="the batch after restart")
    [merged] = files(out)
    assert len(pypdf.PdfReader(out / merged).pages) == 3
    assert "quietly" in pdf_text(out / merged).lower()
    wait_for(lambda: (out / "processed").is_dir(), what="the batch filed")
    [filed] = list((out / "processed").iterdir())
    assert files(filed) == ["scan-0.png", "scan-1.png", "scan-2.png"]
    assert len(files(out)) == 1 and list(folder.iterdir()) == []


def test_a_batch_keeps_its_folders_order_and_delete_removes_it_whole(
    make_daemon: Any, tmp_path: Path
) -> None:
    folder, out, config = pipeline_rule(
        tmp_path, "nested", "[]", merge="true", batch_seconds="1", originals='"delete"'
    )
    make_daemon(env={**FAST, "CONVERTD_CONFIG": str(config)})
    staged = tmp_path / "doc"
    (staged / "1").mkdir(parents=True)
    (staged / "2").mkdir()
    page_png(staged / "2" / "page.png", (0, 255, 0))
    page_png(staged / "1" / "page.png", (255, 0, 0))
    staged.rename(folder / "doc")
    wait_for(lambda: files(out) == ["doc.pdf"], timeout=120, what="the merged folder")
    root = tmp_path / "first"
    subprocess.run(
        [
            "pdftoppm",
            "-f",
            "1",
            "-l",
            "1",
            "-r",
            "10",
            "-png",
            "-singlefile",
            out / "doc.pdf",
            root,
        ],
        check=True,
    )
    from PIL import Image

    with Image.open(f"{root}.png") as first:  # 1/page.png comes before 2/page.png
        r, g, _ = first.convert("RGB").getpixel((first.width // 2, first.height // 2))
        assert r > 200 and g < 50, (r, g)
    wait_for(lambda: list(folder.iterdir()) == [], what="the folder taken")
    time.sleep(1)
    assert not (out / "processed").exists()  # deleted, as the rule says


def test_an_interrupted_batch_move_is_finished_from_its_manifest(tmp_path: Path) -> None:
    """The crash states of a batch's move (moved; still in the inbox; copied across
    filesystems but not yet removed; a half copy) all end in one complete batch."""
    from convertd.drops import batch_moves

    inbox, folder = tmp_path / "inbox", tmp_path / "upload" / "batch"
    inbox.mkdir()
    folder.mkdir(parents=True)
    members = []
    for n in range(4):
        path = inbox / f"p{n}.pdf"
        path.write_bytes(f"%PDF-1.4 page {n}".encode())
        st = path.stat()
        members.append(
            {
                "source": str(path),
                "relative": path.name,
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
            }
        )
    (folder / batch_moves.MANIFEST).write_text(json.dumps(members))
    (inbox / "p0.pdf").rename(folder / "p0.pdf")  # moved before the crash
    shutil.copy2(inbox / "p2.pdf", folder / "p2.pdf")  # copied, source not yet removed
    (folder / ".p3.pdf.copying").write_bytes(b"%PDF-1.4 pa")  # a half copy
    assert batch_moves.finish(folder) == 4
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "p0.pdf",
        "p1.pdf",
        "p2.pdf",
        "p3.pdf",
    ]
    assert list(inbox.iterdir()) == []  # nothing left to be taken twice
    assert (folder / "p3.pdf").read_bytes() == b"%PDF-1.4 page 3"


def test_an_html_file_dropped_is_captured_and_marked(make_daemon: Any, tmp_path: Path) -> None:
    folder, out, config = pipeline_rule(
        tmp_path,
        "pages",
        '[{operation = "capture-website", output_format = "pdf"}, '
        '{operation = "watermark", text = "DRAFT", font_size = 30}]',
    )
    make_daemon(env={**FAST, "CONVERTD_CONFIG": str(config)})
    (folder / "minutes.html").write_text(
        "<h1>Meeting minutes</h1><img src='file:///etc/passwd'><p>Agreed.</p>"
    )
    wait_for(lambda: files(out) == ["minutes.pdf"], timeout=120, what="the captured page")
    text = pdf_text(out / "minutes.pdf")
    assert "Meeting minutes" in text and "DRAFT" in text and "root:" not in text, text


def test_a_capture_step_takes_the_file_not_a_url(tmp_path: Path) -> None:
    _, _, config = pipeline_rule(
        tmp_path, "bad-capture", '[{operation = "capture-website", url = "https://example.org/"}]'
    )
    stderr = serve_refuses(config, tmp_path / "d")
    assert "captures the file before it" in stderr, stderr
