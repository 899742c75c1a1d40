"""A drop folder's pipeline: a file through a rule's `steps` (convert, ocr, optimize,
watermark, thumbnail, merge, metadata, capture-website), each step's files the next one's
input, and the last step's files the result.

A pipeline runs as one queued job (filetype PIPELINE, never a v1 filetype), so it has what every
job has: the worker pool's slots and time limit, cancellation that kills its tools, and crash
recovery (a job interrupted by a crash runs again from its first step). Each step's parameters
are the /v2 task's, checked by the same code when the daemon starts.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from convertd.browser.chromium import Chromium
from convertd.config import Config
from convertd.converters.registry import Registry
from convertd.converters.run import Output, Runner, package
from convertd.drops.batch_moves import batch_files
from convertd.drops.rules import PIPELINE
from convertd.errors import ConversionError, Invalid
from convertd.files import extension_of
from convertd.tasks.conversion import conversion_of, convert_into, office_pdf
from convertd.tasks.operations import TaskFailed, check_task
from convertd.tasks.parameters import ENGINE_WORK
from convertd.tasks.work import Means, run_operation

__all__ = ["PIPELINE", "after_steps", "check_steps", "run_pipeline"]
STEP_OPERATIONS = ("convert", *ENGINE_WORK)
MAX_STEPS = 20


def after_steps(options: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps a conversion's after-options (converters/options.AFTER_OPTIONS) stand for."""
    steps: list[dict[str, Any]] = []
    if options.get("ocr"):
        languages = options.get("ocr_languages", "eng").split("+")
        steps.append({"operation": "ocr", "output_format": "pdf", "languages": languages})
    if "optimize" in options:
        steps.append({"operation": "optimize", "profile": options["optimize"]})
    return steps


def check_steps(registry: Registry, steps: Any) -> list[dict[str, Any]]:
    """Each step's parameters as a /v2 task's, checked; Invalid names the step and field."""
    if not isinstance(steps, list) or not 1 <= len(steps) <= MAX_STEPS:
        raise Invalid(f"steps must be a list of 1 to {MAX_STEPS} operations", {"steps": []})
    checked = []
    for n, step in enumerate(steps, 1):
        where = f"steps[{n}]"
        if not isinstance(step, dict) or step.get("operation") not in STEP_OPERATIONS:
            raise Invalid(
                f"{where} must be a table with an operation: one of {', '.join(STEP_OPERATIONS)}",
                {where: []},
            )
        if "input" in step:
            raise Invalid(f"{where}: a step's input is the step before it", {where: []})
        operation = step["operation"]
        if operation == "watermark" and "image" in step:
            raise Invalid(
                f"{where}: a watermark step takes text (no other task brings an image)", {where: []}
            )
        if operation == "capture-website":
            if "url" in step:
                raise Invalid(
                    f"{where}: a capture-website step captures the file before it (an HTML "
                    "file); a URL is not a drop folder's",
                    {where: []},
                )
            step = {**step, "input": "the step before"}
        payload = check_task(registry, operation, dict(step), where)
        payload.pop("input", None)
        checked.append({"operation": operation, **payload})
    return checked


async def run_pipeline(
    steps: list[dict[str, Any]],
    source: Path,
    input_name: str,
    work_dir: Path,
    *,
    runner: Runner,
    registry: Registry,
    config: Config,
    chromium: Chromium | None,
    report: Callable[[int], Awaitable[None]],
    as_options: bool = False,
) -> Output:
    """Run the steps on `source` (a file, or a folder whose files, in name order, are a
    batch) in `work_dir`; ConversionError names the step that failed (or, `as_options`, the
    conversion's option it stands for) and why."""
    means = Means(config, chromium, functools.partial(office_pdf, registry, runner))
    paths = await asyncio.to_thread(_files_of, source)
    for n, step in enumerate(steps, 1):
        await report(round(100 * (n - 1) / len(steps)))
        staging = work_dir / f"step-{n}"
        await asyncio.to_thread(staging.mkdir)
        operation = step["operation"]
        try:
            if operation == "convert":
                await _convert(step, paths, staging, runner, registry)
            else:
                await run_operation(operation, step, paths, staging, means)
        except (TaskFailed, ConversionError) as exc:
            what = f"option {operation}" if as_options else f"step {n} ({operation})"
            problem = exc.message if isinstance(exc, TaskFailed) else str(exc)
            raise ConversionError(f"{what}: {problem}") from None
        paths = await asyncio.to_thread(_files_of, staging)
        if not paths:
            raise ConversionError(f"step {n} ({operation}) made no file")
    fmt = extension_of(paths[0].name) if len(paths) == 1 else "zip"
    return await asyncio.to_thread(package, paths, input_name, fmt, work_dir)


async def _convert(
    step: dict[str, Any], paths: list[Path], staging: Path, runner: Runner, registry: Registry
) -> None:
    if len(paths) != 1:
        raise ConversionError(f"convert takes one file; the step before made {len(paths)}")
    conversion = await asyncio.to_thread(conversion_of, registry, step, paths[0])
    converter = registry.get(conversion.filetype)
    if converter is None:
        raise ConversionError(f"the {conversion.filetype} converter is not available here")
    await convert_into(runner, converter, paths[0], conversion, staging)


def _files_of(source: Path) -> list[Path]:
    """Blocking: the file, or a batch's files (a folder)."""
    return batch_files(source) if source.is_dir() else [source]
