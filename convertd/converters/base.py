"""What a converter is: its filetype, formats and options, and one async `convert` call.

Converters never see HTTP or SQL. They are run by `converters.run.Runner` (for the worker pool
and for `convertd convert`), which hands them a `Task`: the input file, the wanted format,
validated options, a private work directory, the limits, and the threads to do blocking work on.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import functools
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, ClassVar, ParamSpec, TypeVar

from convertd.config import Config
from convertd.converters.options import Option, OptionError
from convertd.files import stem_of

# Spellings users send for a format, mapped to the one name convertd uses.
FORMAT_ALIASES = {
    "jpeg": "jpg",
    "jpe": "jpg",
    "tif": "tiff",
    "htm": "html",
    "xhtml": "html",
    "aif": "aiff",
    "oga": "ogg",
    "mpg": "mpeg",
    "markdown": "md",
    "text": "txt",
    "tgz": "tar.gz",
    "tbz2": "tar.bz2",
    "tbz": "tar.bz2",
    "txz": "tar.xz",
}

ANY_FORMAT = "*"

P = ParamSpec("P")
T = TypeVar("T")


def canonical_format(name: str) -> str:
    name = name.strip().lower().lstrip(".")
    return FORMAT_ALIASES.get(name, name)


@dataclasses.dataclass(frozen=True)
class Limits:
    max_image_pixels: int
    job_timeout_seconds: float
    max_media_seconds: float = 6 * 3600

    @classmethod
    def from_config(cls, config: Config) -> Limits:
        return cls(
            max_image_pixels=config.max_image_pixels,
            job_timeout_seconds=config.job_timeout_seconds,
            max_media_seconds=config.max_media_seconds,
        )


@dataclasses.dataclass
class Task:
    """One attempt at one job, as a converter sees it."""

    job_id: str
    input_path: Path
    input_name: str  # the client's file name, for naming outputs
    input_format: str
    output_format: str
    options: dict[str, Any]
    work_dir: Path
    limits: Limits
    report_progress: Callable[[int], Awaitable[None]]
    threads: Executor  # the conversion threads (see run.py)

    @property
    def output_stem(self) -> str:
        return stem_of(self.input_name)

    def output_path(self, suffix: str = "") -> Path:
        """Where to write an output named after the input (`photo.png` -> `photo.webp`)."""
        return self.work_dir / f"{self.output_stem}{suffix}.{self.output_format}"

    async def off_loop(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run blocking work (Pillow, pypdf, hashing, file copies) on a conversion thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.threads, functools.partial(fn, *args, **kwargs))

    def staged_input(self, extension: str) -> Path:
        """A link to the input inside the job's own directory, named with the real extension,
        so a tool (LibreOffice) detects the type and never touches the upload area. Blocking."""
        staged = self.work_dir / f"input.{extension}"
        try:
            os.link(self.input_path, staged)
        except OSError:
            shutil.copyfile(self.input_path, staged)
        return staged


# How long a tool's presence is remembered: every request asks which converters are available,
# and a PATH search costs a dozen stat calls; a tool installed while convertd runs is seen soon.
TOOL_CHECK_SECONDS = 10.0
_tool_checks: dict[str, tuple[float, bool]] = {}


def tool_present(tool: str) -> bool:
    now = time.monotonic()
    checked = _tool_checks.get(tool)
    if checked is None or now - checked[0] > TOOL_CHECK_SECONDS:
        checked = _tool_checks[tool] = (now, shutil.which(tool) is not None)
    return checked[1]


class Converter(abc.ABC):
    filetype: ClassVar[str]
    input_formats: ClassVar[tuple[str, ...]]
    output_formats: ClassVar[tuple[str, ...]]
    # Not a ClassVar: a converter may add an option its machine allows (an engine it has).
    options: dict[str, Option] = {}
    # External programs this converter runs; it is offered only when all are on PATH.
    tools: ClassVar[tuple[str, ...]] = ()
    # Input formats of which an empty file is a real one (ANY_FORMAT: all): a hash's input (an
    # empty file has a checksum), an empty text. For any other, an empty file is a broken upload
    # or download, refused before any tool sees it rather than "converted" to a blank.
    empty_inputs: ClassVar[tuple[str, ...]] = ()
    # What does the work, as CloudConvert names engines (the /v2 API reports it).
    engine_name: ClassVar[str] = "convertd"

    def engine(self, input_format: str | None, output_format: str) -> str:
        """The engine that turns `input_format` (if known) into `output_format`."""
        return self.engine_name

    def missing_tools(self) -> list[str]:
        return [tool for tool in self.tools if not tool_present(tool)]

    def accepts_input(self, fmt: str) -> bool:
        return ANY_FORMAT in self.input_formats or fmt in self.input_formats

    def takes_empty(self, fmt: str) -> bool:
        return ANY_FORMAT in self.empty_inputs or fmt in self.empty_inputs

    def reads(self, path: Path) -> bool:
        """Whether this converter can read the file by its content, whatever its name says:
        the last resort for a name it does not know. Blocking."""
        return False

    def check_pair(self, input_format: str, output_format: str) -> None:
        """Raise OptionError when this input cannot become this output (e.g. a sheet as docx)."""
        return None

    def check_input(self, input_format: str, options: dict[str, Any]) -> None:
        """Raise OptionError when validated options do not fit the input's format, once it is
        known (an engine that reads only some inputs)."""
        return None

    def validate_options(self, raw: dict[str, Any], output_format: str) -> dict[str, Any]:
        """The options, each checked and normalised; OptionError names the first bad one.
        Converters with rules across options extend this."""
        unknown = sorted(set(raw) - set(self.options))
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise OptionError(
                f"unknown option(s) for {self.filetype}: {', '.join(unknown)}; "
                f"known options: {known}"
            )
        return {name: self.options[name].validate(name, value) for name, value in raw.items()}

    @abc.abstractmethod
    async def convert(self, task: Task) -> list[Path]:
        """Write the output file(s) into task.work_dir and return them, in order.

        Raise `ConversionError` with a short sentence for anything the user can act on.
        """
