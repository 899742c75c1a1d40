"""`convertd convert`: local files through the same converters, no server."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import CORPUS, image_bytes, tool_pids
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


@pytest.mark.parametrize(
    ("inputs", "out", "made"),
    [
        (["a.png"], "newdir/", "newdir/a.webp"),  # a trailing slash: a folder, made
        (["a.png", "b.png"], "small", "small/b.webp"),  # several inputs: a folder, made
        (["a.png"], "deep/er/x.webp", "deep/er/x.webp"),  # a file name, its folders made
        (["a.png"], "x.WEBP", "x.WEBP"),  # the extension agrees, whatever its case
    ],
)
def test_output_folders_are_made(tmp_path: Path, inputs: list[str], out: str, made: str) -> None:
    for name in inputs:
        (tmp_path / name).write_bytes(image_bytes())
    sources = [str(tmp_path / n) for n in inputs]
    proc = convert(tmp_path, *sources, "--to", "webp", "-o", f"{tmp_path}/{out}")
    assert proc.returncode == 0, proc.stderr
    with Image.open(tmp_path / made) as im:
        assert im.format == "WEBP"


def test_an_output_name_that_contradicts_to_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(image_bytes())
    proc = convert(
        tmp_path, str(tmp_path / "a.png"), "--to", "png", "-o", str(tmp_path / "out.webp")
    )
    assert proc.returncode == 2 and "--to is png" in proc.stderr
    assert not (tmp_path / "out.webp").exists()


def test_beside_a_running_daemon_its_libreoffice_is_left_alone(make_daemon: Any) -> None:
    """`convertd convert --data-dir D` used D/office/profile-0, the profile of the daemon's
    instance 0, and once the daemon's warm soffice died after it. The CLI's instance has a
    profile of its own, removed after; the daemon's soffice runs on, the same process."""
    d = make_daemon(env={"CONVERTD_OFFICE_INSTANCES": "1"}, workers=1)
    deadline = time.monotonic() + 60
    while not (before := tool_pids("soffice.bin", d.data_dir / "office")):
        assert time.monotonic() < deadline, d.log()
        time.sleep(0.1)
    doc = d.data_dir.parent / "letter.odt"
    doc.write_bytes((CORPUS / "document" / "libreoffice-writer-odf13.odt").read_bytes())
    for _ in range(2):
        done = run_cli(d.data_dir, "convert", str(doc), "--to", "pdf", check=False, timeout=300)
        assert done.returncode == 0, done.stderr
        assert pdf_text((d.data_dir.parent / "letter.pdf").read_bytes())[0] >= 1
        (d.data_dir.parent / "letter.pdf").unlink()
    time.sleep(1)  # a soffice told to quit by the CLI's takes a moment to go
    (pid,) = before
    assert tool_pids("soffice.bin", d.data_dir / "office") == [pid], d.log()[-2000:]
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        assert fh.read().rpartition(")")[2].split()[0] not in {"Z", "X"}
    assert sorted(p.name for p in (d.data_dir / "office").iterdir()) == ["profile-0"]
    key = d.create_key("office", "--plan", "pro")
    status, out = d.convert_and_fetch(key, doc.read_bytes(), "a.odt", "document", "pdf")
    assert out is not None, status
    assert "waits for it to start" not in d.log(), d.log()[-2000:]
