"""`convertd convert`: local files through the same converters, no server."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from PIL import Image

from tests.conftest import CORPUS, image_bytes
from tests.daemon import run_cli
from tests.inspect_files import pdf_text


def convert(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Outside the virtualenv's PATH, as a user's shell would run it.
    path = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
    return run_cli(tmp_path / "d", "convert", *args, check=False, env=path, timeout=300)


def test_beside_the_input_never_overwriting(tmp_path: Path) -> None:
    src = tmp_path / "photo.png"
    src.write_bytes(image_bytes("PNG", (60, 40)))
    first = convert(tmp_path, str(src), "--to", "webp", "--options", '{"width": 30}')
    assert first.returncode == 0, first.stderr
    second = convert(tmp_path, str(src), "--to", "webp")
    assert second.returncode == 0
    with Image.open(tmp_path / "photo.webp") as im:
        assert im.size == (30, 20)
    with Image.open(tmp_path / "photo (1).webp") as im:
        assert im.size == (60, 40)
    assert "1 converted, 0 failed" in second.stderr


def test_several_inputs_into_a_folder_with_a_failure(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    doc = tmp_path / "letter.odt"
    doc.write_bytes((CORPUS / "document" / "libreoffice-writer-odf13.odt").read_bytes())
    bad = tmp_path / "broken.docx"
    bad.write_bytes(b"PK\x03\x04 not really")
    proc = convert(
        tmp_path,
        str(doc),
        str(bad),
        str(tmp_path / "missing.docx"),
        "--to",
        "pdf",
        "-o",
        str(out),
        "--json",
    )
    assert proc.returncode == 1
    results = json.loads(proc.stdout)
    assert results[0]["output"] == str(out / "letter.pdf") and results[0]["error"] is None
    assert pdf_text((out / "letter.pdf").read_bytes())[0] >= 1
    assert results[1]["error"] and results[2]["error"] == "no such file"


def test_bad_arguments(tmp_path: Path) -> None:
    src = tmp_path / "a.png"
    src.write_bytes(image_bytes())
    assert convert(tmp_path, str(src), "--to", "webp", "--options", "[1]").returncode == 2
    proc = convert(tmp_path, str(src), "--to", "mp3")
    assert proc.returncode == 1 and "cannot make mp3" in proc.stderr
    proc = convert(tmp_path, str(src), "--to", "jpg", "--options", '{"colour": 1}')
    assert proc.returncode == 1 and "bad options" in proc.stderr
