"""The merge operation: PDFs and images, in the order given, as one PDF; or audio, or video,
as one file (merge_media.py).

Images become one page each (Pillow, under the process-wide pixel limit); the pages are then
joined by qpdf (`qpdf --empty --pages A B ... -- out.pdf`), which copies them without
re-rendering, under the same hardening as every tool (procs.run: niced, its own process group,
killed at the timeout). Office documents become PDFs first, as a convert task would make them
(the warm LibreOffice).

Which merge it is comes from `output_format`, or without one from the inputs: PDFs and images
make a PDF, audio or video the first file's format. The kinds are never mixed.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from convertd.converters.audio import AudioConverter
from convertd.converters.sniff import sniff_file
from convertd.converters.video import VideoConverter
from convertd.files import extension_of, safe_filename, stem_of
from convertd.office.documents import FAMILY_OF_INPUT
from convertd.tasks.conversion import OfficePdf
from convertd.tasks.merge_media import merge_media
from convertd.tasks.operations import TaskFailed
from convertd.tasks.tools import run_tool

QPDF = "qpdf"
MAX_INPUTS = 1000
IMAGES = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff")
# Audio or video by its name or its first bytes (ffprobe has the last word, in merge_media).
MEDIA_NAMES = frozenset({*AudioConverter.input_formats, *VideoConverter.input_formats, "oga"})
PAGED = ("a PDF", "an image", "an office document")
MEDIA_SNIFFED = frozenset({"mp3", "ogg", "flac", "wav", "mkv", "mp4", "m4a", "mov", "avi", "amr"})


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
    """Each input as a PDF, in order: PDFs as they are, images as one-page PDFs (office
    documents were made PDFs before)."""
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
                f"merge joins PDFs, images and office documents; {path.name} is none of them. "
                "Convert it to pdf in a convert task first, and merge that task.",
            )
    return pages


def _kind(path: Path) -> str | None:
    """ "a PDF", "an image", "audio or video", or None: what merge takes the file for."""
    if _is_pdf(path):
        return "a PDF"
    ext = extension_of(path.name)
    if ext in IMAGES:
        return "an image"
    if ext in FAMILY_OF_INPUT:
        return "an office document"
    if ext in MEDIA_NAMES or sniff_file(path) in MEDIA_SNIFFED:
        return "audio or video"
    return None


def _which(paths: list[Path], fmt: str | None) -> str:
    """Blocking: "pdf" or "media", the merge these files and `output_format` make; a
    TaskFailed saying why when they do not go together."""
    kinds = [(path.name, _kind(path)) for path in paths]
    media = [name for name, kind in kinds if kind == "audio or video"]
    pages = [(name, kind) for name, kind in kinds if kind in PAGED]
    if media and pages:
        raise TaskFailed(
            "INVALID_INPUT",
            "merge joins files of one kind (PDFs and images into a PDF, or audio, or video); "
            f"{pages[0][0]} is {pages[0][1]} and {media[0]} is audio or video",
        )
    if fmt == "pdf" and media:
        raise TaskFailed(
            "INVALID_INPUT",
            f"output_format pdf joins PDFs and images; {media[0]} is audio or video: give an "
            "audio or video output_format, or none (the first file's format)",
        )
    if fmt not in (None, "pdf") and pages:
        raise TaskFailed(
            "INVALID_INPUT",
            f"output_format {fmt} joins audio or video; {pages[0][0]} is {pages[0][1]}",
        )
    return "media" if fmt not in (None, "pdf") or (media and fmt is None) else "pdf"


async def merge(
    payload: dict[str, Any],
    paths: list[Path],
    staging: Path,
    timeout: float,
    max_seconds: float,
    office_pdf: OfficePdf | None = None,
) -> None:
    """The inputs' files, in order, as one file in `staging`: a PDF, audio or video.
    `max_seconds` bounds the length of merged media; `office_pdf` makes office documents
    PDFs."""
    if not paths:
        raise TaskFailed("INVALID_INPUT", "The merge's inputs have no files")
    if len(paths) > MAX_INPUTS:
        raise TaskFailed(
            "INVALID_INPUT", f"merge takes at most {MAX_INPUTS} files, not {len(paths)}"
        )
    fmt = payload.get("output_format")
    if await asyncio.to_thread(_which, paths, fmt) == "media":
        made = await merge_media(paths, staging, fmt, timeout, max_seconds)
        name = _name(payload, paths, extension_of(made.name))
        await asyncio.to_thread(made.rename, staging / name)
        return
    if not available():
        raise TaskFailed(
            "ENGINE_MISSING", "merge needs qpdf, which is not installed on this server"
        )
    name = _name(payload, paths, "pdf")
    paths = list(paths)
    documents: list[Path] = []  # office documents' PDFs, removed however the merge ends
    out = staging / ".merged.pdf"
    try:
        for n, path in enumerate(paths):
            if (
                office_pdf is not None
                and extension_of(path.name) in FAMILY_OF_INPUT
                and not await asyncio.to_thread(_is_pdf, path)
            ):
                documents.append(await office_pdf(path, staging))
                paths[n] = documents[-1]
        pages = await asyncio.to_thread(_pages, paths, staging)
        await run_tool(
            [QPDF, "--empty", "--warning-exit-0", "--pages", *pages, "--", out],
            timeout=timeout,
            name="qpdf",
            problem="The PDFs could not be merged",
            made=out,
            default="qpdf could not read one of the PDFs",
        )
    finally:
        for page in {*documents, *staging.glob(".page-*.pdf")}:
            page.unlink(missing_ok=True)
    await asyncio.to_thread(out.rename, staging / name)


def _name(payload: dict[str, Any], paths: list[Path], fmt: str) -> str:
    """`filename`, or the first input's stem, with the output format's extension."""
    name = safe_filename(payload.get("filename") or f"{stem_of(paths[0].name)}.{fmt}")
    return name if extension_of(name) == fmt else f"{stem_of(name)}.{fmt}"
