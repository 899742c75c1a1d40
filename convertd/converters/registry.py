"""The converters this process offers, by filetype; the source of `/v1/formats`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convertd.converters.base import Converter, OptionError, canonical_format
from convertd.files import extension_of
from convertd.office import OfficePool
from convertd.sniff import sniff_file

# The filetypes the v1 API names; a request for any other is a 400.
FILETYPES = ("image", "audio", "video", "document", "pdf", "hash", "archive", "ebook")
# The order filetypes are tried in when a file's type must be inferred.
INFERENCE_ORDER = ("image", "audio", "video", "document", "pdf", "archive", "ebook", "hash")


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

    def infer(self, path: Path, fmt: str, filetype: str | None = None) -> tuple[str, str] | str:
        """(filetype, input format) that turns this file into `fmt`, judged by its name and,
        failing that, its first bytes; or a sentence saying why there is none. Blocking."""
        ext = canonical_format(extension_of(path.name))
        order = [filetype] if filetype else list(INFERENCE_ORDER)
        guesses = [ext]
        try:
            sniffed = sniff_file(path)
        except OSError:
            sniffed = None
        if sniffed and sniffed != ext:
            guesses.append(sniffed)
        for input_format in guesses:
            for name in order:
                converter = self.known(name)
                if converter is None or fmt not in converter.output_formats:
                    continue
                if not converter.accepts_input(input_format):
                    continue
                try:
                    converter.check_pair(input_format, fmt)
                except OptionError:
                    continue
                return name, input_format
        what = f"a .{ext} file" if ext else "a file without an extension"
        return f"convertd cannot make {fmt} from {what}"

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


def default_registry(office: OfficePool) -> Registry:
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
            DocumentConverter(office),
            PdfConverter(office),
            ArchiveConverter(),
            EbookConverter(office),
            HashConverter(),
        ]
    )
