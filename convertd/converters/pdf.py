"""PDFs: pages to images (poppler's pdftoppm), text (pypdf), Word/ODF (LibreOffice's PDF import),
and rewrites (page selection, rotation, decryption) with pypdf."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pypdf
from pypdf.errors import FileNotDecryptedError, PyPdfError

from convertd import procs
from convertd.converters.base import Converter, Task
from convertd.converters.options import (
    AFTER_OPTIONS,
    Option,
    OptionError,
    check_after,
    check_pages,
    pages_of,
)
from convertd.errors import ConversionError
from convertd.office.documents import convert_document
from convertd.office.pool import OfficePool

RASTER = {"png": "-png", "jpg": "-jpeg"}
MAX_PAGES = 2000
# Anything pypdf raises on a hostile or broken file: its own family and the usual suspects from
# deep inside a parser (bad numbers, missing keys, cycles).
PDF_ERRORS = (
    PyPdfError,
    ValueError,
    KeyError,
    TypeError,
    IndexError,
    AttributeError,
    RecursionError,
    AssertionError,
    OSError,
    EOFError,
    ZeroDivisionError,
)

PDF_OPTIONS = {
    "pages": Option(str, "Pages to use, e.g. 1-3,5 (default: all)", check=check_pages),
    "dpi": Option(int, "Resolution for png/jpg output", 36, 600, default=150),
    "rotate": Option(
        int, "Rotate pages clockwise by 90, 180 or 270 degrees (pdf output)", 0, 270, default=0
    ),
    "password": Option(str, "Password of an encrypted input"),
    **AFTER_OPTIONS,
}


def open_pdf(path: Path, password: str | None) -> pypdf.PdfReader:
    try:
        reader = pypdf.PdfReader(path, strict=False)
        if reader.is_encrypted:
            if not password:
                raise ConversionError(
                    "The PDF is password-protected; send its password in the 'password' option"
                )
            if not reader.decrypt(password):
                raise ConversionError(
                    "The password given in the 'password' option does not open this PDF"
                )
        count = len(reader.pages)
    except ConversionError:
        raise
    except FileNotDecryptedError:
        raise ConversionError(
            "The password given in the 'password' option does not open this PDF"
        ) from None
    except PDF_ERRORS as exc:
        raise ConversionError("Input is not a valid PDF") from exc
    if count == 0:
        raise ConversionError("The PDF has no pages")
    if count > MAX_PAGES:
        raise ConversionError(f"The PDF has {count} pages, more than the limit of {MAX_PAGES}")
    return reader


def extract_text(src: Path, dst: Path, options: dict[str, Any]) -> None:
    reader = open_pdf(src, options.get("password"))
    pages = pages_of(options.get("pages"), len(reader.pages))
    try:
        texts = [reader.pages[n - 1].extract_text() or "" for n in pages]
    except PDF_ERRORS as exc:
        raise ConversionError("Could not read the text of this PDF") from exc
    # A form feed between pages, as pdftotext does, so page boundaries survive.
    dst.write_text("\f".join(texts), encoding="utf-8")


def rewrite(src: Path, dst: Path, options: dict[str, Any]) -> None:
    reader = open_pdf(src, options.get("password"))
    pages = pages_of(options.get("pages"), len(reader.pages))
    writer = pypdf.PdfWriter()
    try:
        for n in pages:
            page = writer.add_page(reader.pages[n - 1])
            if options.get("rotate"):
                page.rotate(options["rotate"])
        if reader.metadata:
            writer.add_metadata({k: str(v) for k, v in reader.metadata.items()})
        writer.compress_identical_objects()
        with dst.open("wb") as fh:
            writer.write(fh)
    except PDF_ERRORS as exc:
        raise ConversionError("Could not rewrite this PDF") from exc


def page_count(src: Path, password: str | None) -> int:
    return len(open_pdf(src, password).pages)


def largest_page_points(src: Path, password: str | None) -> float:
    reader = open_pdf(src, password)
    try:
        return max(float(p.mediabox.width) * float(p.mediabox.height) for p in reader.pages)
    except PDF_ERRORS as exc:
        raise ConversionError("Input is not a valid PDF") from exc


class PdfConverter(Converter):
    filetype = "pdf"
    input_formats = ("pdf",)
    output_formats = ("png", "jpg", "txt", "docx", "odt", "pdf")

    def engine(self, input_format: str | None, output_format: str) -> str:
        if output_format in RASTER:
            return "poppler"
        return "pypdf" if output_format in ("txt", "pdf") else "libreoffice"

    options = PDF_OPTIONS
    tools = ("pdftoppm",)

    def __init__(self, office: OfficePool) -> None:
        self.office = office

    def missing_tools(self) -> list[str]:
        return super().missing_tools() + self.office.missing()

    def validate_options(self, raw: dict[str, Any], output_format: str) -> dict[str, Any]:
        options = super().validate_options(raw, output_format)
        if "rotate" in options and (options["rotate"] % 90 or output_format != "pdf"):
            raise OptionError("option 'rotate' must be 90, 180 or 270, with pdf output")
        if "dpi" in options and output_format not in RASTER:
            raise OptionError("option 'dpi' applies only to png and jpg output")
        if "optimize" in options and output_format != "pdf":
            raise OptionError("option 'optimize' applies only to pdf output of a pdf")
        return check_after(options, output_format)

    async def convert(self, task: Task) -> list[Path]:
        fmt, options = task.output_format, task.options
        if fmt in RASTER:
            return await self._rasterise(task)
        out = task.output_path()
        if fmt == "txt":
            await task.off_loop(extract_text, task.input_path, out, options)
        elif fmt == "pdf":
            await task.off_loop(rewrite, task.input_path, out, options)
        else:
            await self._to_office(task, out)
        return [out]

    async def _to_office(self, task: Task, out: Path) -> None:
        # LibreOffice's PDF import cannot decrypt: hand it a decrypted, page-selected copy.
        source = await task.off_loop(task.staged_input, "pdf")
        if task.options.get("password") or task.options.get("pages"):
            plain = task.work_dir / "decrypted.pdf"
            await task.off_loop(rewrite, source, plain, task.options)
            source = plain
        else:
            await task.off_loop(page_count, source, None)  # a clear error for bad input
        await convert_document(
            self.office,
            source,
            out,
            family="text",
            fmt=task.output_format,
            timeout=task.limits.job_timeout_seconds,
            scratch=task.work_dir,
            input_format="pdf",
        )

    async def _rasterise(self, task: Task) -> list[Path]:
        options = task.options
        password = options.get("password")
        count = await task.off_loop(page_count, task.input_path, password)
        pages = sorted(pages_of(options.get("pages"), count))
        dpi = options.get("dpi") or 150
        area = await task.off_loop(largest_page_points, task.input_path, password)
        pixels = area * (dpi / 72) ** 2
        if pixels > task.limits.max_image_pixels:
            raise ConversionError(
                f"At {dpi} dpi a page would have {pixels:,.0f} pixels, over this server's limit; "
                "ask for a lower dpi"
            )
        prefix = task.work_dir / "page"
        outputs: list[Path] = []
        # One pdftoppm run per contiguous range keeps the call count small for "1-200".
        for first, last in _runs(pages):
            argv = [
                "pdftoppm",
                RASTER[task.output_format],
                "-r",
                str(dpi),
                "-f",
                str(first),
                "-l",
                str(last),
            ]
            if password:
                argv += ["-upw", password]
            result = await procs.run(
                [*argv, "--", task.input_path, prefix], timeout=task.limits.job_timeout_seconds
            )
            if result.returncode != 0:
                detail = procs.last_error_line(result.stderr, "pdftoppm failed")
                raise ConversionError(f"Could not render this PDF: {detail}")
            await task.report_progress(int(100 * last / max(pages)))
        produced = sorted(task.work_dir.glob("page-*"), key=_page_number)
        if len(produced) != len(pages):
            raise ConversionError("Could not render every requested page of this PDF")
        for n, path in zip(pages, produced, strict=True):
            target = task.work_dir / f"{task.output_stem}-{n}.{task.output_format}"
            path.rename(target)
            outputs.append(target)
        return outputs


def _runs(pages: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for n in sorted(pages):
        if runs and n == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs


def _page_number(path: Path) -> int:
    match = re.search(r"-(\d+)\.\w+$", path.name)
    return int(match.group(1)) if match else 0
