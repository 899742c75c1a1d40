"""metadata/write for images: EXIF tags (and PNG text chunks) written without touching pixels.

JPEG, PNG and WebP are rewritten at the level of their containers: the EXIF segment (JPEG
APP1), the eXIf and text chunks (PNG) or the EXIF chunk (WebP) are replaced and every other
byte is copied as it was, so nothing is decoded or re-encoded: no quality is lost, and the
colour profile, XMP and the rest stay. TIFF keeps its tags in the image's own directory, so it
is saved again by Pillow (losslessly, in its own compression), within the pixel limit.

EXIF's text tags are ASCII by the standard; they are written as UTF-8, as exiftool does, with
the Windows tags (XPTitle, XPAuthor, ...: UTF-16) beside them for text that is not ASCII.
The existing EXIF is read with Pillow and kept; an XMP packet is never parsed.
"""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from convertd.tasks.operations import TaskFailed

# A given key, lowercased -> the EXIF tags it is written to (the first: text; the rest: UTF-16).
EXIF_KEYS: dict[str, tuple[int, ...]] = {
    "title": (0x010E, 0x9C9B),
    "description": (0x010E,),
    "imagedescription": (0x010E,),
    "xptitle": (0x9C9B,),
    "author": (0x013B, 0x9C9D),
    "artist": (0x013B, 0x9C9D),
    "xpauthor": (0x9C9D,),
    "copyright": (0x8298,),
    "software": (0x0131,),
    "datetime": (0x0132,),
    "date": (0x0132,),
    "make": (0x010F,),
    "model": (0x0110,),
    "comment": (0x9C9C,),
    "xpcomment": (0x9C9C,),
    "subject": (0x9C9F,),
    "xpsubject": (0x9C9F,),
    "keywords": (0x9C9E,),
    "xpkeywords": (0x9C9E,),
}
TAG_NAMES = {
    0x010E: "ImageDescription",
    0x9C9B: "XPTitle",
    0x013B: "Artist",
    0x9C9D: "XPAuthor",
    0x8298: "Copyright",
    0x0131: "Software",
    0x0132: "DateTime",
    0x010F: "Make",
    0x0110: "Model",
    0x9C9C: "XPComment",
    0x9C9F: "XPSubject",
    0x9C9E: "XPKeywords",
}
XP_TAGS = (0x9C9B, 0x9C9C, 0x9C9D, 0x9C9E, 0x9C9F)
# A given key, lowercased -> PNG's registered text keyword; other keys are kept as given.
PNG_KEYWORDS = {
    "title": "Title",
    "author": "Author",
    "artist": "Author",
    "description": "Description",
    "subject": "Description",
    "copyright": "Copyright",
    "comment": "Comment",
    "software": "Software",
    "source": "Source",
    "disclaimer": "Disclaimer",
    "warning": "Warning",
    "date": "Creation Time",
    "datetime": "Creation Time",
    "creation time": "Creation Time",
}
# The tags that say how a TIFF's pixels are laid out: Pillow writes its own, and an old one
# carried over (a predictor, the strips) would garble the image.
TIFF_LAYOUT = {
    *(254, 255, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 280, 281, 284, 317, 320),
    *(322, 323, 324, 325, 338, 339, 340, 341, 347, 530, 531, 532),
}
MAX_JPEG_EXIF = 0xFFFF - 2  # one APP1 segment's length field
Tags = dict[str, str]
Written = dict[str, list[str]]
Skipped = dict[str, str]


def _exif_date(text: str) -> str | None:
    """EXIF's `YYYY:MM:DD HH:MM:SS` from that or ISO 8601."""
    try:
        return datetime.strptime(text.strip(), "%Y:%m:%d %H:%M:%S").strftime("%Y:%m:%d %H:%M:%S")
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.strip()).strftime("%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None


def exif_with(old: bytes, tags: Tags, written: Written, skipped: Skipped) -> Image.Exif:
    """The EXIF `old` was (bare TIFF, or with its `Exif\\0\\0` header), with the tags set."""
    exif = Image.Exif()
    if old:
        try:
            exif.load(old)
        except (OSError, ValueError, SyntaxError, struct.error):
            exif = Image.Exif()  # unreadable: replaced, as nothing of it can be carried over
    done: dict[int, str] = {}
    for key, value in tags.items():
        targets = EXIF_KEYS.get(key.lower())
        if targets is None:
            continue
        text = value
        if targets[0] == 0x0132:
            if (date := _exif_date(value)) is None:
                skipped[key] = "not a date: give ISO 8601, e.g. 2024-05-01T10:00:00"
                continue
            text = date
        if clash := [done[t] for t in targets if t in done]:
            skipped[key] = f"{TAG_NAMES[targets[0]]} is already set from {clash[0]!r}"
            continue
        for tag in targets:
            if tag in XP_TAGS:
                if tag != targets[0] and text.isascii():
                    continue  # the Windows twin only where ASCII cannot say it
                exif[tag] = text.encode("utf-16-le") + b"\0\0"
            else:
                exif[tag] = text.encode()
            done[tag] = key
            written.setdefault(key, []).append(f"EXIF {TAG_NAMES[tag]}")
    return exif


def _read(fh: BinaryIO, n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise TaskFailed("INVALID_INPUT", "The image ends too soon: it is cut short or damaged")
    return data


def _copy_rest(src: BinaryIO, dst: BinaryIO, n: int | None = None) -> None:
    if n is None:
        shutil.copyfileobj(src, dst, 1 << 20)
        return
    while n > 0:
        data = _read(src, min(n, 1 << 20))
        dst.write(data)
        n -= len(data)


def _jpeg_segments(fh: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """The segments before the image data (marker, whole segment); stops at start-of-scan."""
    if _read(fh, 2) != b"\xff\xd8":
        raise TaskFailed("INVALID_INPUT", "The JPEG does not start as one")
    while True:
        head = _read(fh, 4)
        if head[0] != 0xFF or head[1] == 0xDA:
            fh.seek(-4, io.SEEK_CUR)
            return
        length = int.from_bytes(head[2:], "big")
        yield head[1], head + _read(fh, length - 2)


def jpeg(source: Path, dest: Path, tags: Tags, written: Written, skipped: Skipped) -> None:
    with source.open("rb") as fh:
        segments = list(_jpeg_segments(fh))
        old = next((s[4:] for m, s in segments if m == 0xE1 and s[4:10] == b"Exif\0\0"), b"")
        exif = exif_with(old, tags, written, skipped).tobytes()
        if len(exif) > MAX_JPEG_EXIF:
            raise TaskFailed(
                "INVALID_OPTIONS", "The EXIF would not fit a JPEG's 64 KiB: shorten it"
            )
        kept = [s for m, s in segments if not (m == 0xE1 and s[4:10] == b"Exif\0\0")]
        app0 = [s for s in kept if s[1] == 0xE0]  # JFIF must come first, EXIF right after
        with dest.open("wb") as out:
            out.write(b"\xff\xd8" + b"".join(app0))
            out.write(b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif)
            out.write(b"".join(s for s in kept if s[1] != 0xE0))
            _copy_rest(fh, out)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_keyword(key: str) -> str | None:
    word = PNG_KEYWORDS.get(key.lower(), key)
    ok = 1 <= len(word) <= 79 and word == word.strip() and "  " not in word
    return word if ok and all(32 <= ord(c) <= 255 and ord(c) != 127 for c in word) else None


def _png_text(tags: Tags, written: Written, skipped: Skipped) -> dict[bytes, bytes]:
    """Text chunks: PNG's own keywords, and any key EXIF has no place for, as it is named."""
    chunks: dict[bytes, bytes] = {}
    for key, value in tags.items():
        if key.lower() in EXIF_KEYS and key.lower() not in PNG_KEYWORDS:
            continue
        if (word := _png_keyword(key)) is None:
            skipped[key] = "not a PNG text keyword (1-79 Latin-1 characters)"
            continue
        name = word.encode("latin-1")
        if name in chunks:
            skipped.setdefault(key, f"PNG {word} is already set")
            continue
        try:
            chunks[name] = _chunk(b"tEXt", name + b"\0" + value.encode("latin-1"))
        except UnicodeEncodeError:
            chunks[name] = _chunk(b"iTXt", name + b"\0\0\0\0\0" + value.encode())
        written.setdefault(key, []).append(f"PNG {word}")
    return chunks


def _png_chunks(fh: BinaryIO) -> Iterator[tuple[bytes, int]]:
    """(type, data length) of each chunk; the file is left at the chunk's data."""
    while head := fh.read(8):
        if len(head) != 8:
            raise TaskFailed("INVALID_INPUT", "The PNG ends too soon: it is cut short or damaged")
        length, kind = struct.unpack(">I4s", head)
        yield kind, length
        if kind == b"IEND":
            return


def png(source: Path, dest: Path, tags: Tags, written: Written, skipped: Skipped) -> None:
    with source.open("rb") as fh:
        if fh.read(8) != b"\x89PNG\r\n\x1a\n":
            raise TaskFailed("INVALID_INPUT", "The PNG does not start as one")
        old = b""
        for kind, length in _png_chunks(fh):
            if kind == b"eXIf" and not old:
                old = _read(fh, length)
                fh.seek(4, io.SEEK_CUR)
            else:
                fh.seek(length + 4, io.SEEK_CUR)
        exif = b""
        if old or any(key.lower() in EXIF_KEYS for key in tags):
            exif = exif_with(old, tags, written, skipped).tobytes()
        text = _png_text(tags, written, skipped)
        new = (_chunk(b"eXIf", exif[6:]) if exif else b"") + b"".join(text.values())
        fh.seek(8)
        with dest.open("wb") as out:
            out.write(b"\x89PNG\r\n\x1a\n")
            for kind, length in _png_chunks(fh):
                if kind == b"IDAT" and new:  # eXIf must come before the image data
                    out.write(new)
                    new = b""
                if (kind == b"eXIf" and exif) or (
                    kind in (b"tEXt", b"zTXt", b"iTXt") and _keyword(fh, length) in text
                ):
                    fh.seek(length + 4, io.SEEK_CUR)
                    continue
                out.write(struct.pack(">I4s", length, kind))
                _copy_rest(fh, out, length + 4)
            if new:
                raise TaskFailed("INVALID_INPUT", "The PNG has no image data")


def _keyword(fh: BinaryIO, length: int) -> bytes:
    """A text chunk's keyword, read without moving on."""
    head = fh.read(min(length, 80))
    fh.seek(-len(head), io.SEEK_CUR)
    return head.split(b"\0", 1)[0]


def _riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise TaskFailed("INVALID_INPUT", "The WebP does not start as one")
    chunks, pos = [], 12
    while pos + 8 <= len(data):
        kind, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if pos + 8 + size > len(data):
            raise TaskFailed("INVALID_INPUT", "The WebP ends too soon: it is cut short or damaged")
        chunks.append((kind, data[pos + 8 : pos + 8 + size]))
        pos += 8 + size + (size & 1)
    return chunks


def webp(source: Path, dest: Path, tags: Tags, written: Written, skipped: Skipped) -> None:
    """The EXIF chunk replaced; a simple WebP becomes an extended one (a VP8X header) to say
    it has EXIF. Read whole: WebP is at most 16383 x 16383 pixels."""
    data = source.read_bytes()
    chunks = _riff_chunks(data)
    old = next((body for kind, body in chunks if kind == b"EXIF"), b"")
    exif = exif_with(old, tags, written, skipped).tobytes()[6:]  # WebP's: bare TIFF
    chunks = [(kind, body) for kind, body in chunks if kind != b"EXIF"]
    if not chunks:
        raise TaskFailed("INVALID_INPUT", "The WebP has no image data")
    if chunks[0][0] != b"VP8X":
        try:
            with Image.open(source) as im:
                size, alpha = im.size, im.mode in ("RGBA", "LA", "PA")
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
            raise TaskFailed("INVALID_INPUT", f"The WebP could not be read: {exc}") from None
        canvas = (size[0] - 1).to_bytes(3, "little") + (size[1] - 1).to_bytes(3, "little")
        chunks.insert(0, (b"VP8X", bytes([0x10 if alpha else 0]) + b"\0\0\0" + canvas))
    header = chunks[0][1]
    chunks[0] = (b"VP8X", bytes([header[0] | 0x08]) + header[1:])
    at = next((i for i, (kind, _) in enumerate(chunks) if kind == b"XMP "), len(chunks))
    chunks.insert(at, (b"EXIF", exif))  # after the image, before XMP, as the format orders
    body = b"".join(k + len(b).to_bytes(4, "little") + b + b"\0" * (len(b) & 1) for k, b in chunks)
    dest.write_bytes(b"RIFF" + (len(body) + 4).to_bytes(4, "little") + b"WEBP" + body)


def tiff(
    source: Path, dest: Path, tags: Tags, written: Written, skipped: Skipped, max_pixels: int
) -> None:
    """Saved again by Pillow with the tags in its directory: every page, its compression."""
    try:
        with Image.open(source) as im:
            pages = getattr(im, "n_frames", 1)
            if im.width * im.height * pages > max_pixels:
                raise TaskFailed(
                    "INVALID_INPUT", f"The TIFF has more than max_image_pixels ({max_pixels:,})"
                )
            exif = exif_with(b"", tags, written, skipped)
            for tag, value in im.getexif().items():
                if tag not in TIFF_LAYOUT and tag not in exif:
                    # Pillow reads text as Latin-1: back to the bytes the file had.
                    exif[tag] = (
                        value.encode("latin-1", "replace") if isinstance(value, str) else value
                    )
            compression = im.info.get("compression", "raw")
            im.save(dest, "TIFF", save_all=True, exif=exif, compression=compression)
    except TaskFailed:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise TaskFailed("INVALID_INPUT", f"The TIFF could not be read: {exc}") from None
