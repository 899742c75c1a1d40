"""`convertd convert`: the same converters, run on local files without a server."""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from convertd.config import Config
from convertd.converters.base import Limits, OptionError, Task, canonical_format
from convertd.converters.registry import Registry, default_registry
from convertd.errors import ConversionError
from convertd.files import DataDir, safe_filename
from convertd.office import OfficePool
from convertd.watch import place_file
from convertd.worker import package_outputs

OFFICE_FILETYPES = {"document", "pdf", "ebook"}


@dataclasses.dataclass
class Outcome:
    source: Path
    output: Path | None = None
    error: str | None = None
    seconds: float = 0.0


Progress = Callable[[Path, int], None]


async def _convert_one(
    registry: Registry,
    source: Path,
    fmt: str,
    raw_options: dict[str, Any],
    filetype: str | None,
    destination: Path | None,
    limits: Limits,
    progress: Progress,
) -> Outcome:
    started = time.monotonic()
    outcome = Outcome(source)
    try:
        if not source.is_file():
            raise ConversionError("no such file")
        choice = await asyncio.to_thread(registry.infer, source, fmt, filetype)
        if isinstance(choice, str):
            raise ConversionError(choice)
        chosen, input_format = choice
        converter = registry.get(chosen)
        if converter is None:
            missing = ", ".join(registry.known(chosen).missing_tools())  # type: ignore[union-attr]
            raise ConversionError(f"the {chosen} converter needs {missing} (see convertd doctor)")
        try:
            options = converter.validate_options(dict(raw_options), fmt)
        except OptionError as exc:
            raise ConversionError(f"bad options: {exc}") from None
        with tempfile.TemporaryDirectory(prefix="convertd-") as tmp:

            async def report(percent: int) -> None:
                progress(source, percent)

            task = Task(
                job_id="local",
                input_path=source,
                input_name=source.name,
                input_format=input_format,
                output_format=fmt,
                options=options,
                work_dir=Path(tmp),
                limits=limits,
                report_progress=report,
            )
            async with asyncio.timeout(limits.job_timeout_seconds + 5):
                outputs = await converter.convert(task)
            name, produced = package_outputs(task, outputs)
            name = safe_filename(name)
            if destination is not None and not destination.is_dir():
                if destination.exists():
                    raise ConversionError(f"{destination} exists; convertd never overwrites")
                outcome.output = place_file(
                    produced, destination.parent, destination.name, move=True
                )
            else:
                folder = destination or source.parent
                outcome.output = place_file(produced, folder, name, move=True)
    except ConversionError as exc:
        outcome.error = str(exc)
    except TimeoutError:
        outcome.error = f"took longer than {limits.job_timeout_seconds:.0f} s"
    except OSError as exc:
        outcome.error = f"{exc.strerror}: {exc.filename}"
    outcome.seconds = time.monotonic() - started
    return outcome


async def convert_files(
    config: Config,
    sources: list[Path],
    to: str,
    options: dict[str, Any],
    filetype: str | None,
    destination: Path | None,
    progress: Progress,
    done: Callable[[Outcome, int, int], None],
) -> list[Outcome]:
    fmt = canonical_format(to)
    office = OfficePool(DataDir(config.data_dir).office, 1, config.office_recycle_after)
    registry = default_registry(office)
    limits = Limits(
        max_image_pixels=config.max_image_pixels,
        job_timeout_seconds=config.job_timeout_seconds,
        max_media_seconds=config.max_media_seconds,
    )
    await asyncio.to_thread(office.detect)
    office.start()  # instances start lazily, only if a document needs one
    outcomes: list[Outcome] = []
    try:
        for n, source in enumerate(sources, 1):
            outcome = await _convert_one(
                registry, source, fmt, options, filetype, destination, limits, progress
            )
            outcomes.append(outcome)
            done(outcome, n, len(sources))
    finally:
        await office.stop()
    return outcomes
