"""The parameters of the operations the task engine runs itself (not on the conversion
queue): merge, optimize, thumbnail, watermark, metadata, metadata/write, ocr and
capture-website. Each check returns the stored payload's
fields and leaves its problems on the Check."""

from __future__ import annotations

import re
from typing import Any

from PIL import ImageColor

from convertd.converters.audio import ENCODERS as AUDIO_ENCODERS
from convertd.converters.base import canonical_format
from convertd.converters.options import OPTIMIZE_PROFILES
from convertd.tasks.checking import Check, seconds_of

ENGINE_WORK = (
    "merge",
    "optimize",
    "thumbnail",
    "watermark",
    "metadata",
    "metadata/write",
    "ocr",
    "capture-website",
)
# merge's outputs: one PDF, audio (the formats audio conversion writes) or video.
MERGE_AUDIO = tuple(AUDIO_ENCODERS)
MERGE_VIDEO = ("mp4", "mkv", "webm", "mov")
MERGE_FORMATS = ("pdf", *MERGE_AUDIO, *MERGE_VIDEO)
# Operations whose input is optional: capture-website takes a URL or an HTML file.
INPUT_OPTIONAL = ("capture-website",)
LANGUAGE = re.compile(r"^[a-z]{3}(_[a-z]+)?$")
PAGES = re.compile(r"^\s*[1-9]\d*(-(\d*))?(\s*,\s*[1-9]\d*(-(\d*))?)*\s*$")
# watermark's numbers: (lowest, highest, default)
WATERMARK_NUMBERS = {
    "font_size": (1, 500, 40),
    "opacity": (0, 100, 100),
    "rotation": (-360, 360, 0),
    "margin_vertical": (0, 10000, 25),
    "margin_horizontal": (0, 10000, 25),
}
WATERMARK_CHOICES = {
    "position_vertical": ("center", "top", "bottom"),
    "position_horizontal": ("center", "left", "right"),
    "layer": ("above",),
}
# An image watermark's size: pixels on images, points on PDF pages; or percent of the width.
WATERMARK_IMAGE = {
    "image_width": (1, 20000),
    "image_height": (1, 20000),
    "image_width_percent": (1, 100),
}


def check_work(operation: str, check: Check) -> dict[str, Any]:
    out = {
        "merge": _merge,
        "optimize": _optimize,
        "thumbnail": _thumbnail,
        "watermark": _watermark,
        "metadata": _metadata,
        "metadata/write": _metadata_write,
        "ocr": _ocr,
        "capture-website": _capture,
    }[operation](check)
    if (filename := check.name("filename")) is not None:
        out["filename"] = filename
    return out


def _merge(check: Check) -> dict[str, Any]:
    check.only(["output_format", "filename", "engine", "engine_version"])
    fmt = check.text("output_format")
    if fmt is None:
        # Decided by the inputs when they are there: pdf, or the first audio or video file's.
        return {}
    fmt = canonical_format(fmt)
    if fmt not in MERGE_FORMATS:
        check.bad(
            "output_format",
            "must be pdf (PDFs and images), an audio format (" + ", ".join(MERGE_AUDIO) + ") "
            "or a video format (" + ", ".join(MERGE_VIDEO) + ")",
        )
    return {"output_format": fmt}


def _optimize(check: Check) -> dict[str, Any]:
    check.only(["profile", "filename", "input_format", "engine", "engine_version"])
    profile = check.text("profile") or "web"
    if profile not in OPTIMIZE_PROFILES:
        check.bad("profile", "must be web, print, archive or max")
    return {"profile": profile}


def _watermark(check: Check) -> dict[str, Any]:
    allowed = [*WATERMARK_NUMBERS, *WATERMARK_CHOICES, *WATERMARK_IMAGE, "text", "image"]
    more = ["font_color", "pages", "filename", "input_format", "font_name"]
    check.only([*allowed, *more, "engine", "engine_version"])
    out: dict[str, Any] = {}
    text, image = check.text("text", limit=1000), check.text("image", limit=200)
    if (text is None) == (image is None):
        check.bad("text", "give text, or an image (image), one of them")
    elif text is not None and not text.strip():
        check.bad("text", "must not be empty")
    elif text is not None:
        out["text"] = text
    elif image_task(image) is None:
        # Only a task's file: a URL would be a download outside import/url's policy and limits.
        check.bad("image", "must name a task (e.g. an import/url task) whose file is the image")
    else:
        out["image"] = image_task(image)
    for name, (low, high, default) in WATERMARK_NUMBERS.items():
        out[name] = check.number(name, low, high, default)
    for name, choices in WATERMARK_CHOICES.items():
        out[name] = check.text(name) or choices[0]
        if out[name] not in choices:
            check.bad(name, f"must be one of: {', '.join(choices)}")
    for name, (low, high) in WATERMARK_IMAGE.items():
        if (value := check.number(name, low, high, None, whole=True)) is not None:
            if image is None:
                check.bad(name, "goes with an image watermark (image)")
            out[name] = value
    out["font_color"] = check.text("font_color", limit=40) or "#000000"
    try:
        ImageColor.getrgb(out["font_color"])
    except ValueError:
        check.bad("font_color", "must be a colour such as #ff0000 or red")
    if (pages := check.text("pages", limit=200)) is not None:
        if not pages_ok(pages):
            check.bad("pages", "must be page numbers and rising ranges, e.g. 1-3,5,8-")
        out["pages"] = pages
    return out


def pages_ok(pages: str) -> bool:
    """Page numbers and ranges ("1-3,5,8-"), each range rising."""
    if not PAGES.match(pages):
        return False
    for part in pages.split(","):
        first, _, last = part.strip().partition("-")
        if last and int(last) < int(first):
            return False
    return True


def image_task(image: Any) -> str | None:
    """The task a watermark's `image` names (a task of the job, or a task's id), if it names
    one: a URL or anything not a string names none."""
    if not isinstance(image, str) or not image.strip() or re.match(r"^\w+:", image.strip()):
        return None
    return image.strip()


def _metadata(check: Check) -> dict[str, Any]:
    check.only(["input_format", "engine", "engine_version"])
    return {}


def _metadata_write(check: Check) -> dict[str, Any]:
    check.only(["metadata", "filename", "input_format", "engine", "engine_version"])
    return {"metadata": check.tags("metadata")}


def _ocr(check: Check) -> dict[str, Any]:
    check.only(["languages", "language", "output_format", "filename"])
    fmt = (check.text("output_format") or "pdf").lower()
    if fmt not in ("pdf", "txt"):
        check.bad("output_format", "must be pdf (searchable) or txt")
    languages = check.payload.get("languages", check.payload.get("language", ["eng"]))
    if isinstance(languages, str):
        languages = [languages]
    if (
        not isinstance(languages, list)
        or not 1 <= len(languages) <= 8
        or not all(isinstance(x, str) and LANGUAGE.match(x) for x in languages)
    ):
        check.bad("languages", 'must be 1 to 8 Tesseract language codes, e.g. ["eng", "deu"]')
        languages = ["eng"]
    return {"output_format": fmt, "languages": list(dict.fromkeys(languages))}


def _thumbnail(check: Check) -> dict[str, Any]:
    check.only(["output_format", "width", "height", "fit", "timestamp", "filename", "count"])
    out: dict[str, Any] = {"output_format": canonical_format(check.text("output_format") or "")}
    if out["output_format"] not in ("png", "jpg", "webp"):
        check.bad("output_format", "must be png, jpg or webp")
    for side in ("width", "height"):
        if (value := check.payload.get(side)) is not None:
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4000:
                check.bad(side, "must be a whole number of pixels from 1 to 4000")
            out[side] = value
    out["fit"] = check.text("fit") or "max"
    if out["fit"] not in ("max", "crop", "scale"):
        check.bad("fit", "must be max, crop or scale")
    stamp = check.payload.get("timestamp", 0)
    if isinstance(stamp, str) and (seconds := seconds_of(stamp)) is not None:
        stamp = seconds
    if isinstance(stamp, bool) or not isinstance(stamp, int | float) or not 0 <= stamp < 1e6:
        check.bad("timestamp", "must be seconds into the video (e.g. 5 or 00:00:05)")
    out["timestamp"] = stamp
    if check.payload.get("count", 1) != 1:
        check.bad("count", "must be 1: one thumbnail per task")
    return out


# capture-website's numbers: (lowest, highest, default); sizes in cm, margins in mm.
CAPTURE_NUMBERS = {
    "zoom": (0.1, 2, 1),
    "page_width": (1, 500, None),
    "page_height": (1, 500, None),
    "margin_top": (0, 500, 10),
    "margin_bottom": (0, 500, 10),
    "margin_left": (0, 500, 10),
    "margin_right": (0, 500, 10),
}
CAPTURE_WHOLE = {
    "wait_time": (0, 60_000, 0),
    "screen_width": (100, 4000, 1280),
    "screen_height": (100, 4000, 1024),
    "quality": (1, 100, 90),
}
CAPTURE_CHOICES = {
    "wait_until": ("load", "domcontentloaded", "networkidle0", "networkidle2"),
    "css_media_type": ("print", "screen"),
}
CAPTURE_TEXTS = ("wait_for_element", "header_template", "footer_template")


def _capture(check: Check) -> dict[str, Any]:
    check.only(
        [
            "url",
            "output_format",
            "filename",
            "engine",
            "engine_version",
            "pages",
            "print_background",
            "display_header_footer",
            "headers",
            *CAPTURE_NUMBERS,
            *CAPTURE_WHOLE,
            *CAPTURE_CHOICES,
            *CAPTURE_TEXTS,
        ]
    )
    out: dict[str, Any] = {}
    url = check.text("url", limit=8000)
    if url is not None:
        if not re.match(r"^https?://[^/\s]+", url, re.IGNORECASE):
            check.bad("url", "must be an http or https URL")
        out["url"] = url
    if url is None and "input" not in check.payload:
        check.bad("url", "is required, unless an input (an HTML file) is given")
    elif url is not None and "input" in check.payload:
        check.bad("url", "give either a url or an input (an HTML file), not both")
    fmt = canonical_format(check.text("output_format") or "pdf")
    if fmt not in ("pdf", "png", "jpg"):
        check.bad("output_format", "must be pdf, png or jpg")
    out["output_format"] = fmt
    for name, (low, high, default) in CAPTURE_NUMBERS.items():
        if (value := check.number(name, low, high, default)) is not None:
            out[name] = value
    for name, (low, high, default) in CAPTURE_WHOLE.items():
        out[name] = check.number(name, low, high, default, whole=True)
    for name, choices in CAPTURE_CHOICES.items():
        if (choice := check.text(name)) is not None:
            if choice not in choices:
                check.bad(name, f"must be one of: {', '.join(choices)}")
            out[name] = choice
    for name in CAPTURE_TEXTS:
        if (text := check.text(name, limit=20_000)) is not None:
            out[name] = text
    out["print_background"] = check.payload.get("print_background", True)
    if not isinstance(out["print_background"], bool):
        check.bad("print_background", "must be true or false")
    out["display_header_footer"] = check.flag("display_header_footer")
    if (pages := check.text("pages", limit=200)) is not None:
        if not pages_ok(pages):
            check.bad("pages", "must be page numbers and rising ranges, e.g. 1-3,5")
        out["pages"] = pages
    if (headers := check.headers("headers")) is not None:
        if url is None:
            check.bad("headers", "go with a url: an HTML file is not fetched")
        out["headers"] = headers
    return out
