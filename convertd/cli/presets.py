"""`convertd presets list|show|add|remove`: named option sets, checked as a conversion's are."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from convertd.cli.common import config_of, fail, print_table, runs_on_database
from convertd.config import ConfigError
from convertd.converters.registry import FILETYPES, default_registry
from convertd.drops.rules import preset_users
from convertd.errors import ConvertdError
from convertd.files import DataDir
from convertd.office.pool import OfficePool
from convertd.presets import BUILTIN, Preset, PresetError, check_fields, check_name
from convertd.store.db import Database
from convertd.tasks.presets import Presets, UnknownPreset


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    group = sub.add_parser(
        "presets", parents=[common], help="named option sets: list, show, add and remove"
    )
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        parents=[common],
        help="every preset in force: built-in, the config's, the database's",
        epilog="example: convertd presets list --json",
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    runs_on_database(listing, _list)
    show = actions.add_parser(
        "show",
        parents=[common],
        help="one preset",
        epilog="example: convertd presets show web-photo",
    )
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="accepted: show always prints JSON")
    runs_on_database(show, _show)
    add = actions.add_parser(
        "add",
        parents=[common],
        help="save a preset (checked as /v1/convert checks a conversion)",
        epilog="example: convertd presets add web-small --filetype image --to webp "
        '--options \'{"width": 1024, "quality": 75, "strip_metadata": true}\'',
    )
    add.add_argument("name")
    add.add_argument("--filetype", required=True, help="image, audio, video, document, pdf, ...")
    add.add_argument("--to", required=True, dest="output_format", help="the output format")
    add.add_argument("--options", default="{}", help="a JSON object of converter options")
    add.add_argument("--description", default="", help="what the preset is for")
    add.add_argument(
        "--replace", action="store_true", help="replace a saved or built-in preset of that name"
    )
    runs_on_database(add, _add)
    remove = actions.add_parser(
        "remove",
        parents=[common],
        help="remove a saved preset (built-ins stay; one it replaced is in force again)",
        epilog="example: convertd presets remove web-small",
    )
    remove.add_argument("name")
    runs_on_database(remove, _remove)


def _presets(args: argparse.Namespace) -> Presets:
    """The presets as the daemon with this config sees them."""
    config = config_of(args)
    registry = default_registry(
        OfficePool(DataDir.of(config).office, 1, uno_python=config.uno_python)
    )
    try:
        return Presets(registry, config.presets, preset_users(config.watch_rules))
    except PresetError as exc:
        raise ConfigError(str(exc)) from None


def _json(preset: Preset) -> dict[str, Any]:
    return preset.as_json()


async def _list(db: Database, args: argparse.Namespace) -> int:
    presets = _presets(args)
    found = await presets.all(db)
    # A saved preset the config file shadows is listed too, as not in force.
    shadowed = await presets.shadowed(db)
    for p in shadowed:
        print(
            f"warning: the saved preset {p.name!r} is not in force: the config file has one "
            f"of that name (`convertd presets remove {p.name}` removes the saved one)",
            file=sys.stderr,
        )
    if args.json:
        out = [_json(p) for p in found]
        out += [{**_json(p), "note": presets.source_note(p)} for p in shadowed]
        print(json.dumps(out, indent=2))
        return 0
    rows = [["NAME", "FILETYPE", "TO", "SOURCE", "OPTIONS"]]
    for p, source in [
        *((p, p.source) for p in found),
        *((p, "database (shadowed)") for p in shadowed),
    ]:
        options = json.dumps(p.options, separators=(",", ":"))
        rows.append([p.name, p.filetype, p.output_format, source, options])
    print_table(rows)
    return 0


async def _show(db: Database, args: argparse.Namespace) -> int:
    presets = _presets(args)
    try:
        preset = await presets.get(db, args.name)
    except UnknownPreset as exc:
        return fail(exc.message)
    out = _json(preset)
    if note := presets.source_note(preset):
        out["note"] = note
    print(json.dumps(out, indent=2))
    return 0


async def _add(db: Database, args: argparse.Namespace) -> int:
    try:
        options = json.loads(args.options)
    except json.JSONDecodeError as exc:
        return fail(f"--options is not valid JSON: {exc.msg} at position {exc.pos}", 2)
    try:
        name = check_name(args.name)
        fields = check_fields(
            args.filetype, args.output_format, options, args.description, FILETYPES
        )
    except PresetError as exc:
        return fail(str(exc), 2)
    try:
        saved, before = await _presets(args).save(
            db,
            Preset(name, *fields),
            replace=args.replace,
            replace_hint=f"Add --replace to replace it (`convertd presets show {name}`).",
        )
    except ConvertdError as exc:
        return fail(f"{exc.message}{f' {exc.hint}' if exc.hint else ''}", 2)
    if before is not None:
        what = "built-in" if before.source == BUILTIN else "saved"
        print(
            f"Replaced the {what} preset {name!r} "
            f"({before.filetype} -> {before.output_format}, options {json.dumps(before.options)}).",
            file=sys.stderr,
        )
    print(json.dumps(_json(saved), indent=2))
    return 0


async def _remove(db: Database, args: argparse.Namespace) -> int:
    name = args.name.strip().lower()
    try:
        revealed = await _presets(args).remove(db, name)
    except ConvertdError as exc:
        return fail(f"{exc.message}{f' {exc.hint}' if exc.hint else ''}")
    print(f"Removed the preset {name!r}.")
    if revealed is not None:
        print(f"The built-in {name!r} is in force again.")
    return 0
