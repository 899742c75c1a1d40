"""The version of each engine a task reports (`engine_version`); which engine does the work is
the converter's to say (`Converter.engine`). Tool versions are asked once, at start-up."""

from __future__ import annotations

import contextlib
import platform
import re
from importlib import metadata

from convertd import __version__, procs
from convertd.converters.registry import Registry
from convertd.store import tasks

_LIBRARIES = {"pillow": "pillow", "7z": "py7zr", "pypdf": "pypdf"}
_TOOLS = {"ffmpeg": ["ffmpeg", "-version"], "poppler": ["pdftoppm", "-v"]}
_VERSION = re.compile(r"(?:version|LibreOffice)\s+([0-9][\w.+~-]*)")

_versions: dict[str, str] = {
    "convertd": __version__,
    "python": platform.python_version(),
    "hashlib": platform.python_version(),
}


async def detect(soffice: str | None = None) -> None:
    """Learn the engines' versions (a missing tool simply has none)."""
    for engine, package in _LIBRARIES.items():
        with contextlib.suppress(metadata.PackageNotFoundError):
            _versions[engine] = metadata.version(package)
    tools = dict(_TOOLS)
    if soffice:
        tools["libreoffice"] = [soffice, "--version"]
    for engine, argv in tools.items():
        try:
            result = await procs.run(
                argv, timeout=10, capture_stdout=True, name=f"{engine} version"
            )
        except (OSError, procs.ProcessTimeout):
            continue
        if match := _VERSION.search(result.stdout.decode(errors="replace") + result.stderr):
            _versions[engine] = match.group(1)


def version_of(engine: str) -> str | None:
    return _versions.get(engine)


def engine_of(registry: Registry, task: tasks.Task) -> tuple[str | None, str | None]:
    """The engine that does (or did) the task's work and its version; for a convert task whose
    input format is not known yet, None until it starts."""
    if task.operation == "archive":
        fmt = task.payload.get("output_format", "zip")
        engine = "7z" if fmt == "7z" else "python"
        return engine, version_of(engine)
    output_format = task.payload.get("output_format", "")
    input_format = task.input_format or task.payload.get("input_format")
    converter = registry.known(task.filetype) if task.filetype else None
    if converter is None and input_format:
        candidates = registry.making(output_format, input_format)
        converter = candidates[0] if candidates else None
    if converter is None:
        return None, None
    engine = converter.engine(input_format, output_format)
    return engine, version_of(engine)
