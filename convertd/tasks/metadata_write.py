"""The metadata/write operation: the same file, with the tags it was given written into it.

- PDF: the document information (Title, Author, Subject, Keywords, Creator, Producer,
  CreationDate, ModDate, Trapped, and custom entries named by simple names) set with pypdf; the
  pages and everything else are carried over as they were. An XMP metadata stream, if there
  is one, is left as it is (never parsed). Encrypted PDFs are refused.
- Images (JPEG, PNG, WebP, TIFF): EXIF tags, and PNG text chunks (image_tags.py).
- Audio (mp3, flac, ogg, opus, m4a, wav): tags by FFmpeg, streams copied, not re-encoded,
  through the same demuxer allow-list as conversions, under procs.run.

Names are matched ignoring case (`title` is a PDF's /Title, an image's ImageDescription and
XPTitle, a song's title). A key a format has no place for is not written: `result.skipped`
says why, beside `result.metadata` (what was written) and `result.written_as` (where).
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pypdf
from pypdf.generic import NameObject, TextStringObject

from convertd.converters.base import canonical_format
from convertd.converters.ffmpeg import AUDIO_DEMUXERS, input_args
from convertd.converters.sniff import sniff_file
from convertd.files import extension_of, safe_filename, stem_of
from convertd.tasks import image_tags
from convertd.tasks.image_tags import Skipped, Tags, Written
from convertd.tasks.operations import TaskFailed
from convertd.tasks.tools import ffprobe, keep_result, run_tool

PDF_KEYS = {
    name.lower(): name for name in ("Title", "Author", "Subject", "Keywords", "Creator", "Producer")
}
PDF_DATES = {"creationdate": "CreationDate", "moddate": "ModDate"}
SIMPLE_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
AUDIO = ("mp3", "flac", "ogg", "opus", "m4a", "wav")
# A given key, lowercased -> FFmpeg's name for the tag (each muxer writes it its own way: ID3
# frames, Vorbis comments, MP4 atoms, RIFF INFO).
AUDIO_KEYS = {
    "title": "title",
    "artist": "artist",
    "author": "artist",
    "album": "album",
    "album_artist": "album_artist",
    "albumartist": "album_artist",
    "comment": "comment",
    "description": "description",
    "date": "date",
    "year": "date",
    "genre": "genre",
    "track": "track",
    "tracknumber": "track",
    "disc": "disc",
    "discnumber": "disc",
    "composer": "composer",
    "copyright": "copyright",
    "publisher": "publisher",
    "performer": "performer",
    "language": "language",
    "lyrics": "lyrics",
    "encoded_by": "encoded_by",
    "grouping": "grouping",
}
PICTURES = {"jpg": image_tags.jpeg, "png": image_tags.png, "webp": image_tags.webp}
CAN_WRITE = "PDFs, images (JPEG, PNG, WebP, TIFF) and audio (mp3, flac, ogg, opus, m4a, wav)"


def _pdf_date(text: str) -> str | None:
    """PDF's `D:YYYYMMDDHHmmSS+HH'mm'` from that or ISO 8601."""
    if re.fullmatch(r"D:\d{4}(\d\d){0,5}([Z+-].*)?", text.strip()):
        return text.strip()
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    zone = ""
    if (offset := when.utcoffset()) is not None:
        minutes = int(offset.total_seconds()) // 60
        sign = "+" if minutes >= 0 else "-"
        zone = "Z" if minutes == 0 else f"{sign}{abs(minutes) // 60:02d}'{abs(minutes) % 60:02d}'"
    return "D:" + when.strftime("%Y%m%d%H%M%S") + zone


def _pdf_info(tags: Tags, written: Written, skipped: Skipped) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for key, value in tags.items():
        lower = key.lower()
        if lower in PDF_DATES:
            name = PDF_DATES[lower]
            if (date := _pdf_date(value)) is None:
                skipped[key] = "not a date: give ISO 8601, e.g. 2024-05-01T10:00:00Z"
                continue
            info[f"/{name}"] = TextStringObject(date)
        elif lower == "trapped":
            name = "Trapped"
            if value.strip().lower() not in ("true", "false", "unknown"):
                skipped[key] = "must be True, False or Unknown"
                continue
            info["/Trapped"] = NameObject("/" + value.strip().capitalize())
        elif SIMPLE_NAME.match(key):
            name = PDF_KEYS.get(lower, key)
            info[f"/{name}"] = TextStringObject(value)
        else:
            skipped[key] = "a PDF's own entries are named by letters, digits and _ only"
            continue
        written[key] = [f"PDF /{name}"]
    return info


def _pdf(source: Path, dest: Path, tags: Tags, written: Written, skipped: Skipped) -> None:
    try:
        reader = pypdf.PdfReader(source)
        if reader.is_encrypted:
            raise TaskFailed(
                "INVALID_INPUT",
                "The PDF is encrypted: convertd does not write into encrypted PDFs; decrypt it "
                "first (and encrypt it again after)",
            )
        info = _pdf_info(tags, written, skipped)
        writer = pypdf.PdfWriter(clone_from=reader)
        writer.pdf_header = reader.pdf_header  # pypdf would write 1.3
        writer.add_metadata(info)
        with dest.open("wb") as fh:
            writer.write(fh)
    except TaskFailed:
        raise
    except (pypdf.errors.PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise TaskFailed("INVALID_INPUT", f"The PDF could not be read: {exc}") from None


async def _audio(
    source: Path, dest: Path, tags: Tags, written: Written, skipped: Skipped, timeout: float
) -> None:
    args: list[str] = []
    for key, value in tags.items():
        name = AUDIO_KEYS.get(key.lower()) or (key if SIMPLE_NAME.match(key) else None)
        if name is None:
            skipped[key] = "an audio tag is named by letters, digits and _ only"
            continue
        # Ogg keeps its tags on the stream: the same tags go there too.
        args += ["-metadata", f"{name}={value}", "-metadata:s:a", f"{name}={value}"]
        written[key] = [f"tag {name}"]
    argv = [
        "ffmpeg",
        *("-nostdin", "-v", "error", "-y"),
        *input_args(source, AUDIO_DEMUXERS),
        *("-map", "0", "-c", "copy", "-map_metadata", "0"),
        *args,
        f"file:{dest}",
    ]
    await run_tool(
        argv,
        timeout=timeout,
        name="ffmpeg",
        problem=f"FFmpeg could not write the tags into {source.name}",
        made=dest,
        default="it is not audio FFmpeg can read",
    )
    # Each muxer drops what its format has no place for (MP4 and WAV know a fixed set of
    # tags), silently: what was written is what the file now says.
    what = ("-show_entries", "format_tags:stream_tags")
    found = await ffprobe(dest, AUDIO_DEMUXERS, what, timeout) or {}
    sections = [found.get("format") or {}, *(found.get("streams") or [])]
    names = {str(k).lower() for part in sections for k in (part.get("tags") or {})}
    for key, (where,) in list(written.items()):
        if where.removeprefix("tag ").lower() not in names:
            del written[key]
            skipped[key] = f"{extension_of(dest.name)} files have no place for it"


def _output_name(payload: dict[str, Any], source: Path) -> str:
    """`filename`, or the input's name; in the input's format, whatever `filename` says."""
    name = safe_filename(payload.get("filename") or source.name)
    ext = extension_of(source.name)
    if ext and canonical_format(extension_of(name)) != canonical_format(ext):
        name = f"{stem_of(name)}.{ext}"
    return name


async def metadata_write(
    payload: dict[str, Any], paths: list[Path], staging: Path, timeout: float, max_pixels: int
) -> None:
    """The input's one file with `payload["metadata"]` written into it, in `staging`."""
    if len(paths) != 1:
        raise TaskFailed(
            "INVALID_INPUT", f"metadata/write takes one file; its input has {len(paths)}"
        )
    source = paths[0]
    tags: Tags = payload["metadata"]
    name = _output_name(payload, source)
    out = staging / f".written.{extension_of(name) or 'bin'}"
    written: Written = {}
    skipped: Skipped = {}
    kind = await asyncio.to_thread(sniff_file, source)
    ext = canonical_format(extension_of(source.name))
    if kind == "pdf":
        await asyncio.to_thread(_pdf, source, out, tags, written, skipped)
    elif kind in PICTURES:
        await asyncio.to_thread(PICTURES[kind], source, out, tags, written, skipped)
    elif kind == "tiff":
        await asyncio.to_thread(image_tags.tiff, source, out, tags, written, skipped, max_pixels)
    elif kind in AUDIO or (kind is None and ext in AUDIO) or (kind == "mp4" and ext == "m4a"):
        await _audio(source, out, tags, written, skipped, timeout)
    else:
        raise TaskFailed(
            "INVALID_INPUT", f"metadata/write writes into {CAN_WRITE}; {source.name} is none."
        )
    for key in tags:
        if key not in written:
            skipped.setdefault(key, f"{name} has no place for it")
    if not written:
        await asyncio.to_thread(out.unlink, missing_ok=True)
        reasons = "; ".join(f"{key}: {why}" for key, why in skipped.items())
        raise TaskFailed("INVALID_OPTIONS", f"None of the metadata fits {name}: {reasons}")
    await asyncio.to_thread(out.rename, staging / name)
    result = {
        "metadata": {key: tags[key] for key in written},
        "written_as": written,
        "skipped": {key: why for key, why in skipped.items() if key not in written},
    }
    await asyncio.to_thread(keep_result, staging, result)
