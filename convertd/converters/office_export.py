"""Exports through LibreOffice for the converters that use it (documents, ebooks), with the PDF
options applied the same way as for PDFs: `pages` by the one page rule (a page the document does
not have is an error that says so), `pdf_a` for archiving."""

from __future__ import annotations

import os
from pathlib import Path

import pypdf

from convertd.converters.base import Task
from convertd.converters.options import pages_of
from convertd.converters.pdf import rewrite
from convertd.office.documents import convert_document, pdf_export_data
from convertd.office.pool import OfficePool


def _page_count(path: Path) -> int:
    return len(pypdf.PdfReader(path).pages)


async def office_export(
    office: OfficePool,
    task: Task,
    source: Path,
    out: Path,
    *,
    family: str,
    input_format: str | None = None,
    families: tuple[str, ...] | None = None,
) -> None:
    """Write `source` to `out` as the task's output format."""
    fmt = task.output_format
    pages = task.options.get("pages") if fmt == "pdf" else None
    pdf_a = bool(task.options.get("pdf_a")) and fmt == "pdf"

    async def export(target: Path, page_range: str | None) -> None:
        await convert_document(
            office,
            source,
            target,
            family=family,
            fmt=fmt,
            timeout=task.limits.job_timeout_seconds,
            scratch=task.work_dir,
            input_format=input_format,
            filter_data=pdf_export_data(page_range, pdf_a) if fmt == "pdf" else None,
            families=families,
            password=task.options.get("password"),
        )

    if not pages:
        await export(out, None)
        return
    # LibreOffice's page range ignores pages the document lacks (or exports nothing at all):
    # export it whole, then pick the pages by the rule PDFs use.
    whole = task.work_dir / "whole.pdf"
    await export(whole, None)
    count = await task.off_loop(_page_count, whole)
    picked = pages_of(pages, count)
    if picked == list(range(1, count + 1)):
        os.replace(whole, out)
    elif pdf_a:
        await export(out, pages)  # a PDF/A stays one only if LibreOffice writes the pages
    else:
        await task.off_loop(rewrite, whole, out, {"pages": pages})
