"""Documents through LibreOffice: the filter tables, and one call that converts a file on a warm
instance (or, without `uno`, through a cold `soffice --convert-to`)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from convertd import procs
from convertd.errors import ConversionError
from convertd.office.pool import OfficePool
from convertd.office.profile import write_profile
from convertd.office.protocol import Reply, Request

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


def pdf_export_data(pages: str | None, pdf_a: bool) -> dict[str, Any]:
    """The PDF export filter's data for a page range and PDF/A."""
    data: dict[str, Any] = {}
    if pages:
        data["PageRange"] = pages
    if pdf_a:
        data["SelectPdfVersion"] = 2  # PDF/A-2b
    return data


async def convert_document(
    office: OfficePool,
    source: Path,
    output: Path,
    *,
    family: str,
    fmt: str,
    timeout: float,
    scratch: Path,
    input_format: str | None = None,
    filter_data: dict[str, Any] | None = None,
    families: tuple[str, ...] | None = None,
    password: str | None = None,
) -> Reply:
    """Write `source` as `fmt` to `output` with the export filter of `family`; a document of
    another family than `families` allows, or one LibreOffice cannot open, is a ConversionError.
    `scratch` is the job's own directory (the cold path writes a profile there)."""
    export, export_options = EXPORT_FILTERS[(family, fmt)]
    import_filter, import_options = IMPORT_FILTERS.get(input_format or "", (None, None))
    request = Request(
        input=source,
        output=output,
        filter=export,
        filter_options=export_options,
        filter_data=filter_data or None,
        import_filter=import_filter,
        import_options=import_options,
        families=families,
        password=password,
    )
    if office.uno_ready:
        reply = await office.run(request, timeout)
    elif password:
        raise ConversionError(
            "Opening a password-protected document needs LibreOffice's UNO bridge "
            "(python3-uno), which this server lacks"
        )
    else:
        reply = await _cold_convert(office, request, scratch, timeout)
    if reply.kind == "family":
        allowed = ", ".join(OUTPUTS_OF_FAMILY.get(reply.family or "", ()))
        raise ConversionError(
            f"The input is a {reply.family} document, which cannot become {fmt}"
            + (f"; it can become: {allowed}" if allowed else "")
        )
    if not reply.ok:
        raise ConversionError(f"Could not convert this document: {reply.error}")
    if not output.exists() or output.stat().st_size == 0:
        raise ConversionError("LibreOffice produced no output for this document")
    return reply


async def _cold_convert(
    office: OfficePool, request: Request, scratch: Path, timeout: float
) -> Reply:
    """`soffice --convert-to` with a fresh hardened profile: the slow path, used only when the
    UNO bridge is not installed."""
    assert office.soffice is not None
    profile = scratch / "profile"
    await asyncio.to_thread(write_profile, profile)
    target = f"{request.output.suffix.lstrip('.')}:{request.filter}"
    if request.filter_options:
        target += f":{request.filter_options}"
    elif request.filter_data:
        target += ":" + json.dumps(
            {
                k: {"type": "long" if isinstance(v, int) else "string", "value": str(v)}
                for k, v in request.filter_data.items()
            }
        )
    outdir = scratch / "cold-out"
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
    if request.import_filter:
        options = request.import_options
        argv.append(f"--infilter={request.import_filter}" + (f":{options}" if options else ""))
    result = await procs.run([*argv, "--outdir", str(outdir), str(request.input)], timeout=timeout)
    produced = list(outdir.iterdir())
    if result.returncode != 0 or not produced:
        return Reply(
            "input", error=procs.last_error_line(result.stderr, "LibreOffice could not open it")
        )
    os.replace(produced[0], request.output)
    return Reply("done")
