"""The converters this process offers, by filetype; the source of `/v1/formats`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from convertd.browser.chromium import Chromium
from convertd.converters.base import Converter, canonical_format
from convertd.converters.options import OptionError
from convertd.converters.sniff import sniff_file
from convertd.files import extension_of
from convertd.office.pool import OfficePool

# The filetypes the v1 API names; a request for any other is a 400.
FILETYPES = ("image", "audio", "video", "document", "pdf", "hash", "archive", "ebook")
# The order filetypes are tried in when a file's type must be inferred.
INFERENCE_ORDER = ("image", "audio", "video", "document", "pdf", "archive", "ebook", "hash")


class Unreadable(Exception):
    """The converter reads neither the file's extension (`extension`) nor what its bytes show."""

    def __init__(self, extension: str) -> None:
        super().__init__(extension)
        self.extension = extension


class CannotInfer(Exception):
    """No converter turns this file into the wanted format; the message says so."""


# What to do with a file whose name has no extension and whose first bytes say nothing known
# (a text format has no magic bytes): said by v1, /v2, drops and `convertd convert` alike.
NO_EXTENSION_HINT = "name it with its extension (as in report.docx)"


class _Guesses:
    """A file's possible formats, best first: its extension's, then (read only if needed) the
    one its first bytes show."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.extension = canonical_format(extension_of(path.name))
        self.sniffed: str | None = None  # what its first bytes showed, once read

    def __iter__(self) -> Iterator[str]:
        yield self.extension
        try:
            self.sniffed = sniff_file(self.path)
        except OSError:
            self.sniffed = None
        if self.sniffed and self.sniffed != self.extension:
            yield self.sniffed


def _turns(converter: Converter, input_format: str, output_format: str) -> bool:
    """Whether `converter` reads `input_format` and can make `output_format` of it."""
    if not converter.accepts_input(input_format):
        return False
    try:
        converter.check_pair(input_format, output_format)
    except OptionError:
        return False
    return True


class Registry:
    def __init__(self, converters: list[Converter]) -> None:
        self._all: dict[str, Converter] = {}
        for converter in converters:
            if converter.filetype in self._all:
                raise ValueError(f"two converters claim filetype {converter.filetype!r}")
            if converter.filetype not in FILETYPES:
                raise ValueError(f"converter filetype {converter.filetype!r} is not a v1 filetype")
            self._all[converter.filetype] = converter

    def get(self, filetype: str) -> Converter | None:
        """The converter for a filetype, if its tools are present on this machine."""
        converter = self._all.get(filetype)
        if converter is None or converter.missing_tools():
            return None
        return converter

    def known(self, filetype: str) -> Converter | None:
        """The converter for a filetype whether or not it can run here."""
        return self._all.get(filetype)

    def known_all(self) -> list[Converter]:
        return list(self._all.values())

    def available(self) -> list[Converter]:
        return [c for c in self._all.values() if not c.missing_tools()]

    def unavailable(self) -> list[Converter]:
        return [c for c in self._all.values() if c.missing_tools()]

    def making(self, output_format: str, input_format: str | None = None) -> list[Converter]:
        """The available converters that make `output_format` (from `input_format`, if known),
        in the order a file's filetype is inferred in."""
        found = []
        for filetype in INFERENCE_ORDER:
            converter = self.get(filetype)
            if converter is None or output_format not in converter.output_formats:
                continue
            if input_format is None or _turns(converter, input_format, output_format):
                found.append(converter)
        return found

    def input_format(self, converter: Converter, path: Path, fmt: str) -> str:
        """The format `converter` reads this file as to make `fmt`: its extension's if the
        converter reads that and can make `fmt` from it, else the one its first bytes show.
        Raises Unreadable (it reads neither) or OptionError (it cannot make `fmt` of it, e.g. a
        spreadsheet as docx). Blocking: it may read the file's first bytes."""
        return self._input_format(converter, _Guesses(path), fmt)

    def named_format(self, converter: Converter, name: str, fmt: str) -> str | None:
        """What input_format says when a file's extension alone decides it (nothing read,
        so no trip off the event loop); None when only input_format can tell."""
        extension = canonical_format(extension_of(name))
        return extension if _turns(converter, extension, fmt) else None

    def infer(self, path: Path, fmt: str, filetype: str | None = None) -> tuple[str, str]:
        """(filetype, input format) that turns this file into `fmt`, trying the filetypes in
        INFERENCE_ORDER (or only `filetype`) for its extension, then for its first bytes, then
        (for media) for what ffprobe finds in it.
        Raises CannotInfer with a sentence saying why there is none. Blocking."""
        guesses = _Guesses(path)
        candidates = [
            c
            for c in (self.known(name) for name in ([filetype] if filetype else INFERENCE_ORDER))
            if c is not None and fmt in c.output_formats
        ]
        for input_format in guesses:
            for converter in candidates:
                if _turns(converter, input_format, fmt):
                    return converter.filetype, input_format
        for converter in candidates:
            if converter.reads(path):  # named oddly, but its content is what it reads
                return converter.filetype, guesses.extension or "bin"
        if not guesses.extension:  # and its content is no format it makes `fmt` from
            content = (
                f"its content ({guesses.sniffed}) is not of a format it makes {fmt} from"
                if guesses.sniffed
                else "its content is not of a format it recognises"
            )
            raise CannotInfer(
                f"convertd cannot make {fmt} from this file: its name has no extension, and "
                f"{content}; {NO_EXTENSION_HINT}"
            )
        raise CannotInfer(f"convertd cannot make {fmt} from a .{guesses.extension} file")

    @staticmethod
    def _input_format(converter: Converter, guesses: _Guesses, fmt: str) -> str:
        refusal: OptionError | None = None
        for input_format in guesses:
            if not converter.accepts_input(input_format):
                continue
            try:
                converter.check_pair(input_format, fmt)
            except OptionError as exc:
                refusal = refusal or exc
                continue
            return input_format
        if refusal is not None:
            raise refusal
        if converter.reads(guesses.path):
            return guesses.extension or "bin"
        raise Unreadable(guesses.extension)

    def formats(self) -> dict[str, Any]:
        """What `/v1/formats` lists: only what this machine can really do."""
        return {
            c.filetype: {
                "input_formats": list(c.input_formats),
                "output_formats": list(c.output_formats),
                "options": {name: opt.describe() for name, opt in c.options.items()},
            }
            for c in self.available()
        }


def default_registry(office: OfficePool, chromium: Chromium | None = None) -> Registry:
    from convertd.converters.archive import ArchiveConverter
    from convertd.converters.audio import AudioConverter
    from convertd.converters.document import DocumentConverter
    from convertd.converters.ebook import EbookConverter
    from convertd.converters.hash import HashConverter
    from convertd.converters.image import ImageConverter
    from convertd.converters.pdf import PdfConverter
    from convertd.converters.video import VideoConverter

    return Registry(
        [
            ImageConverter(),
            AudioConverter(),
            VideoConverter(),
            DocumentConverter(office, chromium),
            PdfConverter(office),
            ArchiveConverter(),
            EbookConverter(office),
            HashConverter(),
        ]
    )
