"""`convertd convert`: the same converters, run on local files without a server, through the
same runner as the daemon's workers."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from convertd.cli.common import config_of, fail
from convertd.config import Config, ConfigError
from convertd.converters.base import Limits, canonical_format
from convertd.converters.options import OptionError
from convertd.converters.registry import CannotInfer, Registry, default_registry
from convertd.converters.run import Runner
from convertd.drops.places import place_file
from convertd.errors import ConversionError
from convertd.files import DataDir, extension_of, safe_filename
from convertd.office.pool import OfficePool
from convertd.presets import Preset, PresetError
from convertd.store.engines import open_database
from convertd.tasks.presets import Presets, UnknownPreset


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    convert = sub.add_parser(
        "convert",
        parents=[common],
        help="convert local files directly, no server needed",
        description="Convert files with the same converters the daemon uses. Results go "
        "beside each input (or into -o), never over an existing file.",
        epilog="examples:\n"
        "  convertd convert report.docx --to pdf\n"
        "  convertd convert *.png --to webp --options '{\"quality\": 80}' -o small/\n"
        "  convertd convert talk.mp4 --to mp3\n"
        "  convertd convert IMG_*.jpg --preset web-photo -o web/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    convert.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    convert.add_argument("--to", metavar="FORMAT", help="output format (or a --preset's)")
    convert.add_argument(
        "--preset", help="a preset's output format and options, under --to and --options"
    )
    convert.add_argument("--options", default="{}", metavar="JSON", help="converter options")
    convert.add_argument("--filetype", help="force a converter (image, audio, ...)")
    convert.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="output file, or folder (made if missing; a trailing / or several inputs mean a "
        "folder)",
    )
    convert.add_argument("--json", action="store_true", help="machine-readable summary")
    convert.set_defaults(run=run)


@dataclasses.dataclass
class Outcome:
    source: Path
    output: Path | None = None
    error: str | None = None
    seconds: float = 0.0


Progress = Callable[[Path, int], None]


def run(args: argparse.Namespace) -> int:
    config = config_of(args)
    try:
        options = json.loads(args.options)
    except json.JSONDecodeError:
        options = None
    if not isinstance(options, dict):
        return fail("--options must be a JSON object, e.g. '{\"quality\": 80}'", 2)
    to = args.to
    if args.preset:
        try:
            preset = asyncio.run(_preset(config, args.preset))
        except UnknownPreset as exc:
            return fail(exc.message, 2)
        # The input picks the converter (as on /v2): scan-to-pdf takes a scanned PDF too.
        to, options = to or preset.output_format, {**preset.options, **options}
    if not to:
        return fail("--to FORMAT (or a --preset) is required", 2)
    try:
        destination = _destination(args.output, len(args.inputs), canonical_format(to))
    except ValueError as exc:
        return fail(str(exc), 2)
    interactive = sys.stderr.isatty() and not args.json

    def progress(source: Path, percent: int) -> None:
        if interactive:
            print(f"\r  {source.name}: {percent:3d}%", end="", file=sys.stderr, flush=True)

    def done(outcome: Outcome, n: int, total: int) -> None:
        if args.json:
            return
        if interactive:
            print("\r\033[K", end="", file=sys.stderr)
        if outcome.error:
            print(f"[{n}/{total}] {outcome.source}: failed: {outcome.error}", file=sys.stderr)
        else:
            print(f"[{n}/{total}] {outcome.source} -> {outcome.output} ({outcome.seconds:.1f} s)")

    outcomes = asyncio.run(
        convert_files(config, args.inputs, to, options, args.filetype, destination, progress, done)
    )
    failed = [o for o in outcomes if o.error]
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "input": str(o.source),
                        "output": str(o.output) if o.output else None,
                        "error": o.error,
                        "seconds": round(o.seconds, 3),
                    }
                    for o in outcomes
                ],
                indent=2,
            )
        )
    else:
        print(f"{len(outcomes) - len(failed)} converted, {len(failed)} failed", file=sys.stderr)
    return 1 if failed else 0


async def _preset(config: Config, name: str) -> Preset:
    """The preset as the daemon with this config and data dir sees it."""
    office = OfficePool(DataDir.of(config).office, 1, uno_python=config.uno_python)
    try:
        presets = Presets(default_registry(office), config.presets)
    except PresetError as exc:
        raise ConfigError(str(exc)) from None
    db = await open_database(DataDir.of(config).database)
    try:
        return await presets.get(db, name)
    finally:
        await db.close()


async def convert_files(
    config: Config,
    sources: list[Path],
    to: str,
    options: dict[str, Any],
    filetype: str | None,
    destination: Destination | None,
    progress: Progress,
    done: Callable[[Outcome, int, int], None],
) -> list[Outcome]:
    fmt = canonical_format(to)
    # Profiles of its own, removed after: a daemon on this data dir has its instance 0 in
    # office/profile-0, and an instance's start rewrites its profile from scratch, so sharing
    # it killed the daemon's warm LibreOffice (two soffices must never share a profile).
    root = await asyncio.to_thread(_own_office_root, DataDir.of(config).office)
    office = OfficePool(root, 1, None, config.uno_python)  # a one-off never recycles
    registry = default_registry(office)
    runner = Runner(Limits.from_config(config)).start()
    outcomes: list[Outcome] = []
    try:
        await asyncio.to_thread(office.detect)
        await office.start()  # instances start lazily, only if a document needs one
        for n, source in enumerate(sources, 1):
            outcome = await _convert_one(
                registry, runner, source, fmt, options, filetype, destination, progress
            )
            outcomes.append(outcome)
            done(outcome, n, len(sources))
    finally:
        await office.stop()
        runner.stop()
        await asyncio.to_thread(shutil.rmtree, root, True)
    return outcomes


def _own_office_root(office: Path) -> Path:
    """A fresh folder for this run's LibreOffice profile, beside the daemon's (same disk and
    owner), never one of theirs."""
    office.mkdir(parents=True, exist_ok=True, mode=0o700)
    return Path(tempfile.mkdtemp(prefix=f"cli-{os.getpid()}-", dir=office))


async def _convert_one(
    registry: Registry,
    runner: Runner,
    source: Path,
    fmt: str,
    raw_options: dict[str, Any],
    filetype: str | None,
    destination: Destination | None,
    progress: Progress,
) -> Outcome:
    started = time.monotonic()
    outcome = Outcome(source)
    try:
        if not source.is_file():
            raise ConversionError("no such file")
        try:
            chosen, input_format = await asyncio.to_thread(registry.infer, source, fmt, filetype)
        except CannotInfer as exc:
            raise ConversionError(str(exc)) from None
        converter = registry.get(chosen)
        if converter is None:
            known = registry.known(chosen)
            missing = ", ".join(known.missing_tools()) if known else chosen
            raise ConversionError(f"the {chosen} converter needs {missing} (see convertd doctor)")
        try:
            options = converter.validate_options(dict(raw_options), fmt)
        except OptionError as exc:
            raise ConversionError(f"bad options: {exc}") from None

        async def report(percent: int) -> None:
            progress(source, percent)

        with tempfile.TemporaryDirectory(prefix="convertd-") as tmp:
            output = await runner.run(
                converter,
                job_id="local",
                input_path=source,
                input_name=source.name,
                input_format=input_format,
                output_format=fmt,
                options=options,
                work_dir=Path(tmp),
                report_progress=report,
            )
            outcome.output = await asyncio.to_thread(
                _place, output.path, output.name, source, destination
            )
    except ConversionError as exc:
        outcome.error = str(exc)
    except OSError as exc:
        outcome.error = f"{exc.strerror}: {exc.filename}"
    outcome.seconds = time.monotonic() - started
    return outcome


@dataclasses.dataclass(frozen=True)
class Destination:
    path: Path
    folder: bool  # results go into it; else it is the one result's name


def _destination(raw: str | None, inputs: int, fmt: str) -> Destination | None:
    """What -o means: a folder (made if missing) when it ends in a slash, is a folder or several
    inputs share it; else a file name, whose extension must agree with --to."""
    if raw is None:
        return None
    path = Path(raw).expanduser()
    if raw.endswith(("/", os.sep)) or path.is_dir() or inputs > 1:
        if path.exists() and not path.is_dir():
            raise ValueError(f"-o {raw}: that is a file; give a folder for the results")
        path.mkdir(parents=True, exist_ok=True)
        return Destination(path, folder=True)
    ext = canonical_format(extension_of(path.name))
    if ext not in (fmt, "zip"):
        named = f".{ext}" if ext else "no extension"
        raise ValueError(
            f"-o {raw} has {named}, but --to is {fmt}: name it {path.stem}.{fmt}, or give a folder"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    return Destination(path, folder=False)


def _place(produced: Path, name: str, source: Path, destination: Destination | None) -> Path:
    """Beside the input, in the -o folder, or as the -o file; never over an existing file."""
    if destination is None or destination.folder:
        folder = destination.path if destination else source.parent
        return place_file(produced, folder, safe_filename(name), move=True)
    target = destination.path
    if canonical_format(extension_of(name)) != canonical_format(extension_of(target.name)):
        raise ConversionError(
            f"the result is {name} (several files, zipped); give -o a folder or a .zip name"
        )
    if target.exists():
        raise ConversionError(f"{target} exists; convertd never overwrites")
    return place_file(produced, target.parent, target.name, move=True)
