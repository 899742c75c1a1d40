"""Archives: zip, 7z and tar (plain, gz, bz2, xz) in and out, converted in a child process.

The unpacking and packing (`unpack.py`) run in `convertd _archive-worker`: a hostile archive's
parse (py7zr builds an object per entry, 100,000 of them for a bomb) leaves the daemon's memory
fragmented for good, and a thread cannot be stopped at the job timeout; a process can be
killed, and gives all its memory back when it ends.
"""

from __future__ import annotations

import errno
import json
import logging
import sys
from pathlib import Path

from convertd import procs
from convertd.converters.base import Converter, Task
from convertd.converters.options import Option
from convertd.converters.unpack import FORMATS, convert_archive
from convertd.errors import DISK_FULL, ConversionError

logger = logging.getLogger(__name__)

ARCHIVE_OPTIONS = {
    "compression_level": Option(int, "0 (store) to 9 (smallest)", 0, 9),
    "password": Option(
        str,
        "Password of an encrypted zip or 7z input; with 7z output, "
        "the output is encrypted with it (names included)",
    ),
}

WORKER_COMMAND = "_archive-worker"
REFUSED = 3


def worker_main() -> int:
    """The child side: one conversion described by JSON on stdin (not argv: options may hold a
    password). A refused or damaged archive exits REFUSED with the reason as the last line on
    stderr."""
    request = json.loads(sys.stdin.buffer.read())
    try:
        convert_archive(
            Path(request["input"]),
            request["input_format"],
            Path(request["output"]),
            request["output_format"],
            Path(request["work"]),
            request["options"],
        )
    except ConversionError as exc:
        print(exc, file=sys.stderr)
        return REFUSED
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        print(DISK_FULL, file=sys.stderr)
        return REFUSED
    return 0


def worker_command() -> list[str]:
    """How to start this program again: the single-file build is its own interpreter."""
    if getattr(sys, "frozen", False):
        return [sys.executable, WORKER_COMMAND]
    return [sys.executable, "-m", "convertd", WORKER_COMMAND]


class ArchiveConverter(Converter):
    filetype = "archive"
    input_formats = FORMATS
    output_formats = FORMATS

    def engine(self, input_format: str | None, output_format: str) -> str:
        return "7z" if "7z" in (input_format, output_format) else "python"

    options = ARCHIVE_OPTIONS

    async def convert(self, task: Task) -> list[Path]:
        if task.options.get("password") and not (
            task.input_format in {"zip", "7z"} or task.output_format == "7z"
        ):
            raise ConversionError(
                "The 'password' option opens a zip or 7z input, or encrypts a 7z output"
            )
        out = task.output_path()
        request = {
            "input": str(task.input_path),
            "input_format": task.input_format,
            "output": str(out),
            "output_format": task.output_format,
            "work": str(task.work_dir),
            "options": task.options,
        }
        result = await procs.run(
            worker_command(),
            timeout=task.limits.job_timeout_seconds,
            stdin=json.dumps(request).encode(),
            name="archive unpacking",
        )
        if result.returncode == REFUSED:
            raise ConversionError(procs.last_line(result.stderr, "The archive was refused"))
        if result.returncode != 0:
            logger.error("archive worker failed (%d): %s", result.returncode, result.stderr[-2000:])
            raise ConversionError("Internal error while converting this archive")
        return [out]
