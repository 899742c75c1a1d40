"""PDF to images, text, Word/ODF and rewritten PDF, checked with Pillow, pypdf and zipfile."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pypdf
import pytest
from PIL import Image

from tests.conftest import CORPUS, Daemon
from tests.inspect_files import check_output, pdf_text

MULTI = CORPUS / "pdf" / "scanned-with-ocr-layer-6p.pdf"
TEXTY = CORPUS / "pdf" / "google-docs-export.pdf"
LOCKED = CORPUS / "pdf" / "encrypted-user-password.pdf"


def source_text(path: Any) -> str:
    return "".join(p.extract_text() or "" for p in pypdf.PdfReader(path).pages)


def test_pages_to_png_zip(daemon: Daemon, key: str) -> None:
    status, out = daemon.convert_and_fetch(
        key, MULTI.read_bytes(), "scan.pdf", "pdf", "png", {"dpi": 50}
    )
    assert out is not None, status
    assert status["file_count"] == 6 and status["file_name"] == "scan.zip"
    assert out.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(out.content)) as zf:
        names = zf.namelist()
        assert names == [f"scan-{n}.png" for n in range(1, 7)]
        with Image.open(io.BytesIO(zf.read(names[0]))) as im:
            assert im.format == "PNG" and min(im.size) > 100


def test_one_page_to_jpg_is_a_single_image(daemon: Daemon, key: str) -> None:
    status, out = daemon.convert_and_fetch(
        key, MULTI.read_bytes(), "scan.pdf", "pdf", "jpg", {"pages": "2", "dpi": 72}
    )
    assert out is not None, status
    assert status["file_count"] == 1 and status["file_name"] == "scan.jpg"
    with Image.open(io.BytesIO(out.content)) as im:
        assert im.format == "JPEG"


def test_pdf_to_text(daemon: Daemon, key: str) -> None:
    status, out = daemon.convert_and_fetch(key, TEXTY.read_bytes(), "g.pdf", "pdf", "txt")
    assert out is not None, status
    words = [w for w in source_text(TEXTY).split() if len(w) > 4][:5]
    assert words and all(w in out.text for w in words)


@pytest.mark.parametrize("fmt", ["docx", "odt"])
def test_pdf_to_office(daemon: Daemon, key: str, fmt: str) -> None:
    status, out = daemon.convert_and_fetch(key, TEXTY.read_bytes(), "g.pdf", "pdf", fmt)
    assert out is not None, status
    text = check_output(fmt, out.content)
    word = next(w for w in source_text(TEXTY).split() if len(w) > 5 and w.isalpha())
    assert word in text


def test_rewrite_pages_and_rotate(daemon: Daemon, key: str) -> None:
    status, out = daemon.convert_and_fetch(
        key, MULTI.read_bytes(), "scan.pdf", "pdf", "pdf", {"pages": "2-3,6", "rotate": 90}
    )
    assert out is not None, status
    reader = pypdf.PdfReader(io.BytesIO(out.content))
    assert len(reader.pages) == 3
    assert all(p.rotation % 360 == 90 for p in reader.pages)


def test_encrypted_pdf(daemon: Daemon, key: str) -> None:
    status, out = daemon.convert_and_fetch(key, LOCKED.read_bytes(), "l.pdf", "pdf", "txt")
    assert out is None and "password" in status["error"]
    status, out = daemon.convert_and_fetch(
        key, LOCKED.read_bytes(), "l.pdf", "pdf", "txt", {"password": "wrong"}
    )
    assert out is None and "does not open" in status["error"]
    for fmt in ("txt", "pdf", "png", "docx"):
        status, out = daemon.convert_and_fetch(
            key, LOCKED.read_bytes(), "l.pdf", "pdf", fmt, {"password": "openpassword"}
        )
        assert out is not None, (fmt, status)
    decrypted = pypdf.PdfReader(
        io.BytesIO(
            daemon.convert_and_fetch(
                key, LOCKED.read_bytes(), "l.pdf", "pdf", "pdf", {"password": "openpassword"}
            )[1].content
        )
    )  # type: ignore[union-attr]
    assert not decrypted.is_encrypted and len(decrypted.pages) >= 1


CORPUS_PDFS = [
    "acroform-fields.pdf",
    "arabic-rtl-rotated-pages.pdf",
    "autocad-plot-rotate270.pdf",
    "broken-xref-missing-trailer.pdf",
    "cmyk-image.pdf",
    "embedded-file-attachment.pdf",
    "outline-bookmarks.pdf",
    "pdfa-ghostscript.pdf",
    "scanned-skewed-no-text.pdf",
]


@pytest.mark.parametrize("name", CORPUS_PDFS)
def test_real_world_pdfs(daemon: Daemon, key: str, name: str) -> None:
    data = (CORPUS / "pdf" / name).read_bytes()
    status, out = daemon.convert_and_fetch(key, data, name, "pdf", "png", {"dpi": 36})
    assert out is not None, status
    status, out = daemon.convert_and_fetch(key, data, name, "pdf", "pdf")
    assert out is not None, status
    assert pdf_text(out.content)[0] >= 1


@pytest.mark.parametrize("data", [b"%PDF-1.4\n garbage", b"not a pdf at all", b""])
def test_broken_pdf_fails_cleanly(daemon: Daemon, key: str, data: bytes) -> None:
    for fmt in ("txt", "png", "pdf"):
        status, out = daemon.convert_and_fetch(key, data, "bad.pdf", "pdf", fmt)
        assert out is None and status["status"] == "failed"
        assert "PDF" in status["error"]


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("txt", {"rotate": 90}),
        ("pdf", {"rotate": 45}),
        ("pdf", {"dpi": 100}),
        ("png", {"dpi": 5000}),
        ("png", {"pages": "x"}),
    ],
)
def test_bad_pdf_options(daemon: Daemon, key: str, fmt: str, options: dict[str, Any]) -> None:
    resp = daemon.convert(key, TEXTY.read_bytes(), "g.pdf", "pdf", fmt, options)
    assert resp.status_code == 400, resp.text


def test_page_out_of_range(daemon: Daemon, key: str) -> None:
    status, out = daemon.convert_and_fetch(
        key, TEXTY.read_bytes(), "g.pdf", "pdf", "txt", {"pages": "99"}
    )
    assert out is None and "does not exist" in status["error"]


def aes256_pdf(password: str) -> bytes:
    """A PDF encrypted with AES-256 (revision 6), as pypdf and Acrobat write them."""
    writer = pypdf.PdfWriter(clone_from=TEXTY)
    writer.encrypt(user_password=password, owner_password=None, algorithm="AES-256")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def test_aes_encrypted_pdfs_need_and_take_a_password(daemon: Daemon, key: str) -> None:
    locked = aes256_pdf("s3cret")
    status, out = daemon.convert_and_fetch(key, locked, "aes.pdf", "pdf", "txt")
    assert out is None and "password" in status["error"], status
    status, out = daemon.convert_and_fetch(
        key, locked, "aes.pdf", "pdf", "txt", {"password": "s3cret"}
    )
    assert out is not None, status
    assert len(out.content.strip()) > 20
