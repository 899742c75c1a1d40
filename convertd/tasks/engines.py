"""Which engine does a task's work, and which version of it: what /v2 tasks report as
`engine` and `engine_version`. Tool versions are asked once, at start-up (`detect`)."""

from __future__ import annotations

import contextlib
import re
from importlib import metadata

from convertd import __version__, procs
from convertd.converters.registry import Registry
from convertd.store import tasks

# The engine each converter is, in CloudConvert's names where one fits.
ENGINE_OF_FILETYPE = {
    "image": "pillow",
    "audio": "ffmpeg",
    "video": "ffmpeg",
    "document": "libreoffice",
    "pdf": "poppler",
    "ebook": "libreoffice",
    "archive": "7z",
    "hash": "convertd",
}
_LIBRARIES = {"pillow": "pillow", "7z": "py7zr"}
_TOOLS = {"ffmpeg": ["ffmpeg", "-version"], "poppler": ["pdftoppm", "-v"]}
_VERSION = re.compile(r"version\s+([0-9][\w.+~-]*)")

_versions: dict[str, str] = {"convertd": __version__}


async def detect() -> None:
    """Learn the engines' versions (a missing tool simply has none)."""
    for engine, package in _LIBRARIES.items():
        with contextlib.suppress(metadata.PackageNotFoundError):
            _versions[engine] = metadata.version(package)
    for engine, argv in _TOOLS.items():
        try:
            result = await procs.run(
                argv, timeout=10, capture_stdout=True, name=f"{argv[0]} version"
            )
        except (OSError, procs.ProcessTimeout):
            continue
        if match := _VERSION.search(result.stdout.decode(errors="replace") + result.stderr):
            _versions[engine] = match.group(1)


def engine_of(registry: Registry, task: tasks.Task) -> tuple[str | None, str | None]:
    """The engine that does (or did) the task's work; for a convert task whose input format is
    not known yet, None until it starts."""
    if task.operation == "archive":
        fmt = task.payload.get("output_format", "zip")
        engine = "7z" if fmt == "7z" else "python"
        return engine, _versions.get(engine)
    filetype = task.filetype
    if filetype is None and (input_format := task.payload.get("input_format")):
        candidates = registry.making(task.payload.get("output_format", ""), input_format)
        filetype = candidates[0].filetype if candidates else None
    if filetype is None:
        return None, None
    engine = ENGINE_OF_FILETYPE[filetype]
    return engine, _versions.get(engine)
