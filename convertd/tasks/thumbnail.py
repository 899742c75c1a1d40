"""The thumbnail operation: a small picture of the input, as png, jpg or webp.

- an image: its first frame (Pillow, under the process-wide pixel limit);
- a PDF: its first page (pdftoppm);
- a video: the frame at `timestamp` seconds (FFmpeg, with the input hardening conversions use).

The picture is then fitted to `width` x `height` with CloudConvert's `fit`: `max` (inside the
box, never enlarged), `crop` (cover the box, centred), `scale` (exactly the box). Tools run
under procs.run (niced, own process group, killed at the timeout); an office document becomes a
PDF first (the warm LibreOffice), and its first page is the picture.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from convertd.converters.ffmpeg import VIDEO_DEMUXERS, input_args
from convertd.converters.sniff import sniff_file
from convertd.files import extension_of, safe_filename, stem_of
from convertd.office.documents import FAMILY_OF_INPUT
from convertd.tasks.conversion import OfficePdf
from convertd.tasks.operations import TaskFailed
from convertd.tasks.tools import run_tool

FORMATS = ("png", "jpg", "webp")
FITS = ("max", "crop", "scale")
VIDEOS = ("mp4", "mov", "mkv", "webm", "avi", "mpeg", "mpg", "m4v", "flv", "wmv", "ts")
PIL_FORMAT = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
# A PDF page is drawn at most this wide (or tall) before it is fitted: enough for any thumbnail.
PAGE_PIXELS = 2000


async def thumbnail(
    payload: dict[str, Any],
    paths: list[Path],
    staging: Path,
    timeout: float,
    office_pdf: OfficePdf | None = None,
) -> None:
    if len(paths) != 1:
        raise TaskFailed(
            "INVALID_INPUT",
            f"A thumbnail is made of one file; its input has {len(paths)}.",
        )
    source = paths[0]
    fmt = payload["output_format"]
    frame = staging / ".frame.png"
    kind = await asyncio.to_thread(sniff_file, source)
    if kind == "pdf":
        await _pdf_page(source, frame, timeout)
    elif office_pdf is not None and extension_of(source.name) in FAMILY_OF_INPUT:
        pdf = await office_pdf(source, staging)
        try:
            await _pdf_page(pdf, frame, timeout)
        finally:
            pdf.unlink(missing_ok=True)
    elif kind in VIDEOS or extension_of(source.name) in VIDEOS:
        await _video_frame(source, frame, float(payload.get("timestamp", 0)), timeout)
    else:
        frame = source  # an image, or something Pillow will refuse with its reason
    name = safe_filename(payload.get("filename") or f"{stem_of(source.name)}.{fmt}")
    if extension_of(name) != fmt:
        name = f"{stem_of(name)}.{fmt}"
    await asyncio.to_thread(_fit, frame, staging / name, payload)
    if frame != source:
        frame.unlink(missing_ok=True)


async def _pdf_page(source: Path, frame: Path, timeout: float) -> None:
    stem = frame.with_suffix("")
    await run_tool(
        [
            "pdftoppm",
            "-f",
            "1",
            "-l",
            "1",
            "-singlefile",
            "-png",
            "-scale-to",
            str(PAGE_PIXELS),
            source,
            stem,
        ],
        timeout=timeout,
        name="pdftoppm",
        problem="The PDF's first page could not be drawn",
        made=frame,
        default="pdftoppm could not draw the first page",
    )


async def _video_frame(source: Path, frame: Path, at: float, timeout: float) -> None:
    argv = [
        "ffmpeg",
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-ss",
        f"{at:.3f}",
        *input_args(source, VIDEO_DEMUXERS),
        "-frames:v",
        "1",
        "-an",
        "-sn",
        "-dn",
        f"file:{frame}",
    ]
    await run_tool(
        argv,
        timeout=timeout,
        name="ffmpeg",
        problem=f"No frame could be taken at {at:g} s",
        made=frame,
        default="no video frame at that time",
    )


def _fit(frame: Path, dest: Path, payload: dict[str, Any]) -> None:
    width, height, fit = payload.get("width"), payload.get("height"), payload.get("fit", "max")
    try:
        with Image.open(frame) as opened:
            opened.seek(0)
            im = ImageOps.exif_transpose(opened) or opened.copy()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise TaskFailed(
            "INVALID_INPUT",
            f"{frame.name} is not an image, PDF or video a thumbnail can be made of ({exc}). "
            "Convert an office document to pdf in a convert task first.",
        ) from None
    if width or height:
        box = (width or im.width * 100, height or im.height * 100)
        if fit == "crop" and width and height:
            im = ImageOps.fit(im, box)
        elif fit == "scale" and width and height:
            im = im.resize(box)
        else:
            im.thumbnail(box)  # inside the box, never enlarged
    fmt = PIL_FORMAT[extension_of(dest.name)]
    if fmt == "JPEG" and im.mode not in ("RGB", "L"):
        im = im.convert("RGB")
    elif im.mode not in ("RGB", "RGBA", "L", "LA", "P"):
        im = im.convert("RGBA")
    im.save(dest, fmt)
