"""Raster images through Pillow, with an allow-list of decoders and a pixel budget."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError
from pillow_heif import register_heif_opener

from convertd.converters.base import Converter, Task
from convertd.converters.options import AFTER_OPTIONS, Option, OptionError, check_after
from convertd.errors import ConversionError

# convertd format name -> Pillow plugin name. Only these decoders are ever used on input, so a
# PSD, EPS or FITS file renamed .jpg is refused instead of reaching a riskier parser.
PILLOW_FORMATS = {
    "jpg": "JPEG",
    "png": "PNG",
    "webp": "WEBP",
    "gif": "GIF",
    "bmp": "BMP",
    "tiff": "TIFF",
    "ico": "ICO",
    "pdf": "PDF",
}
# Phones' HEIC/HEIF photos, read through pillow-heif (libheif), which adds Pillow's "HEIF".
register_heif_opener()
READ_ONLY = {"heic": "HEIF", "heif": "HEIF"}
DECODERS = [name for fmt, name in PILLOW_FORMATS.items() if fmt != "pdf"] + ["HEIF"]
# Formats that hold several frames or pages: animations and multi-page TIFFs keep them all.
MULTI_FRAME = {"gif", "webp", "tiff", "pdf"}
MAX_FRAMES = 2000
# All frames together may hold this many times the single-image pixel limit.
FRAME_PIXEL_FACTOR = 4

# Modes each encoder writes faithfully; anything else is converted first.
WRITABLE_MODES = {
    "jpg": {"RGB", "L", "CMYK"},
    "png": {"RGB", "RGBA", "L", "LA", "P", "1", "I;16"},
    "webp": {"RGB", "RGBA"},
    "gif": {"P", "L", "RGB", "RGBA"},
    "bmp": {"RGB", "RGBA", "L", "P", "1"},
    "tiff": {"RGB", "RGBA", "L", "LA", "CMYK", "1", "I;16"},
    "ico": {"RGBA", "RGB"},
    "pdf": {"RGB", "L", "CMYK"},
}
ALPHA_CAPABLE = {"png", "webp", "gif", "tiff", "ico", "bmp"}
ICO_MAX = 256
GPS_IFD = 0x8825  # EXIF's pointer to the GPS tags: latitude, longitude, altitude, time
ICO_SIZES = (16, 32, 48, 64, 128, 256)
HEX_COLOUR = re.compile(r"^#?([0-9a-fA-F]{6})$")


def _parse_colour(value: str) -> tuple[int, int, int]:
    match = HEX_COLOUR.match(value.strip())
    if not match:
        raise OptionError("option 'background' must be a colour such as #ffffff")
    digits = match.group(1)
    return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in {"RGBA", "LA", "PA", "La", "RGBa"} or (
        im.mode == "P" and "transparency" in im.info
    )


def _to_8bit(im: Image.Image) -> Image.Image:
    """Scale 16/32-bit greyscale to 8 bits; a plain convert('L') would clip it to white."""
    if im.mode.startswith("I;16") or im.mode == "I":
        scale = 1 / 256 if im.mode.startswith("I;16") else 1 / 65536
        return im.point(lambda v: v * scale).convert("L")
    if im.mode == "F":
        return im.convert("L")
    return im


def _prepare_mode(im: Image.Image, fmt: str, background: tuple[int, int, int]) -> Image.Image:
    if im.mode in WRITABLE_MODES[fmt] and not (fmt in {"jpg", "pdf"} and _has_alpha(im)):
        return im
    im = _to_8bit(im)
    if _has_alpha(im):
        rgba = im.convert("RGBA")
        if fmt in ALPHA_CAPABLE:
            return rgba
        flat = Image.new("RGB", rgba.size, background)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if fmt == "ico":
        return im.convert("RGBA")
    return im.convert("L" if im.mode in {"L", "1"} and "L" in WRITABLE_MODES[fmt] else "RGB")


def _square_icon(im: Image.Image) -> Image.Image:
    """Icons are square: fit within 256 px and centre on a transparent square."""
    im = im.copy()
    im.thumbnail((ICO_MAX, ICO_MAX), Image.Resampling.LANCZOS)
    side = max(im.size)
    if im.width == im.height:
        return im
    square = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    square.paste(im, ((side - im.width) // 2, (side - im.height) // 2))
    return square


def _target_size(
    size: tuple[int, int], width: int | None, height: int | None, fit: str
) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """(resize to, then crop to) for the requested box; aspect kept unless fit is 'fill'."""
    w, h = size
    if width is None and height is None:
        return size, None
    if width is None or height is None:
        ratio = (width / w) if width is not None else (height or h) / h
        return (max(1, round(w * ratio)), max(1, round(h * ratio))), None
    if fit == "fill":
        return (width, height), None
    if fit == "cover":
        ratio = max(width / w, height / h)
        return (max(1, round(w * ratio)), max(1, round(h * ratio))), (width, height)
    ratio = min(width / w, height / h)  # contain
    if fit == "inside":
        ratio = min(ratio, 1.0)  # as contain, but a smaller image keeps its size
    return (max(1, round(w * ratio)), max(1, round(h * ratio))), None


def _load_frames(
    src: Path, keep_all: bool, max_pixels: int, options: dict[str, Any]
) -> tuple[list[Image.Image], list[int], dict[str, Any], str | None]:
    """Decoded frames (all of them, or the first), their durations, the image info, decoder."""
    try:
        # The file is ours to close, not the image's: a JPEG's one frame is kept as decoded
        # (below), and closing an image would drop its pixels.
        with src.open("rb") as fh:
            opened = Image.open(fh, formats=DECODERS)
            width, height = opened.size
            if width * height > max_pixels:
                raise ConversionError(
                    f"Image is {width}x{height} pixels, more than this server's limit of "
                    f"{max_pixels:,} pixels"
                )
            count = getattr(opened, "n_frames", 1) if keep_all else 1
            if opened.format == "JPEG":
                # Shrink-on-load: the JPEG decoder skips detail a downscale would throw away.
                # A square box keeps the draft large enough whatever the EXIF rotation.
                (w, h), _ = _target_size(
                    opened.size,
                    options.get("width"),
                    options.get("height"),
                    options.get("fit", "contain"),
                )
                side = max(w, h)
                if side < max(width, height) // 2:
                    opened.draft("RGB", (side, side))
            if count > MAX_FRAMES or count * width * height > max_pixels * FRAME_PIXEL_FACTOR:
                raise ConversionError(
                    f"The image has {count} frames of {width}x{height}, more than this server "
                    "decodes; convert it to a single-frame format"
                )
            frames: list[Image.Image] = []
            durations: list[int] = []
            for index in range(count):
                opened.seek(index)
                frame: Image.Image
                if count == 1 and opened.format == "JPEG":
                    # Turned upright in place rather than copied: in the daemon, a copy of a
                    # decoded photo lands in freshly mapped memory, ~3,000 page faults for a
                    # 12 MB image. (JPEG only: its EXIF is all in the info, read without the file.)
                    opened.load()
                    ImageOps.exif_transpose(opened, in_place=True)
                    frame = opened
                else:
                    frame = ImageOps.exif_transpose(opened) if index == 0 else opened.copy()
                    frame = frame or opened.copy()
                    frame.load()
                frames.append(frame)
                durations.append(int(opened.info.get("duration", 100) or 100))
            info = {str(k): v for k, v in opened.info.items()}
            return frames, durations, info, opened.format
    except ConversionError:
        raise
    except Image.DecompressionBombError as exc:
        raise ConversionError(
            f"Image has more pixels than this server's limit of {max_pixels:,} pixels"
        ) from exc
    except UnidentifiedImageError as exc:
        raise ConversionError(
            "Input is not a valid image in a supported format (jpg, png, webp, gif, bmp, tiff, ico)"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ConversionError(f"Input is a damaged or truncated {decoder_name(src)} image") from exc


def _transform(im: Image.Image, fmt: str, options: dict[str, Any], max_pixels: int) -> Image.Image:
    """Resize, crop and convert one frame for the output format."""
    background = _parse_colour(options.get("background", "#ffffff"))
    new_size, crop_to = _target_size(
        im.size, options.get("width"), options.get("height"), options.get("fit", "contain")
    )
    if new_size[0] * new_size[1] > max_pixels:
        raise ConversionError(f"The requested size {new_size[0]}x{new_size[1]} is too large")
    if new_size != im.size:
        im = _to_8bit(im)
        if im.mode == "P":
            im = im.convert("RGBA" if _has_alpha(im) else "RGB")
        im = im.resize(new_size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if crop_to is not None:
        left = (im.width - crop_to[0]) // 2
        top = (im.height - crop_to[1]) // 2
        im = im.crop((left, top, left + crop_to[0], top + crop_to[1]))
    return _prepare_mode(im, fmt, background)


def _pdf_resolution(info: dict[str, Any], scale: float) -> float:
    dpi = info.get("dpi")
    try:
        value = float(dpi[0]) if isinstance(dpi, tuple) else 0.0
    except (TypeError, ValueError):
        value = 0.0
    if not 36 <= value <= 2400:
        value = 72.0  # none said, or nonsense: one pixel a point, as before
    return max(1.0, value * scale)


def convert_image(src: Path, dst: Path, fmt: str, options: dict[str, Any], max_pixels: int) -> None:
    frames, durations, info, decoder = _load_frames(src, fmt in MULTI_FRAME, max_pixels, options)
    source_width = frames[0].width
    frames = [_transform(f, fmt, options, max_pixels) for f in frames]
    im = frames[0]
    params: dict[str, Any] = {}
    quality = options.get("quality")
    if fmt == "jpg":
        params.update(quality=quality or 85, optimize=True, progressive=True)
    elif fmt == "webp":
        params.update(quality=quality or 80, method=4)
    elif fmt == "png":
        params.update(optimize=False, compress_level=6)
    elif fmt == "tiff":
        params.update(compression="tiff_lzw")
    elif fmt == "pdf":
        # A page as large as the picture was meant to be: a 300 dpi A4 scan is an A4 page (and
        # OCR reads its text at its true size), however it was resized.
        params.update(resolution=_pdf_resolution(info, frames[0].width / source_width))
    elif fmt == "ico":
        im = _square_icon(im)
        sizes = [(n, n) for n in ICO_SIZES if n <= im.width]
        params.update(sizes=sizes or [im.size])
    if len(frames) > 1:
        params.update(save_all=True, append_images=frames[1:])
        if fmt in {"gif", "webp"}:
            params.update(duration=durations, loop=info.get("loop", 0))
    if not options.get("strip_metadata", False):
        icc = info.get("icc_profile")
        if icc and fmt in {"jpg", "png", "webp", "tiff"}:
            params["icc_profile"] = icc
        if fmt in {"jpg", "webp", "png"} and decoder in {"JPEG", "WEBP", "PNG", "TIFF", "HEIF"}:
            exif = im.getexif()
            if not options.get("keep_metadata", False):
                # Privacy by default, as for video: where a phone took the photo goes.
                exif.pop(GPS_IFD, None)
            if len(exif):
                params["exif"] = exif
    im.save(dst, format=PILLOW_FORMATS[fmt], **params)


def decoder_name(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    return {"jpeg": "JPG", "tif": "TIFF"}.get(ext, ext.upper() or "image")


class ImageConverter(Converter):
    filetype = "image"
    engine_name = "pillow"
    input_formats = ("jpg", "png", "webp", "gif", "bmp", "tiff", "ico", *READ_ONLY)
    output_formats = ("jpg", "png", "webp", "gif", "bmp", "tiff", "ico", "pdf")
    options = {
        "quality": Option(int, "Encoder quality for jpg and webp (1-100)", 1, 100),
        "width": Option(int, "Output width in pixels; height follows unless given", 1, 20000),
        "height": Option(int, "Output height in pixels; width follows unless given", 1, 20000),
        "fit": Option(
            str,
            "With width and height: contain (fit inside), inside (fit inside, never enlarge), "
            "cover (fill and crop) or fill (stretch)",
            choices=("contain", "inside", "cover", "fill"),
            default="contain",
        ),
        "background": Option(
            str, "Colour behind transparent areas for jpg, e.g. #ffffff", default="#ffffff"
        ),
        "strip_metadata": Option(bool, "Drop EXIF and ICC metadata from the output", default=False),
        "keep_metadata": Option(
            bool, "Keep all EXIF, the GPS location included (dropped by default)", default=False
        ),
        **AFTER_OPTIONS,
    }

    def validate_options(self, raw: dict[str, Any], output_format: str) -> dict[str, Any]:
        options = super().validate_options(raw, output_format)
        if "background" in options:
            _parse_colour(options["background"])
        if options.get("keep_metadata") and options.get("strip_metadata"):
            raise OptionError("give either 'keep_metadata' or 'strip_metadata', not both")
        return check_after(options, output_format)

    async def convert(self, task: Task) -> list[Path]:
        out = task.output_path()
        await task.off_loop(
            convert_image,
            task.input_path,
            out,
            task.output_format,
            task.options,
            task.limits.max_image_pixels,
        )
        return [out]
