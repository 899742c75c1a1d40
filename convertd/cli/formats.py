"""`convertd formats`: what this machine can convert, by filetype (as `GET /v1/formats`)."""

from __future__ import annotations

import argparse
import json

from convertd.cli.common import config_of
from convertd.converters.registry import default_registry
from convertd.files import DataDir
from convertd.office.pool import OfficePool


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    formats = sub.add_parser(
        "formats",
        parents=[common],
        help="what this machine can convert, by filetype",
        epilog="example: convertd formats --json",
    )
    formats.add_argument("--json", action="store_true", help="machine-readable output")
    formats.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = config_of(args)
    office = OfficePool(DataDir.of(config).office, 1, uno_python=config.uno_python)
    registry = default_registry(office)
    table = registry.formats()
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    for filetype, entry in table.items():
        print(f"{filetype}")
        print(f"  in:  {', '.join(entry['input_formats'])}")
        print(f"  out: {', '.join(entry['output_formats'])}")
        if entry["options"]:
            print(f"  options: {', '.join(entry['options'])}")
    for converter in registry.unavailable():
        print(
            f"{converter.filetype}: unavailable, needs {', '.join(converter.missing_tools())}"
            " (see `convertd doctor`)"
        )
    return 0
