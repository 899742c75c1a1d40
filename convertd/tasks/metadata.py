"""The metadata operation: what a file says about itself, as JSON.

- images: format, size, mode, and EXIF tags by name (Pillow reads them without decoding pixels);
  an XMP packet is reported as its raw text, never parsed (no entity expansion);
- PDFs: `pdfinfo`'s fields (poppler: pages, title, author, producer, encryption, ...);
- audio and video: ffprobe's format and streams, tags (ID3 and others) included, through the
  same demuxer allow-list as conversions.

Tools run under procs.run (niced, killed at the timeout). Every text value is cut at
MAX_VALUE characters and the whole at MAX_TOTAL, so a hostile file cannot make a huge answer.
The result is both `result.metadata` and a `metadata.json` file.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from PIL import ExifTags, Image, UnidentifiedImageError

from convertd.converters.ffmpeg import AUDIO_DEMUXERS, VIDEO_DEMUXERS
from convertd.converters.sniff import sniff_file
from convertd.files import extension_of
from convertd.tasks.operations import TaskFailed
from convertd.tasks.tools import ffprobe, keep_result, run_tool

MAX_VALUE = 4096
MAX_TOTAL = 256 * 1024
NAME = "metadata.json"
MEDIA = ("mp3", "wav", "flac", "ogg", "opus", "m4a", "aac", "mp4", "mov", "mkv", "webm", "avi")


def _short(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        text = "".join(c for c in value if c.isprintable() or c in "\n\t")
        return text[:MAX_VALUE] + ("…" if len(text) > MAX_VALUE else "")
    if isinstance(value, int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(_short(k)): _short(v) for k, v in list(value.items())[:500]}
    if isinstance(value, list | tuple):
        return [_short(v) for v in list(value)[:500]]
    return _short(str(value))


def _exif_text(name: str, value: Any) -> Any:
    """An EXIF value as the text it holds: the Windows XP tags are UTF-16; the text tags are
    ASCII by the standard, UTF-8 in practice (exiftool, phones), which Pillow reads as
    Latin-1."""
    if name.startswith("XP") and isinstance(value, bytes | tuple):
        raw = bytes(value)
        return raw.decode("utf-16-le", "replace").rstrip("\0")
    if isinstance(value, str):
        try:
            return value.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return value
    return value


def _image(path: Path) -> dict[str, Any]:
    try:
        with Image.open(path) as im:
            out: dict[str, Any] = {
                "type": "image",
                "format": (im.format or "").lower(),
                "width": im.width,
                "height": im.height,
                "mode": im.mode,
                "frames": getattr(im, "n_frames", 1),
            }
            exif = im.getexif()
            tags = {ExifTags.TAGS.get(k, str(k)): v for k, v in exif.items()}
            tags.update({ExifTags.TAGS.get(k, str(k)): v for k, v in exif.get_ifd(0x8769).items()})
            out["exif"] = {
                k: _exif_text(k, v) for k, v in tags.items() if k not in ("MakerNote", "ExifOffset")
            }
            xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
            if xmp:
                out["xmp"] = xmp  # as text: never parsed here
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError) as exc:
        raise TaskFailed("INVALID_INPUT", f"{path.name} could not be read: {exc}") from None
    return out


async def _pdf(path: Path, timeout: float) -> dict[str, Any]:
    result = await run_tool(
        ["pdfinfo", "-isodates", path],
        timeout=timeout,
        name="pdfinfo",
        problem=f"{path.name} is not a PDF pdfinfo can read",
        default="pdfinfo could not read it",
        capture_stdout=True,
    )
    info: dict[str, Any] = {"type": "pdf"}
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            info[key.strip().lower().replace(" ", "_")] = value.strip()
    if info.get("pages", "").isdigit():
        info["pages"] = int(info["pages"])
    return info


async def _media(path: Path, timeout: float) -> dict[str, Any]:
    what = ("-show_format", "-show_streams")
    data = await ffprobe(path, (*VIDEO_DEMUXERS, *AUDIO_DEMUXERS), what, timeout)
    if data is None or not data.get("format"):
        raise TaskFailed("INVALID_INPUT", f"{path.name} is not audio or video ffprobe can read")
    fmt = data["format"]
    fmt.pop("filename", None)  # where it lies on this server is nobody's business
    return {"type": "media", "format": fmt, "streams": data.get("streams") or []}


async def read(path: Path, timeout: float) -> dict[str, Any]:
    """What the file says about itself, bounded in size."""
    kind = await asyncio.to_thread(sniff_file, path)
    ext = extension_of(path.name)
    if kind == "pdf":
        info = await _pdf(path, timeout)
    elif kind in MEDIA or ext in MEDIA:
        info = await _media(path, timeout)
    else:
        try:
            info = await asyncio.to_thread(_image, path)
        except TaskFailed:
            info = {"type": "file"}
    info = {"filename": path.name, "size": path.stat().st_size, **_short(info)}
    while len(json.dumps(info)) > MAX_TOTAL and any(isinstance(v, dict) for v in info.values()):
        biggest = max(
            (k for k, v in info.items() if isinstance(v, dict | list)),
            key=lambda k: len(json.dumps(info[k])),
        )
        info[biggest] = f"(left out: more than {MAX_TOTAL // 1024} KiB)"
    return info


async def metadata(paths: list[Path], staging: Path, timeout: float) -> dict[str, Any]:
    if len(paths) != 1:
        raise TaskFailed("INVALID_INPUT", f"metadata reads one file; its input has {len(paths)}")
    info = await read(paths[0], timeout)
    text = json.dumps(info, indent=2, ensure_ascii=False)
    await asyncio.to_thread((staging / NAME).write_text, text, "utf-8")
    await asyncio.to_thread(keep_result, staging, {"metadata": info})
    return info
