"""Converter options: what one option accepts, and the option sets several converters share.

An option is declared once with its type, bounds or choices and, where the value needs more than
that, a `check` that normalises it (`" 1 - 3"` -> `"1-3"`); `validate` returns the normalised
value, which is what jobs store and converters read.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from convertd.errors import ConversionError


class OptionError(ValueError):
    """An option value is not acceptable; the message names the option."""


@dataclasses.dataclass(frozen=True)
class Option:
    """One converter option: its type and the values it accepts."""

    kind: type
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    check: Callable[[Any], Any] | None = None  # normalises a well-typed value, or OptionError
    # What the converter does when the option is left out, where that is one fixed value (a
    # form shows it); None where it depends on the input or the output format (jpg quality).
    default: Any = None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind.__name__, "description": self.help}
        if self.default is not None:
            out["default"] = self.default
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.choices is not None:
            out["choices"] = list(self.choices)
        return out

    def validate(self, name: str, value: Any) -> Any:
        if self.kind is bool:
            if not isinstance(value, bool):
                raise OptionError(f"option {name!r} must be true or false")
            return value
        if self.kind is int:
            # JSON has no int type of its own: accept 3 and 3.0, refuse 3.5, "3" and true.
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise OptionError(f"option {name!r} must be a whole number")
            if isinstance(value, float) and not value.is_integer():
                raise OptionError(f"option {name!r} must be a whole number")
            value = int(value)
        elif self.kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise OptionError(f"option {name!r} must be a number")
            value = float(value)
        elif self.kind is str:
            if not isinstance(value, str) or len(value) > 200:
                raise OptionError(f"option {name!r} must be a short text value")
            if self.choices is not None:
                value = value.strip().lower()
                if value not in self.choices:
                    allowed = ", ".join(self.choices)
                    raise OptionError(f"option {name!r} must be one of: {allowed}")
        if self.minimum is not None and value < self.minimum:
            raise OptionError(f"option {name!r} must be at least {self.minimum:g}")
        if self.maximum is not None and value > self.maximum:
            raise OptionError(f"option {name!r} must be at most {self.maximum:g}")
        return self.check(value) if self.check is not None else value


# ----- page ranges (documents, ebooks, PDFs): one syntax, one rule -----

PAGE_RANGE = re.compile(r"^\s*\d+\s*(-\s*\d+\s*)?(,\s*\d+\s*(-\s*\d+\s*)?)*$")
MAX_PAGE = 1_000_000


def _ranges(spec: str) -> list[tuple[int, int]]:
    out = []
    for part in spec.split(","):
        first, _, last = part.partition("-")
        out.append((int(first), int(last or first)))
    return out


def check_pages(value: str) -> str:
    """`1-3,5`: page numbers from 1, ranges going up; what the document has is checked later
    (pages_of), when its page count is known."""
    if not PAGE_RANGE.match(value):
        raise OptionError("option 'pages' must look like 1-3,5")
    spec = value.replace(" ", "")
    for start, end in _ranges(spec):
        if start < 1:
            raise OptionError("option 'pages': pages are numbered from 1")
        if end < start:
            raise OptionError(f"option 'pages': the range {start}-{end} runs backwards")
        if end > MAX_PAGE:
            raise OptionError(f"option 'pages': page {end} is past any document's end")
    return spec


def pages_of(spec: str | None, count: int) -> list[int]:
    """The 1-based pages `spec` picks from a document of `count` pages, in order and once each;
    a page it does not have is an error that says so."""
    if not spec:
        return list(range(1, count + 1))
    pages: list[int] = []
    for start, end in _ranges(spec):
        if end > count:
            missing = max(start, count + 1)
            noun = "page" if count == 1 else "pages"
            raise ConversionError(f"page {missing} does not exist: the document has {count} {noun}")
        pages.extend(range(start, end + 1))
    return list(dict.fromkeys(pages))


# ----- PDF export through LibreOffice (documents and ebooks) -----

# Options that run after the conversion, as the /v2 operations of the same names (the worker
# runs them: tasks/pipeline.after_steps), on the outputs they suit.
OPTIMIZE_PROFILES = ("web", "print", "archive", "max")
AFTER_OPTIONS = {
    "ocr": Option(
        bool,
        "Make the PDF output searchable: its pages OCRed (OCRmyPDF, Tesseract)",
        default=False,
    ),
    "ocr_languages": Option(str, "Tesseract languages for ocr, e.g. eng or eng+deu", default="eng"),
    "optimize": Option(
        str,
        "Make the output smaller without visible loss (pdf, jpg, png): web, print, archive or "
        "max; never larger than without it",
        choices=OPTIMIZE_PROFILES,
    ),
}
_LANGUAGES = re.compile(r"^[a-z]{3}(_[a-z]+)?(\+[a-z]{3}(_[a-z]+)?){0,7}$")


def check_after(options: dict[str, Any], output_format: str) -> dict[str, Any]:
    """The after-conversion options make sense for this output, or OptionError says why."""
    if options.get("ocr") and output_format != "pdf":
        raise OptionError("option 'ocr' applies only to pdf output")
    if "ocr_languages" in options:
        if not options.get("ocr"):
            raise OptionError("option 'ocr_languages' goes with 'ocr': true")
        if not _LANGUAGES.match(options["ocr_languages"]):
            raise OptionError("option 'ocr_languages' must be Tesseract codes, e.g. eng+deu")
    if "optimize" in options and output_format not in ("pdf", "jpg", "png"):
        raise OptionError("option 'optimize' applies only to pdf, jpg and png output")
    return options


PDF_EXPORT_OPTIONS = {
    "pages": Option(str, "Pages to put in a PDF output, e.g. 1-3,5"),
    "pdf_a": Option(bool, "Export PDF/A-2b for archiving", default=False),
}


def check_pdf_export(options: dict[str, Any], output_format: str) -> dict[str, Any]:
    """`pages` and `pdf_a` shape a PDF export: refused for any other output (said first, as
    it is the likelier mistake), then the page range is checked."""
    pdf_only = [name for name in options if name in PDF_EXPORT_OPTIONS]
    if pdf_only and output_format != "pdf":
        raise OptionError(f"options {', '.join(pdf_only)} apply only to pdf output")
    if "pages" in options:
        options["pages"] = check_pages(options["pages"])
    return options


# ----- audio and video (FFmpeg) -----

_BITRATE = re.compile(r"^(\d{1,4})k$")


def check_bitrate(value: str) -> str:
    match = _BITRATE.match(value.strip().lower())
    if not match or not 8 <= int(match.group(1)) <= 1024:
        raise OptionError("option 'bitrate' must look like 192k (8k to 1024k)")
    return f"{int(match.group(1))}k"


TRIM_OPTIONS = {
    "trim_start": Option(float, "Start at this many seconds into the input", 0, 86400, default=0.0),
    "trim_end": Option(float, "Stop at this many seconds into the input", 0, 86400),
}


def check_trim(options: dict[str, Any]) -> dict[str, Any]:
    start, end = options.get("trim_start"), options.get("trim_end")
    if start is not None and end is not None and end <= start:
        raise OptionError("option 'trim_end' must be after 'trim_start'")
    return options
