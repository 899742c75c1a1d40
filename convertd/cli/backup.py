"""`convertd backup FILE` (while the daemon runs), `convertd restore FILE` (while it does not)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from convertd.cli.common import config_of, fail
from convertd.files import DataDir
from convertd.store import backup
from convertd.store.migrations import SCHEMA_VERSION


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    save = sub.add_parser(
        "backup",
        parents=[common],
        help="copy the database to FILE, also while the daemon runs",
        description=(
            "Copy the database (keys, plans, jobs, tasks, webhooks) to FILE as one consistent "
            "snapshot, without stopping the daemon or holding up its writes. FILE is checked "
            "(integrity, schema version) before it appears; uploads and results are not in it "
            "(see the README's 'Backups and upgrades')."
        ),
        epilog="example: convertd backup /srv/backups/convertd-$(date +%F).db",
    )
    save.add_argument("file", type=Path, metavar="FILE")
    save.add_argument("--force", action="store_true", help="replace FILE if it exists")
    save.set_defaults(run=run_backup)

    put_back = sub.add_parser(
        "restore",
        parents=[common],
        help="put a backup in place of the database (daemon stopped)",
        description=(
            "Replace the database with the backup FILE, after checking it. The daemon must be "
            "stopped. The current database is kept beside it as "
            "convertd.db.before-restore-<time>; an older backup is migrated to this convertd's "
            "schema."
        ),
        epilog=(
            "example: systemctl stop convertd && "
            "convertd restore convertd-2026-01-31.db --data-dir /var/lib/convertd"
        ),
    )
    put_back.add_argument("file", type=Path, metavar="FILE")
    put_back.set_defaults(run=run_restore)


POSTGRES_BACKUP = (
    "the database is PostgreSQL (--database): back it up with pg_dump and restore it with "
    "pg_restore; copy the storage folder as it is"
)


def run_backup(args: argparse.Namespace) -> int:
    data = DataDir.of(config_of(args))
    database = data.database
    if not isinstance(database, Path):
        return fail(POSTGRES_BACKUP)
    try:
        summary = backup.backup(database, args.file, force=args.force, data_dir=data)
    except backup.BackupError as exc:
        return fail(str(exc))
    print(f"backed up {database}")
    print(f"  to {summary.describe()}")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    from convertd.server import AlreadyRunning, lock_data_dir

    data = DataDir.of(config_of(args))
    if not isinstance(data.database, Path):
        return fail(POSTGRES_BACKUP)
    try:
        lock = lock_data_dir(data)  # held until the end: no daemon may start meanwhile
    except AlreadyRunning as exc:
        return fail(f"{exc}; stop it first (e.g. systemctl stop convertd), then restore")
    # First, so that a restore into the wrong data dir (root's own, not the service's) shows.
    print(f"restoring into the data dir {data.root}")
    if not data.database.exists():
        print(
            f"convertd: warning: restoring into an empty data dir {data.root}: is this the "
            "daemon's? see --data-dir",
            file=sys.stderr,
        )
    try:
        backup.give_to_owner(data.lock, data.root)  # a lock root made must not lock the daemon out
        restored = backup.restore(args.file, data.database)
    except backup.BackupError as exc:
        return fail(str(exc))
    finally:
        lock.close()
    print(f"restored {args.file} (schema {restored.from_version})")
    print(f"  as {restored.summary.describe()}")
    if restored.from_version < SCHEMA_VERSION:
        print(f"  migrated from schema {restored.from_version} to {SCHEMA_VERSION}")
    if restored.kept_aside is not None:
        print(f"  the database it replaced is kept as {restored.kept_aside}")
    return 0
