"""Hostile input to the operations beyond conversion (OCR, watermark, metadata, merge): each
ends with a clear failure or a harmless result within its limits, and the package's invariants
(tests/hostile/checks.py: a healthy daemon, no tool left running, memory handed back) hold."""

from __future__ import annotations

import io
import subprocess
import time
from pathlib import Path
from typing import Any

import pypdf
import requests
from PIL import Image, PngImagePlugin

from tests.conftest import Daemon
from tests.hostile.conftest import JOB_TIMEOUT
from tests.hostile.test_inputs import pixel_bomb_png
from tests.test_drops import FAST, files, wait_for, write_config
from tests.test_v2_api import call, named, wait_job
from tests.test_v2_operations import b64, blank_pdf, one_task


def run_one(d: Daemon, k: str, name: str, data: bytes, operation: str, **params: Any) -> Any:
    return one_task(d, k, b64(name, data), operation, **params)


def test_ocr_of_a_pixel_bomb_is_refused(daemon: Daemon, key: str) -> None:
    bomb = pixel_bomb_png()
    started = time.monotonic()
    job = run_one(daemon, key, "bomb.png", bomb, "ocr")
    assert job["status"] == "error"
    op = named(job, "op")
    assert op["code"] == "INVALID_INPUT", op
    assert time.monotonic() - started < JOB_TIMEOUT  # refused, not timed out
    # Through v1's option too: the image converter refuses it before any OCR.
    status, out = daemon.convert_and_fetch(key, bomb, "bomb.png", "image", "pdf", {"ocr": True})
    assert out is None and "limit" in status["error"]


def test_ocr_of_a_2000_page_pdf_ends_within_the_job_timeout(daemon: Daemon, key: str) -> None:
    writer = pypdf.PdfWriter()
    page = Image.new("L", (850, 1100), 255)
    image_pdf = io.BytesIO()
    page.save(image_pdf, "PDF", resolution=100)
    one = pypdf.PdfReader(io.BytesIO(image_pdf.getvalue())).pages[0]
    for _ in range(2000):
        writer.add_page(one)
    book = io.BytesIO()
    writer.write(book)
    started = time.monotonic()
    job = run_one(daemon, key, "book.pdf", book.getvalue(), "ocr")
    took = time.monotonic() - started
    assert job["status"] == "error", job
    assert named(job, "op")["code"] == "TIMEOUT", named(job, "op")
    assert took < JOB_TIMEOUT + 10, took  # killed at the timeout, tesseract and all


def test_watermark_text_with_markup_and_control_characters(daemon: Daemon, key: str) -> None:
    pdf = blank_pdf((595, 842))
    text = "<script>alert(1)</script> <b>&amp;</b> %PDF ) Tj ET ( \\"
    job = run_one(daemon, key, "a.pdf", pdf, "watermark", text=text, font_size=12)
    assert job["status"] == "finished", job
    files_ = named(job, "out")["result"]["files"]
    out = requests.get(files_[0]["url"], timeout=30).content
    shown = subprocess.run(
        ["pdftotext", "-", "-"], input=out, capture_output=True, check=True
    ).stdout.decode()
    assert "<script>alert(1)</script>" in shown and "%PDF ) Tj ET (" in shown, shown
    assert len(pypdf.PdfReader(io.BytesIO(out)).pages) == 1  # the text did not break out
    control = call(
        daemon,
        key,
        "POST",
        "/v2/jobs",
        json={
            "tasks": {
                "in": b64("a.pdf", pdf),
                "op": {"operation": "watermark", "input": "in", "text": "a\x00b\x1b[31m"},
            }
        },
    )
    # Accepted, and drawn with each control character as a space.
    assert control.status_code == 201, control.text
    done = wait_job(daemon, key, control.json()["data"]["id"])
    assert named(done, "op")["status"] == "finished", done


def test_a_metadata_value_of_10_mb_is_a_short_422(daemon: Daemon, key: str) -> None:
    pdf = blank_pdf((100, 100))
    resp = call(
        daemon,
        key,
        "POST",
        "/v2/jobs",
        json={
            "tasks": {
                "in": b64("a.pdf", pdf),
                "op": {
                    "operation": "metadata/write",
                    "input": "in",
                    "metadata": {"Title": "x" * 10_000_000},
                },
            }
        },
    )
    assert resp.status_code == 422, resp.text[:300]
    assert len(resp.content) < 4096  # the value is not echoed back


def test_an_xmp_packet_with_entity_expansion_is_never_expanded(daemon: Daemon, key: str) -> None:
    laughs = "".join(f'<!ENTITY l{n} "{("&l" + str(n - 1) + ";") * 10}">' for n in range(1, 10))
    bomb = (
        f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY l0 "lol">{laughs}]>'
        "<x:xmpmeta xmlns:x='adobe:ns:meta/'>&l9;</x:xmpmeta>"
    )
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", bomb)
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG", pnginfo=info)
    read = run_one(daemon, key, "bomb.png", png.getvalue(), "metadata")
    assert read["status"] == "finished", read
    assert named(read, "op")["result"]["metadata"]["xmp"] == bomb
    written = run_one(
        daemon, key, "bomb.png", png.getvalue(), "metadata/write", metadata={"Title": "t"}
    )
    assert written["status"] == "finished", written


def test_a_batch_of_1000_files_merges_and_1001_is_refused(make_daemon: Any, tmp_path: Path) -> None:
    folder, out = tmp_path / "pile", tmp_path / "pile-out"
    folder.mkdir()
    config = write_config(
        tmp_path / "pile.toml",
        f'[[watch]]\nname = "pile"\nfolder = "{folder}"\noutput = "{out}"\n'
        "merge = true\nbatch_seconds = 1\n",
    )
    make_daemon(env={**FAST, "CONVERTD_CONFIG": str(config)})
    page = blank_pdf((72, 72))
    for name, count in (("thousand", 1000), ("too-many", 1001)):
        staged = tmp_path / name
        staged.mkdir()
        for n in range(count):
            (staged / f"p{n:04d}.pdf").write_bytes(page)
        staged.rename(folder / name)
    wait_for(lambda: "thousand.pdf" in files(out), timeout=240, what="the merged thousand")
    assert len(pypdf.PdfReader(out / "thousand.pdf").pages) == 1000
    wait_for(lambda: (out / "failed" / "too-many").is_dir(), timeout=240, what="the refusal")
    report = (out / "failed" / "too-many.error.txt").read_text()
    assert "at most 1000" in report, report
    assert len(files(out / "failed" / "too-many")) == 1001  # nothing lost
