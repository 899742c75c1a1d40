"""A convert task as a queued conversion: which converter, from which format (when it starts),
and its output as the task's files (when it ends)."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from convertd.converters.base import Converter
from convertd.converters.options import OptionError
from convertd.converters.registry import CannotInfer, Registry, Unreadable
from convertd.converters.run import Runner
from convertd.errors import ConversionError
from convertd.files import DataDir, extension_of, safe_filename, stem_of
from convertd.store import jobs, tasks
from convertd.tasks.operations import TaskFailed, convert_options
from convertd.tasks.outputs import describe, link_or_copy


def conversion_of(registry: Registry, payload: dict[str, Any], source: Path) -> jobs.Conversion:
    """Blocking (it may read the file's first bytes): which converter, from which format, for
    a convert task's (or a pipeline step's) checked payload."""
    output_format = payload["output_format"]
    given = payload.get("input_format")
    if given:
        candidates = registry.making(output_format, given)
        if not candidates:
            raise TaskFailed(
                "INVALID_CONVERSION_TYPE", f"convertd cannot convert {given} to {output_format}"
            )
        converter, input_format = candidates[0], given
    else:
        try:
            filetype, input_format = registry.infer(source, output_format)
        except CannotInfer as exc:
            raise TaskFailed("INVALID_CONVERSION_TYPE", str(exc)) from None
        found = registry.get(filetype)
        if found is None:
            raise TaskFailed("ENGINE_UNAVAILABLE", f"The {filetype} converter is not here")
        converter = found
    try:
        options = converter.validate_options(convert_options(payload), output_format)
        converter.check_input(input_format, options)
    except OptionError as exc:
        raise TaskFailed("INVALID_OPTIONS", str(exc)) from None
    return jobs.Conversion(
        converter.filetype, input_format, output_format, options, payload.get("timeout")
    )


# An office document made a PDF in a folder: office_pdf bound to a registry and a runner.
OfficePdf = Callable[[Path, Path], Awaitable[Path]]


async def office_pdf(registry: Registry, runner: Runner, source: Path, into: Path) -> Path:
    """An office document as a PDF in `into`, made as a convert task to pdf makes it (the
    document converter: the warm LibreOffice, its limits and hardening). For the operations
    that take PDFs (merge, thumbnail), so an office document needs no convert task first."""
    converter = registry.get("document")
    if converter is None:
        raise TaskFailed(
            "ENGINE_UNAVAILABLE", f"{source.name} needs LibreOffice to become a PDF; it is not here"
        )
    try:
        input_format = await asyncio.to_thread(registry.input_format, converter, source, "pdf")
    except (Unreadable, OptionError) as exc:
        raise TaskFailed("INVALID_INPUT", f"{source.name} cannot become a PDF: {exc}") from None
    conversion = jobs.Conversion(converter.filetype, input_format, "pdf", {})
    name = f".office-{secrets.token_hex(6)}.pdf"  # two documents may share a stem
    try:
        return await convert_into(runner, converter, source, conversion, into, name)
    except ConversionError as exc:
        raise TaskFailed("INVALID_INPUT", f"{source.name} could not be made a PDF: {exc}") from None


async def convert_into(
    runner: Runner,
    converter: Converter,
    source: Path,
    conversion: jobs.Conversion,
    into: Path,
    name: str | None = None,
) -> Path:
    """`source` converted as a queued job would be (the runner: the converter's limits and
    hardening), in a scratch folder of `into` that goes after; the output moved into `into`
    as `name` (default: its own name). ConversionError says what failed."""
    scratch = into / f".convert-{secrets.token_hex(6)}"
    await asyncio.to_thread(scratch.mkdir)
    try:
        output = await runner.run(
            converter,
            job_id=scratch.name,
            input_path=source,
            input_name=source.name,
            input_format=conversion.input_format,
            output_format=conversion.output_format,
            options=conversion.options,
            work_dir=scratch,
            report_progress=_no_progress,
        )
        made = into / (name or output.name)
        await asyncio.to_thread(output.path.rename, made)
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)
    return made


async def _no_progress(_percent: int) -> None:
    """Progress of a conversion inside an operation: the operation reports its own."""


def take_conversion_result(
    data: DataDir, task: tasks.Task, job_id: str, result_name: str
) -> list[dict[str, Any]]:
    """Blocking: the queued job's output becomes the task's files (several outputs arrive as
    a ZIP convertd made; they are unpacked, as CloudConvert returns them one by one, and named
    `<filename's stem>-<n>.<ext>` when the task gave a filename)."""
    source = data.result_file(job_id, result_name)
    staging = data.fresh_task_staging(task.id)
    wanted = task.payload.get("output_format", "")
    filename = task.payload.get("filename")
    if extension_of(result_name) == "zip" and wanted != "zip":
        with zipfile.ZipFile(source) as zf:
            for n, info in enumerate(zf.infolist(), start=1):
                name = safe_filename(info.filename)
                if filename:
                    name = safe_filename(f"{stem_of(filename)}-{n}.{extension_of(name)}")
                with zf.open(info) as src, (staging / name).open("wb") as dst:
                    shutil.copyfileobj(src, dst)
    else:
        name = filename or result_name
        link_or_copy(source, staging / safe_filename(name))
    data.publish_task_files(task.id, staging)
    return describe(data.task_dir(task.id))
