"""The one way to run a converter, for the worker pool and for `convertd convert` alike.

`Runner` owns what conversions share for the life of the app: their threads (as many as cores;
conversion work can never take the threads uploads and downloads write files with, and lands on
warm memory arenas: a fresh thread cost a JPEG resize a fifth of its time when measured here)
and Pillow's process-wide bomb limit. `run()` builds the converter's `Task`, holds it to the job
timeout, and packages what it produced: one output as itself, several as one ZIP.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import zipfile
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image

from convertd.converters.base import Converter, Limits, Task
from convertd.errors import ConversionError
from convertd.files import stem_of

# Converters stop their own tools at the job timeout and say which one hung; this outer limit,
# a little later, is the backstop for a converter that does not.
OUTER_TIMEOUT_SLACK = 5.0


@dataclasses.dataclass(frozen=True)
class Output:
    name: str  # what to deliver it as: "photo.webp", or "report.zip" for several outputs
    path: Path  # the file, inside the job's work directory
    count: int  # how many outputs the converter made


def zip_outputs(outputs: list[Path], dest: Path) -> None:
    # Outputs are already compressed formats for the most part; ZIP_DEFLATED costs little anyway.
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in outputs:
            zf.write(path, arcname=path.name)


def package(outputs: list[Path], input_name: str, output_format: str, work_dir: Path) -> Output:
    """One output is delivered as itself; several as one ZIP named after the input."""
    stem = stem_of(input_name)
    if len(outputs) == 1:
        return Output(f"{stem}.{output_format}", outputs[0], 1)
    bundle = work_dir / f".bundle-{os.getpid()}.zip"
    zip_outputs(outputs, bundle)
    return Output(f"{stem}.zip", bundle, len(outputs))


class Runner:
    def __init__(self, limits: Limits, threads: int | None = None) -> None:
        self.limits = limits
        self._threads = threads or os.cpu_count() or 2
        self._executor: ThreadPoolExecutor | None = None
        self._saved_pixel_limit: tuple[int | None] | None = None  # set while started

    def start(self) -> Runner:
        self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="convert")
        # Pillow's own bomb check is a second line behind the image converter's explicit one;
        # it is process-wide, so it is set here, for as long as the runner runs.
        self._saved_pixel_limit = (Image.MAX_IMAGE_PIXELS,)
        Image.MAX_IMAGE_PIXELS = self.limits.max_image_pixels
        return self

    def stop(self) -> None:
        if self._executor is not None:
            # A thread cannot be interrupted; one still parsing a huge input ends on its own.
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._saved_pixel_limit is not None:
            (Image.MAX_IMAGE_PIXELS,) = self._saved_pixel_limit
            self._saved_pixel_limit = None

    async def run(
        self,
        converter: Converter,
        *,
        job_id: str,
        input_path: Path,
        input_name: str,
        input_format: str,
        output_format: str,
        options: dict[str, Any],
        work_dir: Path,
        report_progress: Callable[[int], Awaitable[None]],
        timeout: float | None = None,
    ) -> Output:
        """Convert under the job limits (and `timeout`, where that is tighter); a
        ConversionError says what went wrong."""
        assert self._executor is not None, "Runner.start() first"
        limits = self.limits
        if timeout is not None and timeout < limits.job_timeout_seconds:
            limits = dataclasses.replace(limits, job_timeout_seconds=timeout)
        task = Task(
            job_id=job_id,
            input_path=input_path,
            input_name=input_name,
            input_format=input_format,
            output_format=output_format,
            options=options,
            work_dir=work_dir,
            limits=limits,
            report_progress=report_progress,
            threads=self._executor,
        )
        if not converter.takes_empty(input_format) and input_path.stat().st_size == 0:
            raise ConversionError(
                f"The input file is empty (0 bytes): there is no {input_format.upper()} to convert"
            )
        timeout = limits.job_timeout_seconds
        try:
            async with asyncio.timeout(timeout + OUTER_TIMEOUT_SLACK):
                outputs = await converter.convert(task)
        except TimeoutError:
            raise ConversionError(
                f"The conversion took longer than the {timeout:.0f} s limit"
            ) from None
        if not outputs:
            raise ConversionError("The conversion produced no output")
        if len(outputs) == 1:  # named, not moved: nothing to wait for
            return package(outputs, input_name, output_format, work_dir)
        return await task.off_loop(package, outputs, input_name, output_format, work_dir)
