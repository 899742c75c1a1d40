"""Ebooks: EPUB, HTML, text, Markdown, Word and ODF in; EPUB, PDF, text and HTML out."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from tests.conftest import CORPUS, Daemon
from tests.inspect_files import pdf_text

MARK = "Chapter Grüße marker"
INPUTS = {
    "txt": f"{MARK}\n\nSecond paragraph of the text book.\n".encode(),
    "md": f"# {MARK}\n\nSome *emphasis* here.\n\n# Second chapter\n\nMore text.\n".encode(),
    "html": (
        f"<html><head><title>Web book</title><script>alert(1)</script></head><body>"
        f"<h1>{MARK}</h1><p onclick='x()'>Body text.</p>"
        "<img src='file:///etc/passwd'><img src='http://127.0.0.1:9/x.png'></body></html>"
    ).encode(),
}


def epub_check(data: bytes) -> str:
    """Assert an EPUB is well formed; return the text of its chapters."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        first = zf.infolist()[0]
        assert first.filename == "mimetype" and first.compress_type == zipfile.ZIP_STORED
        assert zf.read("mimetype") == b"application/epub+zip"
        assert b"rootfile" in zf.read("META-INF/container.xml")
        names = zf.namelist()
        chapters = [n for n in names if n.endswith(".xhtml") and "nav" not in n]
        assert chapters
        return "\n".join(zf.read(n).decode("utf-8") for n in chapters)


@pytest.mark.parametrize("src", sorted(INPUTS))
@pytest.mark.parametrize("dst", ["epub", "pdf", "txt", "html"])
def test_made_inputs(daemon: Daemon, key: str, src: str, dst: str) -> None:
    status, out = daemon.convert_and_fetch(key, INPUTS[src], f"book.{src}", "ebook", dst)
    assert out is not None, status
    if dst == "epub":
        text = epub_check(out.content)
    elif dst == "pdf":
        text = pdf_text(out.content)[1]
    else:
        text = out.content.decode("utf-8")
    assert MARK in text, text[:400]
    assert "alert(1)" not in text and "onclick" not in text and "/etc/passwd" not in text
    assert "root:x:0:0" not in text


@pytest.mark.parametrize(
    "name",
    [
        "alice-epub3.epub",
        "epub2-mimetype-not-first.epub",
        "standard-ebooks-multi-metadata.epub",
        "mathml-epub3.epub",
    ],
)
@pytest.mark.parametrize("dst", ["epub", "txt", "html", "pdf"])
def test_real_world_epubs(daemon: Daemon, key: str, name: str, dst: str) -> None:
    data = (CORPUS / "ebook" / name).read_bytes()
    status, out = daemon.convert_and_fetch(key, data, name, "ebook", dst)
    assert out is not None, status
    if dst == "epub":
        assert len(epub_check(out.content)) > 300
    elif dst == "pdf":
        pages, text = pdf_text(out.content)
        assert pages >= 1 and len(text) > 100
    else:
        assert len(out.content) > 200


def test_epub_keeps_images_and_chapters(daemon: Daemon, key: str) -> None:
    data = (CORPUS / "ebook" / "alice-epub3.epub").read_bytes()
    _, out = daemon.convert_and_fetch(key, data, "alice.epub", "ebook", "epub")
    assert out is not None
    with zipfile.ZipFile(io.BytesIO(out.content)) as zf:
        names = zf.namelist()
        assert sum(n.startswith("OEBPS/images/") for n in names) >= 3
        assert sum(n.startswith("OEBPS/chapter-") for n in names) >= 10
        assert b"Alice" in zf.read("OEBPS/content.opf")
    _, html_out = daemon.convert_and_fetch(key, data, "alice.epub", "ebook", "html")
    assert html_out is not None and "data:image/jpeg;base64," in html_out.text


@pytest.mark.parametrize(
    ("name", "dst"),
    [
        ("word2013-numbered-lists.docx", "epub"),
        ("libreoffice-writer-odf13.odt", "epub"),
        ("résumé-ünïcode.docx", "pdf"),
        ("libreoffice-writer-odf13.odt", "txt"),
    ],
)
def test_office_documents_as_ebooks(daemon: Daemon, key: str, name: str, dst: str) -> None:
    data = (CORPUS / "document" / name).read_bytes()
    status, out = daemon.convert_and_fetch(key, data, name, "ebook", dst)
    assert out is not None, status
    if dst == "epub":
        epub_check(out.content)
    elif dst == "pdf":
        assert pdf_text(out.content)[0] >= 1
    else:
        assert out.content.strip()


@pytest.mark.parametrize("data", [b"not a zip", b"PK\x03\x04broken"])
def test_broken_epub_fails_cleanly(daemon: Daemon, key: str, data: bytes) -> None:
    status, out = daemon.convert_and_fetch(key, data, "bad.epub", "ebook", "txt")
    assert out is None and "EPUB" in status["error"]


def test_unsupported_ebook_inputs(daemon: Daemon, key: str) -> None:
    for name in ("fictionbook.fb2", "mobipocket.mobi"):
        resp = daemon.convert(key, (CORPUS / "ebook" / name).read_bytes(), name, "ebook", "epub")
        assert resp.status_code == 400 and "epub" in resp.json()["hint"]


def test_document_html_is_cleaned_before_libreoffice(
    daemon: Daemon, key: str, tmp_path: Path
) -> None:
    page = (
        b"<html><body><p>visible text</p><img src='file:///etc/passwd'>"
        b"<script>document.write('injected')</script></body></html>"
    )
    _, out = daemon.convert_and_fetch(key, page, "page.html", "document", "pdf")
    assert out is not None
    text = pdf_text(out.content)[1]
    assert "visible text" in text and "injected" not in text and "root:" not in text


@pytest.mark.parametrize("dst", ["epub", "pdf", "txt", "html"])
def test_an_empty_text_is_a_blank_book(daemon: Daemon, key: str, dst: str) -> None:
    """An empty .txt sent as an ebook converts as it does as a document (a stranger's was refused
    as 'The input file is empty' while filetype=document made a blank page): one chapter with
    no text, one page as PDF, with only the book's title (the file's name, as for any book)."""
    status, out = daemon.convert_and_fetch(key, b"", "empty.txt", "ebook", dst)
    assert out is not None, status
    if dst == "epub":
        assert "<p>" not in epub_check(out.content)
    elif dst == "pdf":
        assert pdf_text(out.content) == (1, "empty")
    elif dst == "txt":
        assert out.content == b"empty\n"
    else:
        assert "<html" in out.text and "<p>" not in out.text
