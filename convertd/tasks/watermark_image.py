"""An image as a watermark (the watermark operation's `image`): another task's file, opened under
the pixel limit, sized by CloudConvert's image_width, image_height and image_width_percent, then
drawn onto an image (Pillow) or embedded in a PDF (an image XObject, its transparency a soft
mask). Placement by the position grid, opacity and rotation are watermark.py's, as for text.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pypdf
from PIL import Image, UnidentifiedImageError
from pypdf.generic import (
    DecodedStreamObject,
    IndirectObject,
    NameObject,
    NumberObject,
    StreamObject,
)

from convertd.converters.sniff import sniff_file
from convertd.tasks.operations import TaskFailed

STAMPS = {"png": "PNG", "jpg": "JPEG", "gif": "GIF", "webp": "WebP", "tiff": "TIFF", "bmp": "BMP"}
# The longest side of the stamp embedded in a PDF: 8 inches at 300 dpi; a bigger logo only
# makes the file bigger.
PDF_PIXELS = 2400


def open_stamp(paths: list[Path], max_pixels: int) -> Image.Image:
    """Blocking: the image task's one image (its first frame) as RGBA, or INVALID_INPUT. Its
    size is checked from the header, before any pixel is decoded."""
    if len(paths) != 1:
        raise TaskFailed(
            "INVALID_INPUT",
            f"The watermark's image task must bring one image file; it has {len(paths)}",
        )
    path = paths[0]
    if sniff_file(path) not in STAMPS:
        raise TaskFailed(
            "INVALID_INPUT",
            f"The watermark image {path.name} is not an image convertd draws as a watermark "
            f"({', '.join(STAMPS.values())})",
        )
    try:
        with Image.open(path) as opened:
            if opened.width * opened.height > max_pixels:
                raise TaskFailed(
                    "INVALID_INPUT",
                    f"The watermark image {path.name} has {opened.width}x{opened.height} "
                    f"pixels, more than this server's limit of {max_pixels:,}",
                )
            return opened.convert("RGBA")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise TaskFailed(
            "INVALID_INPUT", f"The watermark image {path.name} could not be read: {exc}"
        ) from None


def stamp_size(
    native: tuple[int, int], payload: dict[str, Any], box: tuple[float, float]
) -> tuple[float, float]:
    """The stamp's size in the box's units (pixels on images, points on PDF pages):
    image_width_percent of the box's width; else image_width and/or image_height (a side not
    given keeps the proportions); else its own size in pixels. Then shrunk, proportions kept,
    to fit the box: a stamp is never bigger than what it marks."""
    (sw, sh), (bw, bh) = native, box
    width: float | None = payload.get("image_width")
    height: float | None = payload.get("image_height")
    if (percent := payload.get("image_width_percent")) is not None:
        width, height = bw * percent / 100, None
    if width is not None and height is not None:
        w, h = float(width), float(height)
    elif width is not None:
        w, h = float(width), width * sh / sw
    elif height is not None:
        w, h = height * sw / sh, float(height)
    else:
        w, h = float(sw), float(sh)
    fit = min(1.0, bw / w, bh / h)
    return max(1.0, w * fit), max(1.0, h * fit)


def turned(size: tuple[float, float], rotation: float) -> tuple[float, float]:
    """The size of the box around `size` turned by `rotation` degrees (what the grid places)."""
    angle = math.radians(rotation)
    cos, sin = abs(math.cos(angle)), abs(math.sin(angle))
    w, h = size
    return w * cos + h * sin, w * sin + h * cos


def image_label(stamp: Image.Image, payload: dict[str, Any], box: tuple[int, int]) -> Image.Image:
    """Blocking: the stamp sized for an image of size `box`, at its opacity, turned clockwise
    (expanded, so nothing of it is cut), ready to be composited."""
    w, h = stamp_size(stamp.size, payload, (float(box[0]), float(box[1])))
    label = stamp.resize((round(w), round(h)), Image.Resampling.LANCZOS)
    if (opacity := payload.get("opacity", 100) / 100) < 1:
        label.putalpha(label.getchannel("A").point(lambda a: round(a * opacity)))
    rotation = -float(payload.get("rotation", 0))
    return label.rotate(rotation, Image.Resampling.BICUBIC, expand=True) if rotation else label


def pdf_image(writer: pypdf.PdfWriter, stamp: Image.Image) -> IndirectObject:
    """The stamp as an image XObject of the PDF being written, shared by every page marked:
    its colours in RGB, its transparency (if any) a soft mask."""
    pixels = stamp.copy()
    pixels.thumbnail((PDF_PIXELS, PDF_PIXELS), Image.Resampling.LANCZOS)
    image = _image_stream(pixels.convert("RGB"), "/DeviceRGB")
    alpha = pixels.getchannel("A")
    if alpha.getextrema() != (255, 255):
        image[NameObject("/SMask")] = writer._add_object(_image_stream(alpha, "/DeviceGray"))
    return writer._add_object(image)


def _image_stream(pixels: Image.Image, space: str) -> StreamObject:
    raw = DecodedStreamObject()
    raw.set_data(pixels.tobytes())
    raw.update(
        {
            NameObject("/Type"): NameObject("/XObject"),
            NameObject("/Subtype"): NameObject("/Image"),
            NameObject("/Width"): NumberObject(pixels.width),
            NameObject("/Height"): NumberObject(pixels.height),
            NameObject("/ColorSpace"): NameObject(space),
            NameObject("/BitsPerComponent"): NumberObject(8),
        }
    )
    return raw.flate_encode()


def image_matrix(
    size: tuple[float, float], rotation: float, centre: tuple[float, float]
) -> tuple[float, ...]:
    """The `cm` that draws an image (the unit square) `size` points big, turned `rotation`
    degrees clockwise about its centre, with that centre at `centre` (PDF coordinates)."""
    angle = math.radians(-rotation)
    cos, sin = math.cos(angle), math.sin(angle)
    (w, h), (cx, cy) = size, centre
    return (
        w * cos,
        w * sin,
        -h * sin,
        h * cos,
        cx - (cos * w / 2 - sin * h / 2),
        cy - (sin * w / 2 + cos * h / 2),
    )
