"""Backing the database up while the daemon runs, and putting a backup back while it does not.

A backup is SQLite's online backup API run inside one read transaction on the source: in WAL
mode a reader holds a snapshot and never blocks the daemon's writers (nor they it), so the copy
is of one moment however long it takes and however busy the daemon is, and it never restarts
(a backup outside a transaction starts over whenever another connection writes, which on a busy
daemon could be forever). The copy is made beside its destination, switched out of WAL into a
single self-contained file, checked (`integrity_check`, schema version), synced, and only then
renamed into place: FILE is whole or absent, never half written.

A restore checks the file the same way (and migrates an older one), keeps the current database
aside as `convertd.db.before-restore-<time>`, and renames the new one in. The current database's
WAL is folded into it first, so no stale `-wal` can be replayed onto the restored file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from convertd.files import DataDir
from convertd.store.migrations import SCHEMA_VERSION, SchemaTooNew, migrate
from convertd.store.sqlite import out_of_space

# Pages per backup step (4 KiB each): a progress line per 16 MiB, and a step never holds the
# source's lock for long (in WAL it blocks no writer anyway).
STEP_PAGES = 4096
# What the summary counts, when the table exists at the database's schema version.
COUNTED = (("api_keys", "keys"), ("jobs", "jobs"), ("tasks", "tasks"), ("webhooks", "webhooks"))
# Tables every convertd database has from schema version 1 on.
CORE_TABLES = {"plans", "api_keys", "jobs", "uploads"}


class BackupError(Exception):
    """A backup or restore cannot be carried out; the message says why and what to do."""


class DiskFull(BackupError):
    """SQLite or the file system could not write a file for want of space."""


@dataclasses.dataclass(frozen=True)
class Summary:
    """What a backup file holds."""

    path: Path
    size: int
    schema_version: int
    counts: dict[str, int]

    def describe(self) -> str:
        counts = ", ".join(f"{n} {what}" for what, n in self.counts.items())
        return f"{self.path}: {self.size:,} bytes, schema {self.schema_version}, {counts}"


def backup(
    source: Path,
    dest: Path,
    *,
    force: bool = False,
    data_dir: DataDir | None = None,
    pages: int = STEP_PAGES,
    progress: Callable[[int, int], None] | None = None,
) -> Summary:
    """Copy the database at `source` (the daemon may be writing to it) to `dest`.

    `progress(done, total)` is called after each step of `pages` pages. `data_dir`, when given,
    is the daemon's: no backup may be written anywhere inside it.
    """
    if not source.is_file():
        raise BackupError(f"no database at {source}: nothing to back up (check --data-dir)")
    _refuse_live_target(dest, source, data_dir)
    if dest.is_dir():
        raise BackupError(f"{dest} is a directory; name the backup file")
    if dest.exists() and not force:
        raise BackupError(f"{dest} exists; choose another name, or replace it with --force")
    if not dest.parent.is_dir():
        raise BackupError(f"no directory {dest.parent} to write the backup in")
    temp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with _no_space(f"the backup could not be written to {dest}", dest.parent):
            summary = _copy(source, temp, pages, progress)
            _fsync(temp)
            os.replace(temp, dest)
            _fsync(dest.parent)
    finally:
        _remove_sqlite_files(temp)
    return dataclasses.replace(summary, path=dest)


def _copy(
    source: Path, temp: Path, pages: int, progress: Callable[[int, int], None] | None
) -> Summary:
    with _connect(source, read_only=True) as src, _connect(temp) as out:
        # The read transaction is the snapshot: every step reads the same moment.
        src.execute("BEGIN")
        src.execute("SELECT COUNT(*) FROM sqlite_master")  # takes the snapshot
        version = _user_version(src)
        if version > SCHEMA_VERSION:
            raise _too_new(source, version)

        def step(status: int, remaining: int, total: int) -> None:
            if progress is not None:
                progress(total - remaining, total)

        src.backup(out, pages=pages, progress=step)
        src.execute("COMMIT")
        _make_self_contained(out)
        return _verify(out, temp, expected_version=version)


# The files beside the database that SQLite and the daemon keep open while it runs.
LIVE_SUFFIXES = ("", "-wal", "-shm", "-journal")
WHERE_TO = "write backups outside the data dir, e.g. /srv/backups/convertd-$(date +%F).db"


def _refuse_live_target(dest: Path, database: Path, data_dir: DataDir | None) -> None:
    """A backup renamed over the live database (or its -wal) would leave the daemon writing to
    a deleted file, and every write from then on lost at its next start. By resolved path (so
    symlinks and `..` do not hide it) and by inode (a hard link, a bind mount)."""
    target = dest.resolve()
    live = [Path(f"{database}{suffix}") for suffix in LIVE_SUFFIXES]
    if data_dir is not None:
        live.append(data_dir.lock)
    for path in live:
        if target == path.resolve() or _same_file(dest, path):
            raise BackupError(
                f"{dest} is the daemon's live {path.name}: a backup there would replace the "
                f"file it is writing, and lose what it writes from then on; {WHERE_TO}"
            )
    if data_dir is None:
        return
    root = data_dir.root.resolve()
    for parent in target.parents:
        if parent == root or _same_file(parent, root):
            raise BackupError(
                f"{dest} is inside the data dir {root}, which the daemon owns (and a backup "
                f"there is lost with it); {WHERE_TO}"
            )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


@contextlib.contextmanager
def _no_space(what: str, where: Path) -> Iterator[None]:
    """A full disk said as such, not as a damaged database or a traceback."""
    try:
        yield
    except (DiskFull, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise BackupError(
            f"{what}: the disk is full (free space in {where}, or choose another place); "
            "nothing was left behind"
        ) from exc


def inspect(path: Path) -> Summary:
    """Check a backup file without changing it: SQLite, whole, a convertd database, not newer."""
    if not path.exists():
        raise BackupError(f"no such file: {path}")
    if not path.is_file():
        raise BackupError(f"{path} is not a file")
    with _connect(path, at_rest=True) as conn:
        version = _checked_version(conn, path)
        return _verify(conn, path, expected_version=version)


@dataclasses.dataclass(frozen=True)
class Restored:
    summary: Summary  # of the database now in place (migrated)
    from_version: int  # the backup's own schema version
    kept_aside: Path | None  # where the database it replaced went


def restore(source: Path, database: Path) -> Restored:
    """Put the backup `source` in place as `database`. The caller holds the data dir's lock:
    no daemon may run on it meanwhile."""
    inspect(source)
    temp = database.with_name(f".{database.name}.restore.tmp")
    _remove_sqlite_files(temp)
    unwritten = f"the backup could not be restored into {database.parent}"
    try:
        with _no_space(unwritten, database.parent):
            with _connect(source, at_rest=True) as src, _connect(temp) as out:
                src.execute("BEGIN")
                version = _checked_version(src, source)  # reads, so takes the snapshot
                src.backup(out)
                src.execute("COMMIT")
                _make_self_contained(out)
                # Migrated here: a backup too damaged to migrate is refused before anything moves.
                migrate(out)
                summary = _verify(out, temp, expected_version=SCHEMA_VERSION)
            _copy_owner(database if database.exists() else database.parent, temp)
            _fsync(temp)
            # A -wal without its database (removed by hand) would be replayed onto the new one.
            leftovers = [Path(f"{database}{suffix}") for suffix in ("", "-wal", "-shm")]
            kept = _set_aside(database) if any(p.exists() for p in leftovers) else None
            os.replace(temp, database)
            _fsync(database.parent)
    finally:
        _remove_sqlite_files(temp)
    return Restored(dataclasses.replace(summary, path=database), version, kept)


@contextlib.contextmanager
def _connect(
    path: Path, *, read_only: bool = False, at_rest: bool = False
) -> Iterator[sqlite3.Connection]:
    """`at_rest`: a file nothing writes to (a backup), read without making -wal or -shm files
    beside it, unless a -wal is already there to be read."""
    mode = "ro" if read_only or at_rest else "rwc"
    uri = f"file:{_quote(path)}?mode={mode}"
    if at_rest and not Path(f"{path}-wal").exists():
        uri += "&immutable=1"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {path}: {exc}") from exc
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA foreign_keys = ON")  # as the daemon's, for a migration
        yield conn
    except sqlite3.DatabaseError as exc:
        if out_of_space(exc, path.parent):
            raise DiskFull(f"{path}: {exc}") from exc
        raise BackupError(f"{path} is not a usable SQLite database ({exc})") from exc
    finally:
        conn.close()


def _quote(path: Path) -> str:
    # A URI filename: '?' and '#' (and '%') in a path would otherwise end it.
    return str(path.resolve()).replace("%", "%25").replace("?", "%3f").replace("#", "%23")


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {str(row[0]) for row in rows}


def _checked_version(conn: sqlite3.Connection, path: Path) -> int:
    try:
        version = _user_version(conn)
        tables = _tables(conn)
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a SQLite database ({exc})") from exc
    if version > SCHEMA_VERSION:
        raise _too_new(path, version)
    if version < 1 or not tables >= CORE_TABLES:
        raise BackupError(f"{path} is a SQLite database, but not one of convertd's")
    return version


def _too_new(path: Path, version: int) -> SchemaTooNew:
    return SchemaTooNew(
        f"{path} is at schema version {version}, but this convertd knows only up to "
        f"{SCHEMA_VERSION}; use a convertd at least as new as the one that wrote it"
    )


def _make_self_contained(conn: sqlite3.Connection) -> None:
    """One file, no -wal beside it: what a backup copied from a WAL database must become."""
    conn.execute("PRAGMA journal_mode = DELETE")


def _verify(conn: sqlite3.Connection, path: Path, *, expected_version: int) -> Summary:
    problems = [str(row[0]) for row in conn.execute("PRAGMA integrity_check").fetchall()]
    if problems != ["ok"]:
        raise BackupError(f"{path} fails SQLite's integrity check: {'; '.join(problems[:3])}")
    version = _user_version(conn)
    if version != expected_version:
        raise BackupError(f"{path} is at schema version {version}, expected {expected_version}")
    tables = _tables(conn)
    counts = {
        what: int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608 (COUNTED)
        for table, what in COUNTED
        if table in tables
    }
    return Summary(path, path.stat().st_size, version, counts)


def _set_aside(database: Path) -> Path:
    """Keep the current database, whole, under another name: its WAL folded in first, so that
    no -wal or -shm of it is left for SQLite to replay onto the file that takes its place. The
    file itself is linked, not moved: until the new one is renamed over it, it stays in place."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = database.with_name(f"{database.name}.before-restore-{stamp}")
    n = 1
    while aside.exists():  # two restores within a second: keep both
        n += 1
        aside = database.with_name(f"{database.name}.before-restore-{stamp}-{n}")
    try:
        if not database.exists():
            raise BackupError("only its -wal is left")
        with _connect(database) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            _make_self_contained(conn)
    except BackupError:
        # A database too damaged to open (the reason for many a restore): its WAL goes aside
        # as it is, under the name SQLite looks for beside the kept file.
        pass
    for suffix in ("-wal", "-shm"):
        current = Path(f"{database}{suffix}")
        if current.exists():
            os.replace(current, Path(f"{aside}{suffix}"))
    if database.exists():
        try:
            os.link(database, aside)
        except OSError:  # a file system without hard links
            shutil.copy2(database, aside)
    return aside


def _copy_owner(model: Path, path: Path) -> None:
    """The restored file gets the current one's mode (else the data dir's, less execute), and
    its owner when we may set it: root restoring for a service's own user."""
    stat = model.stat()
    os.chmod(path, stat.st_mode & (0o777 if model.is_file() else 0o666))
    give_to_owner(path, model)


def give_to_owner(path: Path, model: Path) -> None:
    """Run as root, make `path` belong to `model`'s owner, so that the daemon running as that
    user can open it; otherwise nothing to do."""
    if os.geteuid() == 0:
        stat = model.stat()
        os.chown(path, stat.st_uid, stat.st_gid)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_sqlite_files(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()
