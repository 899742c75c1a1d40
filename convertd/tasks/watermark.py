"""The watermark operation: text, or another task's image, onto the pages of a PDF or onto an
image.

The text is drawn as text, never read as markup: on PDF pages it is a text object in Helvetica
(the PDF standard font every reader has; characters outside Windows-1252 become "?"), stamped
above the page with pypdf; on images it is drawn with DejaVu Sans by Pillow. An image watermark
(watermark_image.py) is an image XObject on PDF pages and composited by Pillow onto images.
Position (3 x 3 grid and margins), size, colour, opacity, rotation and, for PDFs, which pages,
are CloudConvert's parameters.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pypdf
from PIL import Image, ImageColor, ImageDraw, ImageFont, JpegImagePlugin, UnidentifiedImageError
from pypdf.generic import (
    DecodedStreamObject,
    DictionaryObject,
    FloatObject,
    NameObject,
)

from convertd.converters.sniff import sniff_file
from convertd.files import safe_filename
from convertd.tasks.operations import TaskFailed
from convertd.tasks.watermark_image import (
    image_label,
    image_matrix,
    open_stamp,
    pdf_image,
    stamp_size,
    turned,
)

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
HELVETICA_WIDTH = 0.55  # an average glyph's width, in ems, to place the text
MAX_PAGES = 5000
PICTURES = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP", "tiff": "TIFF", "bmp": "BMP"}
# The modes a marked image keeps, by format; any other is written as RGBA or RGB, as before.
KEPT_MODES = {
    "PNG": ("RGB", "RGBA", "L", "LA"),
    "JPEG": ("RGB", "L"),
    "WEBP": ("RGB", "RGBA"),
    "TIFF": ("RGB", "RGBA", "L", "LA"),
    "BMP": ("RGB", "L"),
}


def _colour(payload: dict[str, Any]) -> tuple[int, int, int]:
    try:
        rgb = ImageColor.getrgb(payload.get("font_color", "#000000"))
    except ValueError:
        raise TaskFailed("INVALID_OPTIONS", "font_color must be a colour such as #ff0000") from None
    return rgb[0], rgb[1], rgb[2]


def _place(
    box: tuple[float, float], size: tuple[float, float], payload: dict[str, Any]
) -> tuple[float, float]:
    """The text's top-left corner, from the top-left of a `box`, by the 3 x 3 grid."""
    (width, height), (tw, th) = box, size
    mx, my = payload.get("margin_horizontal", 25), payload.get("margin_vertical", 25)
    x = {"left": mx, "center": (width - tw) / 2, "right": width - tw - mx}
    y = {"top": my, "center": (height - th) / 2, "bottom": height - th - my}
    return (
        x[payload.get("position_horizontal", "center")],
        y[payload.get("position_vertical", "center")],
    )


def _pdf_string(text: str) -> bytes:
    clean = "".join(c if c.isprintable() else " " for c in text)
    raw = clean.encode("cp1252", errors="replace")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def _stamp(writer: pypdf.PdfWriter, page: pypdf.PageObject, payload: dict[str, Any]) -> None:
    box = page.mediabox
    width, height = float(box.width), float(box.height)
    size = float(payload.get("font_size", 40))
    text = payload["text"]
    tw, th = HELVETICA_WIDTH * size * len(text), size
    left, top = _place((width, height), (tw, th), payload)
    angle = math.radians(-float(payload.get("rotation", 0)))  # clockwise, as on images
    cos, sin = math.cos(angle), math.sin(angle)
    # The text turns about its centre: Tm puts its baseline's start where that leaves it.
    cx, cy = float(box.left) + left + tw / 2, float(box.bottom) + height - top - th / 2
    x = cx - (cos * tw / 2 - sin * th / 3)
    y = cy - (sin * tw / 2 + cos * th / 3)
    r, g, b = (c / 255 for c in _colour(payload))
    content = (
        b"q /CvdGS gs %.3f %.3f %.3f rg BT /CvdF %.2f Tf" % (r, g, b, size)
        + b" %.5f %.5f %.5f %.5f %.2f %.2f Tm" % (cos, sin, -sin, cos, x, y)
        + b" (%s) Tj ET Q" % _pdf_string(text)
    )
    font = {
        NameObject("/Type"): NameObject("/Font"),
        NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica"),
        NameObject("/Encoding"): NameObject("/WinAnsiEncoding"),
    }
    _overlay(writer, page, content, "/Font", {"/CvdF": DictionaryObject(font)}, payload)


def _stamp_image(
    writer: pypdf.PdfWriter,
    page: pypdf.PageObject,
    payload: dict[str, Any],
    image: Any,
    native: tuple[int, int],
) -> None:
    """The image XObject `image` (a stamp `native` pixels big) on the page, placed as the grid
    says (in points)."""
    box = page.mediabox
    width, height = float(box.width), float(box.height)
    size = stamp_size(native, payload, (width, height))
    rotation = float(payload.get("rotation", 0))
    around = turned(size, rotation)
    left, top = _place((width, height), around, payload)
    centre = (
        float(box.left) + left + around[0] / 2,
        float(box.bottom) + height - top - around[1] / 2,
    )
    matrix = b" ".join(b"%.5f" % v for v in image_matrix(size, rotation, centre))
    content = b"q /CvdGS gs " + matrix + b" cm /CvdImg Do Q"
    _overlay(writer, page, content, "/XObject", {"/CvdImg": image}, payload)


def _overlay(
    writer: pypdf.PdfWriter,
    page: pypdf.PageObject,
    content: bytes,
    kind: str,
    resources: dict[str, Any],
    payload: dict[str, Any],
) -> None:
    """`content` drawn above the page, with its opacity and the `kind` resources it names."""
    box = page.mediabox
    opacity = payload.get("opacity", 100) / 100
    stream = DecodedStreamObject()
    stream.set_data(content)
    overlay = pypdf.PageObject.create_blank_page(width=float(box.width), height=float(box.height))
    overlay.mediabox = box
    overlay[NameObject("/Resources")] = DictionaryObject(
        {
            NameObject(kind): DictionaryObject(
                {NameObject(name): value for name, value in resources.items()}
            ),
            NameObject("/ExtGState"): DictionaryObject(
                {
                    NameObject("/CvdGS"): DictionaryObject(
                        {
                            NameObject("/ca"): FloatObject(opacity),
                            NameObject("/CA"): FloatObject(opacity),
                        }
                    )
                }
            ),
        }
    )
    overlay[NameObject("/Contents")] = writer._add_object(stream)
    page.merge_page(overlay)


def _pages_wanted(spec: str | None, count: int) -> set[int]:
    """Page indexes from "1-3,5,8-" (checked in parameters.py); None: every page."""
    if not spec:
        return set(range(count))
    wanted: set[int] = set()
    for part in spec.split(","):
        first, dash, last = part.strip().partition("-")
        lo = int(first)
        hi = (int(last) if last else count) if dash else lo
        wanted.update(range(lo - 1, min(hi, count)))
    return wanted


def _pdf(source: Path, dest: Path, payload: dict[str, Any], stamp: Image.Image | None) -> None:
    try:
        reader = pypdf.PdfReader(source)
        if reader.is_encrypted:
            raise TaskFailed("INVALID_INPUT", "The PDF is encrypted: decrypt it first")
        if len(reader.pages) > MAX_PAGES:
            raise TaskFailed("INVALID_INPUT", f"watermark takes PDFs of at most {MAX_PAGES} pages")
        writer = pypdf.PdfWriter(clone_from=reader)
        # The input's version, at least 1.4 (opacity): pypdf would write 1.3.
        writer.pdf_header = max(reader.pdf_header, "%PDF-1.4")
        wanted = _pages_wanted(payload.get("pages"), len(writer.pages))
        if not wanted:
            raise TaskFailed(
                "INVALID_INPUT",
                f"pages {payload.get('pages')} names no page of this {len(writer.pages)}-page PDF",
            )
        image = pdf_image(writer, stamp) if stamp is not None else None
        for n, page in enumerate(writer.pages):
            if n in wanted and stamp is not None:
                _stamp_image(writer, page, payload, image, stamp.size)
            elif n in wanted:
                _stamp(writer, page, payload)
        with dest.open("wb") as fh:
            writer.write(fh)
    except TaskFailed:
        raise
    except (pypdf.errors.PdfReadError, ValueError, KeyError) as exc:
        raise TaskFailed("INVALID_INPUT", f"The PDF could not be read: {exc}") from None


def _picture(
    source: Path,
    dest: Path,
    fmt: str,
    payload: dict[str, Any],
    stamp: Image.Image | None,
    max_pixels: int,
) -> None:
    try:
        with Image.open(source) as opened:
            if opened.width * opened.height > max_pixels:
                raise TaskFailed(
                    "INVALID_INPUT",
                    f"{source.name} has more pixels than this server's limit of {max_pixels:,}",
                )
            mode, base = opened.mode, opened.convert("RGBA")
            # What the picture keeps: its JPEG tables (no loss of quality beyond the re-encode
            # a mark makes), EXIF and colour profile.
            kept: dict[str, Any] = {
                k: v for k, v in opened.info.items() if k in ("exif", "icc_profile", "dpi")
            }
            if fmt == "JPEG" and opened.format == "JPEG":
                kept["qtables"] = opened.quantization  # type: ignore[attr-defined]
                if (sampling := JpegImagePlugin.get_sampling(opened)) >= 0:
                    kept["subsampling"] = sampling
            elif fmt in ("JPEG", "WEBP"):
                kept["quality"] = 95
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise TaskFailed("INVALID_INPUT", f"{source.name} could not be read: {exc}") from None
    label = _text_label(payload) if stamp is None else image_label(stamp, payload, base.size)
    x, y = _place(base.size, label.size, payload)
    _composite(base, label, round(x), round(y))
    if mode in KEPT_MODES[fmt]:
        out = base.convert(mode)
    else:
        out = base if fmt in ("PNG", "WEBP", "TIFF") else base.convert("RGB")
    out.save(dest, fmt, **kept)


def _text_label(payload: dict[str, Any]) -> Image.Image:
    font = ImageFont.truetype(FONT, int(payload.get("font_size", 40)))
    text = "".join(c if c.isprintable() else " " for c in payload["text"])
    left, top, right, bottom = (int(v) for v in font.getbbox(text))
    label = Image.new("RGBA", (right - left + 4, bottom - top + 4), (0, 0, 0, 0))
    alpha = round(255 * payload.get("opacity", 100) / 100)
    ImageDraw.Draw(label).text(
        (2 - left, 2 - top), text, font=font, fill=(*_colour(payload), alpha)
    )
    return label.rotate(-float(payload.get("rotation", 0)), expand=True)


def _composite(base: Image.Image, label: Image.Image, x: int, y: int) -> None:
    """`label` over `base` with its top-left at (x, y); what falls outside is cut off (a
    label turned or bigger than the image may start left of or above it)."""
    label = label.crop((max(0, -x), max(0, -y), label.width, label.height))
    base.alpha_composite(label, (max(0, x), max(0, y)))


async def watermark(
    payload: dict[str, Any],
    paths: list[Path],
    staging: Path,
    max_pixels: int,
    images: list[Path] | None = None,
) -> None:
    """The input's one PDF or image, with the text or the image (`images`: the image task's
    files) on it, in `staging`."""
    if len(paths) != 1:
        raise TaskFailed("INVALID_INPUT", f"watermark takes one file; its input has {len(paths)}")
    source = paths[0]
    name = safe_filename(payload.get("filename") or source.name)
    kind = await asyncio.to_thread(sniff_file, source)
    if kind != "pdf" and kind not in PICTURES:
        raise TaskFailed(
            "INVALID_INPUT", f"watermark marks PDFs and images; {source.name} is neither."
        )
    stamp = None
    if "image" in payload:
        stamp = await asyncio.to_thread(open_stamp, images or [], max_pixels)
    try:
        if kind == "pdf":
            await asyncio.to_thread(_pdf, source, staging / name, payload, stamp)
        else:
            fmt = PICTURES[kind or ""]
            await asyncio.to_thread(
                _picture, source, staging / name, fmt, payload, stamp, max_pixels
            )
    finally:
        if stamp is not None:
            stamp.close()
