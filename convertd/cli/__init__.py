"""The `convertd` command: the daemon and its admin tools, one module per command group. The
only package that prints."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from convertd import __version__
from convertd.cli import (
    backup,
    convert,
    doctor,
    drops,
    formats,
    jobs,
    keys,
    nodes,
    plans,
    presets,
    serve,
    webhooks,
)
from convertd.cli.common import common_options, config_of, setup_logging
from convertd.config import DEFAULT_PORT, ConfigError
from convertd.converters import archive
from convertd.store.db import Unreachable
from convertd.store.keys import AdminError
from convertd.store.migrations import SCHEMA_VERSION, SchemaTooNew
from convertd.store.sqlite import out_of_space

EPILOG = f"""examples:
  convertd serve                                  start on 127.0.0.1:{DEFAULT_PORT}
  convertd keys create --name laptop              make an API key (shown once)
  convertd keys create --name web --restrict domain --allow example.com
  convertd keys set 3 --plan pro                  move key 3 to another plan
  convertd plans set basic --calls-per-minute 120
  convertd presets add web-small --filetype image --to webp --options '{{"width": 1024}}'
  curl -H "X-API-Key: $KEY" -F file=@photo.png -F filetype=image \\
       -F output_format=webp http://127.0.0.1:{DEFAULT_PORT}/v1/convert
"""

# In the order `convertd --help` lists them.
COMMAND_GROUPS = (
    serve,
    keys,
    plans,
    presets,
    convert,
    doctor,
    formats,
    drops,
    jobs,
    webhooks,
    nodes,
    backup,
)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="convertd",
        description=(
            "A self-hosted file conversion daemon with a SkyConvert-compatible v1 API and a "
            "CloudConvert-compatible v2 API."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument(
        "--version", action="version", version=f"convertd {__version__} (schema {SCHEMA_VERSION})"
    )
    common_options(top)  # before the command too: `convertd --data-dir X serve`
    sub = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = common_options()
    for group in COMMAND_GROUPS:
        group.register(sub, common)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [archive.WORKER_COMMAND]:
        return archive.worker_main()  # the daemon's own child; not a command for people
    args = parser().parse_args(argv)
    setup_logging()
    try:
        status: int = args.run(args)
        sys.stdout.flush()
    except (ConfigError, AdminError, SchemaTooNew) as exc:
        print(f"convertd: {exc}", file=sys.stderr)
        return 2
    except sqlite3.DatabaseError as exc:
        print(f"convertd: {database_problem(exc, args)}", file=sys.stderr)
        return 1
    except Unreachable as exc:
        print(f"convertd: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `convertd jobs list | head`: the reader has what it wanted. Quiet, as a tool killed
        # by SIGPIPE is; stdout goes to /dev/null so the interpreter's last flush is quiet too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    return status


def database_problem(exc: sqlite3.DatabaseError, args: argparse.Namespace) -> str:
    """One line for what SQLite refused an admin command, instead of its traceback."""
    where = Path("the data dir")
    with contextlib.suppress(ConfigError, AttributeError):
        where = config_of(args).data_dir
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if out_of_space(exc, where):
        return f"the database could not be written: the disk is full (free space in {where})"
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return f"the database is busy ({exc}); try again (is something else holding it?)"
    if code == sqlite3.SQLITE_READONLY:
        return f"the database is read-only to this user ({exc}); run as the owner of {where}"
    if code == sqlite3.SQLITE_CANTOPEN:
        return f"the database could not be opened ({exc}); check {where} and its permissions"
    return f"the database could not be used: {exc} (in {where})"
