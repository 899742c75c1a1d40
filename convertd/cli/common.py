"""What every command shares: the --data-dir/--config options, settings, the database, tables."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from convertd.config import Config, load_config
from convertd.files import DataDir
from convertd.store.db import Database
from convertd.store.engines import open_database

# A subcommand's work: the parsed arguments in, the exit status out.
Command = Callable[[argparse.Namespace], int]


def common_options(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The options every command takes, on `parser` (the top level: `convertd --data-dir X
    keys list`) or, with none given, on a parent for each subcommand (`convertd keys list
    --data-dir X`) and each command group (`convertd keys --data-dir X list`). The copies
    default to SUPPRESS: argparse writes a subparser's defaults over the top level's values, so
    a None there would erase `--data-dir` given before the subcommand. The top level's defaults
    (None) are what is left when no place has it."""
    common = parser or argparse.ArgumentParser(add_help=False)
    unset = None if parser else argparse.SUPPRESS
    common.add_argument(
        "--data-dir",
        type=Path,
        default=unset,
        help="where the database and files live (env CONVERTD_DATA_DIR)",
    )
    common.add_argument(
        "--config", type=Path, default=unset, help="TOML config file (env CONVERTD_CONFIG)"
    )
    common.add_argument(
        "--database",
        default=unset,
        help="a PostgreSQL URL shared by several nodes (env CONVERTD_DATABASE; default: SQLite "
        "in the data dir)",
    )
    common.add_argument(
        "--storage",
        type=Path,
        default=unset,
        help="the folder every node mounts for uploads and results (env CONVERTD_STORAGE; "
        "default: the data dir)",
    )
    return common


def config_of(args: argparse.Namespace) -> Config:
    overrides = {
        name: getattr(args, name, None)
        for name in (
            "data_dir",
            "database",
            "storage",
            "host",
            "port",
            "workers",
            "drop_root",
            "log_format",
        )
    }
    return load_config(config_path=args.config, overrides=overrides)


DatabaseCommand = Callable[[Database, argparse.Namespace], Awaitable[int]]


def runs_on_database(parser: argparse.ArgumentParser, action: DatabaseCommand) -> None:
    """The command runs `action` on the daemon's database (the daemon may be running: WAL and
    the busy timeout let both work)."""

    def run(args: argparse.Namespace) -> int:
        where = DataDir.of(config_of(args)).database

        async def main() -> int:
            db = await open_database(where)
            try:
                return await action(db, args)
            finally:
                await db.close()

        return asyncio.run(main())

    parser.set_defaults(run=run)


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def fail(message: str, status: int = 1) -> int:
    print(f"convertd: {message}", file=sys.stderr)
    return status


def setup_logging() -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # watchfiles logs every batch of events; our own lines say what was taken.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
