"""Open converted files and say what they are: PDFs, OOXML/ODF packages, text formats."""

from __future__ import annotations

import csv
import io
import zipfile

import pypdf

OOXML_PART = {
    "docx": "word/document.xml",
    "xlsx": "xl/workbook.xml",
    "pptx": "ppt/presentation.xml",
}
ODF_MIMETYPE = {
    "odt": "application/vnd.oasis.opendocument.text",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "odp": "application/vnd.oasis.opendocument.presentation",
}


def pdf_text(data: bytes) -> tuple[int, str]:
    reader = pypdf.PdfReader(io.BytesIO(data))
    return len(reader.pages), "\n".join(page.extract_text() or "" for page in reader.pages)


def check_output(fmt: str, data: bytes) -> str:
    """Assert `data` really is a `fmt` file; return its text where there is some."""
    if fmt == "pdf":
        pages, text = pdf_text(data)
        assert pages >= 1
        return text
    if fmt in OOXML_PART:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = zf.namelist()
            assert "[Content_Types].xml" in names and OOXML_PART[fmt] in names
            # Text may sit in any part (shared strings, slides): return them all.
            return "\n".join(zf.read(n).decode("utf-8") for n in names if n.endswith(".xml"))
    if fmt in ODF_MIMETYPE:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            assert zf.namelist()[0] == "mimetype"
            assert zf.read("mimetype").decode() == ODF_MIMETYPE[fmt]
            return zf.read("content.xml").decode("utf-8")
    if fmt == "rtf":
        assert data.startswith(b"{\\rtf")
        return data.decode("latin-1")
    if fmt == "txt":
        return data.decode("utf-8-sig")
    if fmt == "html":
        text = data.decode("utf-8", "replace")
        assert "<html" in text.lower() or "<!doctype html" in text.lower()
        return text
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
        assert rows
        return "\n".join(",".join(r) for r in rows)
    raise AssertionError(f"no check for {fmt}")
