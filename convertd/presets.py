"""What a preset is: a named filetype, output format and options, and where presets come from.

Three sources, one name space, looked up in this order: the config file's `[[preset]]` tables
(read-only while the daemon runs), the database (`convertd presets add`, `POST /v2/presets`),
then the built-ins below. A built-in cannot be removed, but a preset of the same name in the
database or the config replaces it; a name in both the config and the database is the config's
(the saved one shadowed, with a warning: the CLI run without --config cannot see the config).
The `[[preset]]` tables are read here with the config, for their shape only; their options are
checked against the converters when the daemon starts (tasks/presets.py).
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

BUILTIN, CONFIG, DATABASE = "builtin", "config", "database"
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MAX_DESCRIPTION = 500
MAX_OPTIONS_BYTES = 8 * 1024
# How many names an "unknown preset" message lists.
LISTED = 20


class PresetError(ValueError):
    """A preset's name or fields are not usable; the message says which, `field` names it."""

    def __init__(self, message: str, field: str = "options") -> None:
        super().__init__(message)
        self.field = field


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    filetype: str
    output_format: str
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    description: str = ""
    source: str = DATABASE
    created_at: float | None = None
    updated_at: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "filetype": self.filetype,
            "output_format": self.output_format,
            "options": self.options,
            "description": self.description,
            "source": self.source,
        }


def check_name(name: Any) -> str:
    """A preset's name, normalised (lower case), or PresetError."""
    if not isinstance(name, str) or not NAME.match(name.strip().lower()):
        raise PresetError(
            "a preset's name is 1-64 letters, digits, '.', '_' or '-' (lower case), "
            "starting with a letter or digit, e.g. web-photo",
            "name",
        )
    return name.strip().lower()


def check_fields(
    filetype: Any,
    output_format: Any,
    options: Any,
    description: Any = "",
    filetypes: tuple[str, ...] = ("image", "audio", "video", "..."),
) -> tuple[str, str, dict[str, Any], str]:
    """The shape of a preset's fields (what the converter makes of them is checked later);
    `filetypes` (the registry's, from a layer that knows them) are listed in its message."""
    if not isinstance(filetype, str) or not filetype.strip():
        raise PresetError(
            f"a preset's 'filetype' must be a string naming a filetype: {', '.join(filetypes)}",
            "filetype",
        )
    if not isinstance(output_format, str) or not output_format.strip():
        raise PresetError(
            "a preset's 'output_format' must be a string naming a format, e.g. webp",
            "output_format",
        )
    if not isinstance(options, dict):
        raise PresetError("a preset's 'options' must be an object (a table), e.g. {quality: 80}")
    if len(json.dumps(options)) > MAX_OPTIONS_BYTES:
        raise PresetError(f"a preset's 'options' must be under {MAX_OPTIONS_BYTES} bytes")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise PresetError(
            f"a preset's 'description' is text of at most {MAX_DESCRIPTION} chars", "description"
        )
    return filetype.strip().lower(), output_format.strip().lower(), options, description.strip()


def unknown_message(name: str, known: list[str]) -> str:
    """`No preset named 'x'; known: a, b, ... (and 3 more)`: what every surface says."""
    shown = ", ".join(known[:LISTED]) or "none"
    more = f" (and {len(known) - LISTED} more)" if len(known) > LISTED else ""
    return f"No preset named {name[:80]!r}; known presets: {shown}{more}"


TABLE_FIELDS = ("name", "filetype", "output_format", "options", "description")


def parse_tables(tables: Any) -> tuple[Preset, ...]:
    """The config file's `[[preset]]` tables, by shape; PresetError names the preset."""
    if tables is None:
        return ()
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise PresetError("[[preset]] must be a list of tables")
    out: dict[str, Preset] = {}
    for index, table in enumerate(tables, 1):
        try:
            name = check_name(table.get("name"))
        except PresetError as exc:
            raise PresetError(f"preset #{index}: {exc}") from None
        if unknown := sorted(set(table) - set(TABLE_FIELDS)):
            raise PresetError(
                f"preset {name!r}: unknown field(s) {', '.join(unknown)}; "
                f"known: {', '.join(TABLE_FIELDS)}"
            )
        if name in out:
            raise PresetError(f"preset {name!r} is defined twice in the config")
        try:
            fields = check_fields(
                table.get("filetype"),
                table.get("output_format"),
                table.get("options", {}),
                table.get("description", ""),
            )
        except PresetError as exc:
            raise PresetError(f"preset {name!r}: {exc}") from None
        out[name] = Preset(name, *fields, source=CONFIG)
    return tuple(out.values())


# Seeded presets: what people ask for again and again. Each is checked against its converter
# when the daemon starts, and converts a real file in tests/test_presets.py.
BUILTINS = (
    Preset(
        "web-photo",
        "image",
        "webp",
        # fit inside: the longer side at most 2048 px, never enlarged. strip_metadata drops EXIF
        # (the GPS location with it) and the colour profile.
        {"width": 2048, "height": 2048, "fit": "inside", "quality": 80, "strip_metadata": True},
        "A photo for the web: WebP, at most 2048 px, quality 80, no EXIF or GPS",
        BUILTIN,
    ),
    Preset(
        "phone-video",
        "video",
        "mp4",
        # 720 px tall (a landscape clip is 1280x720; a portrait one about 405x720); crf 26 with
        # 128 kbps AAC plays everywhere at a few MB a minute.
        {"video_codec": "h264", "audio_codec": "aac", "height": 720, "crf": 26, "bitrate": "128k"},
        "A video to share from a phone: MP4 (H.264/AAC), 720p, crf 26",
        BUILTIN,
    ),
    Preset(
        "podcast-mp3",
        "audio",
        "mp3",
        {"channels": 1, "bitrate": "64k", "normalize": True},
        "Speech for a podcast: mono MP3 at 64 kbps, loudness normalised (EBU R128)",
        BUILTIN,
    ),
    Preset(
        "archive-pdfa",
        "document",
        "pdf",
        {"pdf_a": True},
        "An office document for the archive: PDF/A-2b",
        BUILTIN,
    ),
    Preset(
        "scan-to-pdf",
        "image",
        "pdf",
        {"ocr": True, "optimize": "web"},
        "A scanned page as a searchable PDF (OCR); send filetype=pdf for a scanned PDF",
        BUILTIN,
    ),
)
