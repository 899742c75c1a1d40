"""The operations the task engine runs itself (not on the conversion queue): what each one
does with its inputs' files, written into the staging directory the engine publishes."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Protocol

from convertd.browser.chromium import Chromium
from convertd.config import Config
from convertd.fetch import FetchError, Policy, fetch
from convertd.files import extension_of, safe_filename, stem_of
from convertd.metrics import Metrics
from convertd.store import tasks
from convertd.tasks import metadata
from convertd.tasks.bundle import make_archive, unique_names
from convertd.tasks.capture import capture_website
from convertd.tasks.conversion import OfficePdf
from convertd.tasks.merge import merge
from convertd.tasks.metadata_write import metadata_write
from convertd.tasks.ocr import ocr
from convertd.tasks.operations import TaskFailed
from convertd.tasks.optimize import optimize
from convertd.tasks.outputs import link_or_copy
from convertd.tasks.parameters import ENGINE_WORK
from convertd.tasks.thumbnail import thumbnail
from convertd.tasks.watermark import watermark


@dataclasses.dataclass(frozen=True)
class Means:
    """What the operations use besides their inputs: the settings, the warm browser, a way
    to make an office document a PDF, and the metrics a /v2 task's end is counted in."""

    config: Config
    chromium: Chromium | None = None
    office_pdf: OfficePdf | None = None
    metrics: Metrics | None = None  # perform()'s; a drop folder counts its files instead


class Inputs(Protocol):
    """The files of the tasks a task depends on: all of them, or `only` those tasks'."""

    def __call__(self, only: list[str] | None = None) -> Awaitable[list[Path]]: ...


async def perform(
    task: tasks.Task,
    staging: Path,
    inputs: Inputs,
    policy: Policy,
    means: Means,
) -> None:
    """Run one of the operations the engine runs itself, writing its files into `staging`;
    counted in the metrics (by operation: import/url and export/url are not counted) as it
    ends: finished, failed, or cancelled (by its client, or by a shutdown)."""
    started, state = time.monotonic(), "failed"
    try:
        await _perform(task, staging, inputs, policy, means)
        state = "finished"
    except asyncio.CancelledError:
        state = "cancelled"
        raise
    finally:
        if means.metrics is not None:
            means.metrics.task_ended(task.operation, state, time.monotonic() - started)


async def _perform(
    task: tasks.Task, staging: Path, inputs: Inputs, policy: Policy, means: Means
) -> None:
    config = means.config
    if task.operation == "import/url":
        await import_url(task, staging, policy, config)
    elif task.operation == "archive":
        await archive(task, await inputs(), staging)
    elif task.operation == "watermark" and "image" in task.payload:
        # The image's task is the last one depended on (operations.with_image).
        *marked, image = task.depends_on
        paths, images = await inputs(marked), await inputs([image])
        await run_operation(task.operation, task.payload, paths, staging, means, images)
    elif task.operation in ENGINE_WORK:
        paths = await inputs() if task.depends_on else []
        await run_operation(task.operation, task.payload, paths, staging, means)
    else:  # export/url with archive_multiple_files
        await export_zipped(await inputs(), staging)


async def run_operation(
    operation: str,
    payload: dict[str, Any],
    paths: list[Path],
    staging: Path,
    means: Means,
    images: list[Path] | None = None,
) -> None:
    """One of ENGINE_WORK's operations on `paths`, its files written into `staging` (for a
    /v2 task, and for a step of a drop folder's pipeline). `images`: a watermark's image task's
    files (a /v2 task's only: a pipeline step has no other task to name)."""
    config, timeout = means.config, means.config.job_timeout_seconds
    if operation == "merge":
        await merge(payload, paths, staging, timeout, config.max_media_seconds, means.office_pdf)
    elif operation == "thumbnail":
        await thumbnail(payload, paths, staging, timeout, means.office_pdf)
    elif operation == "metadata":
        await metadata.metadata(paths, staging, timeout)
    elif operation == "metadata/write":
        await metadata_write(payload, paths, staging, timeout, config.max_image_pixels)
    elif operation == "optimize":
        await optimize(payload, paths, staging, timeout)
    elif operation == "watermark":
        await watermark(payload, paths, staging, config.max_image_pixels, images)
    elif operation == "ocr":
        await ocr(payload, paths, staging, timeout, config.max_image_pixels)
    elif operation == "capture-website":
        await capture_website(payload, paths, staging, means.chromium, config.max_image_pixels)
    else:
        raise AssertionError(f"not an engine-run operation: {operation}")


async def import_url(task: tasks.Task, staging: Path, policy: Policy, config: Config) -> None:
    """Download the task's URL into `staging`, under the network policy and the limits."""
    url = task.payload["url"]
    download = staging / ".download"
    try:
        fetched = await fetch(
            url,
            download,
            policy=policy,
            max_bytes=config.max_upload_bytes,
            timeout=config.import_url_timeout_seconds,
            idle_timeout=config.upload_idle_timeout_seconds,
            headers=task.payload.get("headers"),
        )
    except FetchError as exc:
        raise TaskFailed("IMPORT_FAILED", str(exc)) from None
    name = safe_filename(task.payload.get("filename") or fetched.name or "file")
    await asyncio.to_thread(os.replace, download, staging / name)


async def archive(task: tasks.Task, paths: list[Path], staging: Path) -> None:
    """The inputs' files as one archive in the task's format."""
    if not paths:
        raise TaskFailed("INVALID_INPUT", "The archive's inputs have no files")
    fmt = task.payload["output_format"]
    name = safe_filename(task.payload.get("filename") or f"archive.{fmt}")
    if extension_of(name) != fmt:
        name = f"{stem_of(name)}.{fmt}"
    await asyncio.to_thread(make_archive, paths, staging / name, fmt)


async def export_zipped(paths: list[Path], staging: Path) -> None:
    """export/url with archive_multiple_files: one ZIP of several files (made outside the
    step, as a big one takes a while), or the one file as it is."""
    if len(paths) > 1:
        await asyncio.to_thread(make_archive, paths, staging / "archive.zip", "zip")
    else:
        await asyncio.to_thread(link_all, paths, staging)


def link_all(paths: list[Path], staging: Path) -> None:
    # Two inputs may hold files of the same name: each keeps its own, numbered.
    for path, name in zip(paths, unique_names(paths), strict=True):
        link_or_copy(path, staging / name)
