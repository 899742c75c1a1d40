"""Office documents through the warm LibreOffice pool (or a cold soffice when UNO is missing)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from convertd import htmlclean, procs
from convertd.converters.base import Converter, Option, OptionError, Task, off_loop
from convertd.errors import ConversionError
from convertd.office import OfficePool, Request, write_profile

FAMILY_OF_INPUT = {
    **dict.fromkeys(("docx", "doc", "odt", "rtf", "txt", "html"), "text"),
    **dict.fromkeys(("xlsx", "xls", "ods", "csv"), "sheet"),
    **dict.fromkeys(("pptx", "ppt", "odp"), "slides"),
}
OUTPUTS_OF_FAMILY = {
    "text": ("pdf", "docx", "odt", "rtf", "txt", "html"),
    "sheet": ("xlsx", "ods", "csv", "pdf"),
    "slides": ("pptx", "odp", "pdf"),
}
# (family, output) -> (export filter, filter options)
EXPORT_FILTERS: dict[tuple[str, str], tuple[str, str | None]] = {
    ("text", "pdf"): ("writer_pdf_Export", None),
    ("text", "docx"): ("MS Word 2007 XML", None),
    ("text", "odt"): ("writer8", None),
    ("text", "rtf"): ("Rich Text Format", None),
    ("text", "txt"): ("Text (encoded)", "UTF8"),
    ("text", "html"): ("HTML (StarWriter)", None),
    ("text", "epub"): ("EPUB", None),
    ("sheet", "pdf"): ("calc_pdf_Export", None),
    ("sheet", "xlsx"): ("Calc MS Excel 2007 XML", None),
    ("sheet", "ods"): ("calc8", None),
    # Comma-separated, double-quoted text, UTF-8 (76), first line kept.
    ("sheet", "csv"): ("Text - txt - csv (StarCalc)", "44,34,76,1"),
    ("slides", "pdf"): ("impress_pdf_Export", None),
    ("slides", "pptx"): ("Impress MS PowerPoint 2007 XML", None),
    ("slides", "odp"): ("impress8", None),
}
# Inputs whose format LibreOffice must be told, with load options.
IMPORT_FILTERS: dict[str, tuple[str, str | None]] = {
    "txt": ("Text (encoded)", "UTF8"),
    "csv": ("Text - txt - csv (StarCalc)", "44,34,76,1"),
    "html": ("HTML (StarWriter)", None),  # a Writer document, not Writer/Web
    "pdf": ("writer_pdf_import", None),
}
PAGE_RANGE = re.compile(r"^\s*\d+\s*(-\s*\d+\s*)?(,\s*\d+\s*(-\s*\d+\s*)?)*$")

PDF_OPTIONS = {
    "pages": Option(str, "Pages to put in a PDF output, e.g. 1-3,5"),
    "pdf_a": Option(bool, "Export PDF/A-2b for archiving"),
}


def check_pages(value: str) -> str:
    if not PAGE_RANGE.match(value):
        raise OptionError("option 'pages' must look like 1-3,5")
    return value.replace(" ", "")


def check_pdf_options(options: dict[str, Any], output_format: str) -> dict[str, Any]:
    """`pages` and `pdf_a` shape a PDF export: refused for any other output."""
    if options and output_format != "pdf":
        raise OptionError(f"options {', '.join(options)} apply only to pdf output")
    if "pages" in options:
        options["pages"] = check_pages(options["pages"])
    return options


def pdf_filter_data(options: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if options.get("pages"):
        data["PageRange"] = options["pages"]
    if options.get("pdf_a"):
        data["SelectPdfVersion"] = 2  # PDF/A-2b
    return data


def stage_input(task: Task, extension: str) -> Path:
    """A link to the input inside the job's own directory, named with the real extension, so
    LibreOffice detects the type and never touches the upload area."""
    staged = task.work_dir / f"input.{extension}"
    try:
        os.link(task.input_path, staged)
    except OSError:
        shutil.copyfile(task.input_path, staged)
    return staged


def stage_clean_html(task: Task) -> Path:
    """HTML goes to LibreOffice only after cleaning: it would otherwise fetch every image URL
    and read any local file an <img> names (file:///etc/...) into the output."""
    staged = task.work_dir / "input.html"
    markup = task.input_path.read_bytes().decode("utf-8", errors="replace")
    body, title = htmlclean.clean(markup)
    staged.write_text(htmlclean.document(title or task.output_stem, body), encoding="utf-8")
    return staged


async def office_convert(
    office: OfficePool,
    task: Task,
    source: Path,
    output: Path,
    family: str,
    fmt: str,
    *,
    filter_data: dict[str, Any] | None = None,
    families: tuple[str, ...] | None = None,
    input_format: str | None = None,
) -> dict[str, Any]:
    export, export_options = EXPORT_FILTERS[(family, fmt)]
    import_filter, import_options = IMPORT_FILTERS.get(input_format or "", (None, None))
    timeout = task.limits.job_timeout_seconds
    if office.uno_ready:
        result = await office.convert(
            Request(
                input=source,
                output=output,
                filter=export,
                filter_options=export_options,
                filter_data=filter_data or None,
                import_filter=import_filter,
                import_options=import_options,
                families=families,
            ),
            timeout,
        )
    else:
        result = await cold_convert(
            office,
            task,
            source,
            output,
            export,
            export_options,
            filter_data,
            import_filter,
            import_options,
            timeout,
        )
    if not result.get("ok"):
        if result.get("kind") == "family":
            allowed = ", ".join(OUTPUTS_OF_FAMILY.get(result["family"], ()))
            raise ConversionError(
                f"The input is a {result['family']} document, which cannot become {fmt}"
                + (f"; it can become: {allowed}" if allowed else "")
            )
        raise ConversionError(f"Could not convert this document: {result.get('error')}")
    if not output.exists() or output.stat().st_size == 0:
        raise ConversionError("LibreOffice produced no output for this document")
    return result


async def cold_convert(
    office: OfficePool,
    task: Task,
    source: Path,
    output: Path,
    export: str,
    export_options: str | None,
    filter_data: dict[str, Any] | None,
    import_filter: str | None,
    import_options: str | None,
    timeout: float,
) -> dict[str, Any]:
    """`soffice --convert-to` with a fresh hardened profile: the slow path, used only when the
    UNO bridge is not installed."""
    assert office.soffice is not None
    profile = task.work_dir / "profile"
    await off_loop(write_profile, profile)
    target = f"{output.suffix.lstrip('.')}:{export}"
    if export_options:
        target += f":{export_options}"
    elif filter_data:
        target += ":" + json.dumps(
            {
                k: {"type": "long" if isinstance(v, int) else "string", "value": str(v)}
                for k, v in filter_data.items()
            }
        )
    outdir = task.work_dir / "cold-out"
    outdir.mkdir()
    argv = [
        office.soffice,
        "--headless",
        "--norestore",
        "--nolockcheck",
        "--nologo",
        f"-env:UserInstallation=file://{profile}",
        "--convert-to",
        target,
    ]
    if import_filter:
        argv.append(
            f"--infilter={import_filter}" + (f":{import_options}" if import_options else "")
        )
    result = await procs.run([*argv, "--outdir", str(outdir), str(source)], timeout=timeout)
    produced = list(outdir.iterdir())
    if result.returncode != 0 or not produced:
        return {
            "ok": False,
            "kind": "input",
            "error": procs.last_error_line(result.stderr, "LibreOffice could not open it"),
        }
    os.replace(produced[0], output)
    return {"ok": True}


class DocumentConverter(Converter):
    filetype = "document"
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
    options = PDF_OPTIONS

    def __init__(self, office: OfficePool) -> None:
        self.office = office

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
        return check_pdf_options(super().validate_options(raw, output_format), output_format)

    async def convert(self, task: Task) -> list[Path]:
        family = FAMILY_OF_INPUT[task.input_format]
        if task.input_format == "html":
            source = await off_loop(stage_clean_html, task)
        else:
            source = await off_loop(stage_input, task, task.input_format)
        out = task.output_path()
        await office_convert(
            self.office,
            task,
            source,
            out,
            family,
            task.output_format,
            filter_data=pdf_filter_data(task.options) if task.output_format == "pdf" else None,
            families=(family,),
            input_format=task.input_format,
        )
        return [out]
