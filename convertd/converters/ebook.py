"""Ebooks: EPUB, HTML, text and Markdown read into one book model, written as EPUB, HTML or text,
or printed to PDF by LibreOffice; Word and ODF documents go through LibreOffice directly."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

import markdown

from convertd.converters import htmlclean
from convertd.converters.base import Converter, Task
from convertd.converters.epub import Book, Chapter, read_epub, write_epub
from convertd.converters.office_export import office_export
from convertd.converters.options import PDF_EXPORT_OPTIONS, check_pdf_export
from convertd.errors import ConversionError
from convertd.office.pool import OfficePool

MAX_TEXT_BYTES = 64 * 1024**2
IMAGE_MIME = {"jpg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp"}
_H1 = re.compile(r"(?=<h1[ >])")
_IMG_SRC = re.compile(r'src="(images/[\w.-]+)"')


def decode_text(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def book_from_html(markup: str, fallback_title: str) -> Book:
    body, title = htmlclean.clean(markup)
    title = title or fallback_title
    # One chapter per top-level heading when the document has several.
    parts = [p for p in _H1.split(body) if p.strip()]
    chapters = []
    for part in parts if len(parts) > 1 else [body]:
        heading = re.search(r"<h1[^>]*>(.*?)</h1>", part, re.S)
        name = htmlclean.to_text(heading.group(1)).strip() if heading else title
        chapters.append(Chapter(title=name or title, body=part))
    if not any(htmlclean.to_text(c.body).strip() for c in chapters):
        raise ConversionError("The input has no text to make a book of")
    return Book(title=title, chapters=chapters)


def book_from_text(text: str, title: str) -> Book:
    # A text with nothing in it (an empty .txt, which the converter takes: empty_inputs) is a
    # book of one blank chapter, as the document converter makes it one blank page.
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    body = "\n".join(
        "<p>" + "<br/>".join(html.escape(line) for line in p.splitlines()) + "</p>"
        for p in paragraphs
    )
    return Book(title=title, chapters=[Chapter(title=title, body=body)])


def load_book(path: Path, fmt: str, title: str) -> Book:
    if fmt == "epub":
        return read_epub(path)
    if path.stat().st_size > MAX_TEXT_BYTES:
        raise ConversionError("The input is too large for an ebook")
    text = decode_text(path.read_bytes())
    if fmt == "txt":
        return book_from_text(text, title)
    if fmt == "md":
        return book_from_html(markdown.markdown(text, extensions=["extra", "sane_lists"]), title)
    return book_from_html(text, title)


def inline_images(book: Book, body: str) -> str:
    def data_uri(match: re.Match[str]) -> str:
        name = match.group(1)
        data = book.images.get(name)
        if data is None:
            return 'src=""'
        mime = IMAGE_MIME.get(name.rsplit(".", 1)[-1], "application/octet-stream")
        return f'src="data:{mime};base64,{base64.b64encode(data).decode()}"'

    return _IMG_SRC.sub(data_uri, body)


def write_html(book: Book, dst: Path, *, embed_images: bool) -> None:
    heading = f"<h1>{html.escape(book.title)}</h1>\n" if book.title else ""
    byline = f"<p><em>{html.escape(book.author)}</em></p>\n" if book.author else ""
    body = heading + byline + book.body_html()
    if embed_images:
        body = inline_images(book, body)
    else:
        for name, data in book.images.items():
            (dst.parent / name).parent.mkdir(parents=True, exist_ok=True)
            (dst.parent / name).write_bytes(data)
    dst.write_text(htmlclean.document(book.title, body, book.language), encoding="utf-8")


class EbookConverter(Converter):
    filetype = "ebook"
    input_formats = ("epub", "html", "txt", "md", "docx", "odt")
    output_formats = ("epub", "pdf", "txt", "html")

    def engine(self, input_format: str | None, output_format: str) -> str:
        # convertd's own EPUB reader and writer, with LibreOffice for what it cannot do.
        if input_format in ("docx", "odt") or output_format == "pdf":
            return "libreoffice"
        return "convertd"

    options = PDF_EXPORT_OPTIONS
    # An empty .txt is an empty book (a blank page as PDF), as for the document converter.
    empty_inputs = ("txt",)

    def __init__(self, office: OfficePool) -> None:
        self.office = office

    def missing_tools(self) -> list[str]:
        return self.office.missing()

    def validate_options(self, raw: dict[str, Any], output_format: str) -> dict[str, Any]:
        return check_pdf_export(super().validate_options(raw, output_format), output_format)

    async def convert(self, task: Task) -> list[Path]:
        out = task.output_path()
        fmt = task.output_format
        if task.input_format in {"docx", "odt"}:
            source = await task.off_loop(task.staged_input, task.input_format)
            await office_export(self.office, task, source, out, family="text", families=("text",))
            return [out]

        book = await task.off_loop(load_book, task.input_path, task.input_format, task.output_stem)
        if fmt == "epub":
            await task.off_loop(write_epub, book, out)
        elif fmt == "txt":
            await task.off_loop(out.write_text, book.text(), "utf-8")
        elif fmt == "html":
            await task.off_loop(write_html, book, out, embed_images=True)
        else:
            source_dir = task.work_dir / "book"
            source_dir.mkdir()
            source = source_dir / "book.html"
            await task.off_loop(write_html, book, source, embed_images=False)
            await office_export(self.office, task, source, out, family="text", input_format="html")
        return [out]
