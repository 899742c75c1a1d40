"""The merge operation: PDFs and images, in the order given, as one PDF.

Images become one page each (Pillow, under the process-wide pixel limit); the pages are then
joined by qpdf (`qpdf --empty --pages A B ... -- out.pdf`), which copies them without
re-rendering, under the same hardening as every tool (procs.run: niced, its own process group,
killed at the timeout). Office documents are not converted here: a convert task to pdf first
makes them mergeable.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from convertd.files import extension_of, safe_filename, stem_of
from convertd.tasks.operations import TaskFailed
from convertd.tasks.tools import run_tool

QPDF = "qpdf"
MAX_INPUTS = 1000
IMAGES = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff")


def available() -> bool:
    return shutil.which(QPDF) is not None


def _image_page(src: Path, dst: Path) -> None:
    try:
        with Image.open(src) as im:
            page = im.convert("RGB") if im.mode not in ("RGB", "L", "CMYK") else im.copy()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        problem = f"{src.name} is not an image merge can read: {exc}"
        raise TaskFailed("INVALID_INPUT", problem) from None
    with page:
        page.save(dst, "PDF", resolution=float(page.info.get("dpi", (72, 72))[0] or 72))


def _is_pdf(path: Path) -> bool:
    with path.open("rb") as fh:
        return b"%PDF-" in fh.read(1024)


def _pages(paths: list[Path], staging: Path) -> list[Path]:
    """Each input as a PDF, in order: PDFs as they are, images as one-page PDFs."""
    pages: list[Path] = []
    for n, path in enumerate(paths):
        if _is_pdf(path):
            pages.append(path)
        elif extension_of(path.name) in IMAGES:
            page = staging / f".page-{n}.pdf"
            _image_page(path, page)
            pages.append(page)
        else:
            raise TaskFailed(
                "INVALID_INPUT",
                f"merge joins PDFs and images; {path.name} is neither. "
                "Convert it to pdf in a convert task first, and merge that task.",
            )
    return pages


async def merge(payload: dict[str, Any], paths: list[Path], staging: Path, timeout: float) -> None:
    """The inputs' files, in order, as one PDF in `staging`."""
    if not paths:
        raise TaskFailed("INVALID_INPUT", "The merge's inputs have no files")
    if len(paths) > MAX_INPUTS:
        raise TaskFailed(
            "INVALID_INPUT", f"merge takes at most {MAX_INPUTS} files, not {len(paths)}"
        )
    if not available():
        raise TaskFailed(
            "ENGINE_MISSING", "merge needs qpdf, which is not installed on this server"
        )
    name = safe_filename(payload.get("filename") or f"{stem_of(paths[0].name)}.pdf")
    if extension_of(name) != "pdf":
        name = f"{stem_of(name)}.pdf"
    pages = await asyncio.to_thread(_pages, paths, staging)
    out = staging / ".merged.pdf"
    try:
        await run_tool(
            [QPDF, "--empty", "--warning-exit-0", "--pages", *pages, "--", out],
            timeout=timeout,
            name="qpdf",
            problem="The PDFs could not be merged",
            made=out,
            default="qpdf could not read one of the PDFs",
        )
    finally:
        for page in pages:
            if page.parent == staging:
                page.unlink(missing_ok=True)
    await asyncio.to_thread(out.rename, staging / name)
