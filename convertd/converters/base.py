"""What a converter is: its filetype, formats and options, and one async `convert` call.

Converters never see HTTP or SQL. The worker hands them a `Task` (input file, wanted format,
validated options, a private work directory) and publishes whatever files they return.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import functools
import os
import shutil
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, ParamSpec, TypeVar

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

# In-process conversion work (Pillow, pypdf, archives, hashing) has threads of its own, as many
# as there are cores: it can never take the threads that uploads and downloads write files with,
# and each conversion lands on a thread whose memory arena is already warm (a fresh one cost a
# JPEG resize a fifth of its time when measured here).
_CONVERSION_THREADS = ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix="convert")


async def off_loop(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run blocking conversion work on a conversion thread, like asyncio.to_thread."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_CONVERSION_THREADS, functools.partial(fn, *args, **kwargs))


def canonical_format(name: str) -> str:
    name = name.strip().lower().lstrip(".")
    return FORMAT_ALIASES.get(name, name)


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

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind.__name__, "description": self.help}
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
        return value


@dataclasses.dataclass(frozen=True)
class Limits:
    max_image_pixels: int
    job_timeout_seconds: float
    max_media_seconds: float = 6 * 3600


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

    @property
    def output_stem(self) -> str:
        return stem_of(self.input_name)

    def output_path(self, suffix: str = "") -> Path:
        """Where to write an output named after the input (`photo.png` -> `photo.webp`)."""
        return self.work_dir / f"{self.output_stem}{suffix}.{self.output_format}"


class Converter(abc.ABC):
    filetype: ClassVar[str]
    input_formats: ClassVar[tuple[str, ...]]
    output_formats: ClassVar[tuple[str, ...]]
    options: ClassVar[dict[str, Option]] = {}
    # External programs this converter runs; it is offered only when all are on PATH.
    tools: ClassVar[tuple[str, ...]] = ()

    def missing_tools(self) -> list[str]:
        return [tool for tool in self.tools if shutil.which(tool) is None]

    def accepts_input(self, fmt: str) -> bool:
        return ANY_FORMAT in self.input_formats or fmt in self.input_formats

    def check_pair(self, input_format: str, output_format: str) -> None:
        """Raise OptionError when this input cannot become this output (e.g. a sheet as docx)."""
        return None

    def validate_options(self, raw: dict[str, Any], output_format: str) -> dict[str, Any]:
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
