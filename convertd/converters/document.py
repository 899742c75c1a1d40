"""Office documents through the warm LibreOffice pool (or a cold soffice when UNO is missing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convertd.browser.capture import MAX_HTML_BYTES, CaptureFailed, Settings, capture
from convertd.browser.chromium import Chromium
from convertd.converters import htmlclean
from convertd.converters.base import Converter, Task
from convertd.converters.office_export import office_export
from convertd.converters.options import (
    PDF_EXPORT_OPTIONS,
    Option,
    OptionError,
    check_pdf_export,
)
from convertd.errors import ConversionError
from convertd.office.documents import FAMILY_OF_INPUT, OUTPUTS_OF_FAMILY
from convertd.office.pool import OfficePool

ENGINE = Option(
    str,
    "What makes a PDF of HTML: libreoffice (the default; the page's resources are not "
    "fetched) or chromium (a real browser; they are, under the network policy)",
    choices=("libreoffice", "chromium"),
    default="libreoffice",
)


def stage_clean_html(task: Task) -> Path:
    """HTML goes to LibreOffice only after cleaning: it would otherwise fetch every image URL
    and read any local file an <img> names (file:///etc/...) into the output."""
    staged = task.work_dir / "input.html"
    markup = task.input_path.read_bytes().decode("utf-8", errors="replace")
    body, title = htmlclean.clean(markup)
    staged.write_text(htmlclean.document(title or task.output_stem, body), encoding="utf-8")
    return staged


class DocumentConverter(Converter):
    filetype = "document"
    engine_name = "libreoffice"
    input_formats = tuple(FAMILY_OF_INPUT)
    output_formats = (
        "pdf",
        "docx",
        "odt",
        "rtf",
        "txt",
        "html",
        "xlsx",
        "ods",
        "csv",
        "pptx",
        "odp",
    )
    # An empty .txt is an empty document (a blank page as PDF), as any editor opens it.
    empty_inputs = ("txt",)
    options = {
        **PDF_EXPORT_OPTIONS,
        "password": Option(str, "Password of an encrypted (password-protected) document"),
    }

    def __init__(self, office: OfficePool, chromium: Chromium | None = None) -> None:
        self.office = office
        self.chromium = chromium
        if chromium is not None and not chromium.missing():
            # Listed (in /v1/formats too) only where Chromium can run.
            self.options = {**self.options, "engine": ENGINE}

    def missing_tools(self) -> list[str]:
        return self.office.missing()

    def check_pair(self, input_format: str, output_format: str) -> None:
        family = FAMILY_OF_INPUT.get(input_format)
        if family and output_format not in OUTPUTS_OF_FAMILY[family]:
            raise OptionError(
                f"a {input_format} file ({family} document) cannot become {output_format}; "
                f"it can become: {', '.join(OUTPUTS_OF_FAMILY[family])}"
            )

    def validate_options(self, raw: dict[str, Any], output_format: str) -> dict[str, Any]:
        options = check_pdf_export(super().validate_options(raw, output_format), output_format)
        if options.get("engine") == "chromium":
            if output_format != "pdf":
                raise OptionError("option engine 'chromium' makes pdf only (from html)")
            if others := sorted(set(options) - {"engine", "pages"}):
                raise OptionError(f"option {others[0]!r} needs the libreoffice engine")
        return options

    def check_input(self, input_format: str, options: dict[str, Any]) -> None:
        if options.get("engine") == "chromium" and input_format != "html":
            raise OptionError(
                f"option engine 'chromium' reads html; this is {input_format} "
                "(leave engine out for the libreoffice engine)"
            )

    async def convert(self, task: Task) -> list[Path]:
        if task.options.get("engine") == "chromium":
            return [await self._print(task)]
        family = FAMILY_OF_INPUT[task.input_format]
        if task.input_format == "html":
            source = await task.off_loop(stage_clean_html, task)
        else:
            source = await task.off_loop(task.staged_input, task.input_format)
        out = task.output_path()
        await office_export(
            self.office,
            task,
            source,
            out,
            family=family,
            input_format=task.input_format,
            families=(family,),
        )
        return [out]

    async def _print(self, task: Task) -> Path:
        """HTML printed to PDF by the warm Chromium: what the page fetches goes through the
        network policy of import/url (browser/network.py), and no local file is reachable."""
        if task.input_format != "html":
            raise ConversionError(
                f"engine 'chromium' reads html; this is {task.input_format} "
                "(leave engine out for the libreoffice engine)"
            )
        if self.chromium is None or self.chromium.missing():
            raise ConversionError("engine 'chromium' is not available on this server")
        if task.input_path.stat().st_size > MAX_HTML_BYTES:
            raise ConversionError(f"An HTML file for chromium is at most {MAX_HTML_BYTES:,} bytes")
        html = await task.off_loop(task.input_path.read_bytes)
        out = task.output_path()
        settings = Settings(pages=task.options.get("pages"))
        try:
            await capture(self.chromium, settings, out, html, task.limits.max_image_pixels)
        except CaptureFailed as exc:
            raise ConversionError(str(exc)) from None
        return out
