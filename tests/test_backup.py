"""`convertd backup` while the daemon works, `convertd restore` while it does not: real daemons,
real SQLite files, and the backup files opened to see what they hold."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from convertd.store import backup
from convertd.store.migrations import SCHEMA_VERSION, migrate
from tests.conftest import Daemon, small_disk
from tests.daemon import run_cli

QUIET = {"CONVERTD_OFFICE_PREWARM": "false"}
JOBS = 200


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def keys_me(d: Daemon, key: str) -> requests.Response:
    return requests.get(f"{d.base}/keys/me", headers={"X-API-Key": key}, timeout=10)


def status_of(d: Daemon, key: str, job_id: str) -> requests.Response:
    return requests.get(f"{d.base}/status/{job_id}", headers={"X-API-Key": key}, timeout=10)


def test_backup_while_200_jobs_run_then_restore(make_daemon: Any, tmp_path: Path) -> None:
    d: Daemon = make_daemon(env=QUIET)
    key = d.create_key("kept", "--plan", "pro")
    finished, out = d.convert_and_fetch(key, b"before the backup", "a.txt", "hash", "sha256")
    assert out is not None and out.text.startswith(hashlib.sha256(b"before the backup").hexdigest())

    # The client submits 200 jobs; the backup runs while it is between the 50th and the 150th,
    # with the workers busy on what came before.
    submitted: list[str] = []
    halfway, backed_up = threading.Event(), threading.Event()

    def submit() -> None:
        for n in range(JOBS):
            if n == 50:
                halfway.set()
            if n == 150:
                backed_up.wait(120)
            resp = d.convert(key, f"job {n}".encode(), f"{n}.txt", "hash", "md5")
            assert resp.status_code == 202, resp.text
            submitted.append(resp.json()["job_id"])

    client = threading.Thread(target=submit)
    client.start()
    assert halfway.wait(120)
    saved = tmp_path / "saved.db"
    try:
        proc = d.cli("backup", str(saved))
    finally:
        backed_up.set()
        client.join(120)
    assert len(submitted) == JOBS
    assert f"schema {SCHEMA_VERSION}" in proc.stdout and "1 keys" in proc.stdout

    # The copy is one file, whole, of one moment in the middle of the submissions.
    assert not Path(f"{saved}-wal").exists() and not list(tmp_path.glob(".saved.db*"))
    assert rows(saved, "PRAGMA integrity_check") == [("ok",)]
    assert rows(saved, "PRAGMA journal_mode") == [("delete",)]
    assert rows(saved, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    in_backup = [r[0] for r in rows(saved, "SELECT id FROM jobs")]
    assert finished["job_id"] in in_backup and 1 + 50 <= len(in_backup) <= 1 + 150
    assert f"{len(in_backup)} jobs" in proc.stdout
    assert set(in_backup) - {finished["job_id"]} == set(submitted[: len(in_backup) - 1])

    # The daemon kept working: every job ends.
    assert all(d.wait(key, job)["status"] == "finished" for job in submitted)

    # A backup never replaces a file unless told to.
    before = digest(saved)
    refused = d.cli("backup", str(saved), check=False)
    assert refused.returncode == 1 and "exists" in refused.stderr and "--force" in refused.stderr
    assert digest(saved) == before
    again = tmp_path / "again.db"
    again.write_bytes(b"an old backup")
    d.cli("backup", str(again), "--force")
    assert rows(again, "SELECT COUNT(*) FROM jobs") == [(1 + JOBS,)]

    # Not while the daemon runs: the database stays as it is.
    refused = d.cli("restore", str(saved), check=False)
    assert refused.returncode == 1
    assert "already serving" in refused.stderr and "stop it first" in refused.stderr
    assert not list(d.data_dir.glob("convertd.db.before-restore-*"))
    assert keys_me(d, key).status_code == 200
    assert rows(d.data_dir / "convertd.db", "SELECT COUNT(*) FROM jobs") == [(1 + JOBS,)]

    # Stopped, restored over the old database, started again: the moment of the backup.
    assert d.stop() == 0
    proc = d.cli("restore", str(saved))
    assert "kept as" in proc.stdout and f"{len(in_backup)} jobs" in proc.stdout
    (aside,) = d.data_dir.glob("convertd.db.before-restore-*")
    assert rows(aside, "SELECT COUNT(*) FROM jobs") == [(1 + JOBS,)]
    assert not Path(f"{d.data_dir / 'convertd.db'}-wal").exists()
    assert not list(d.data_dir.glob(".convertd.db.restore.tmp*"))
    d = make_daemon(env=QUIET, data_dir=d.data_dir)
    assert keys_me(d, key).json()["name"] == "kept"
    done = d.wait(key, finished["job_id"])
    assert requests.get(done["download_url"], timeout=10).content == out.content
    # Jobs the backup saw waiting run again (their uploads are still there); later ones are gone.
    assert all(d.wait(key, job)["status"] == "finished" for job in in_backup)
    assert status_of(d, key, submitted[-1]).status_code == 404
    assert rows(d.data_dir / "convertd.db", "PRAGMA integrity_check") == [("ok",)]
    d.stop()

    # Into a fresh data dir: the keys and the jobs' records come along (not their files).
    fresh = tmp_path / "fresh"
    proc = run_cli(fresh, "restore", str(saved))
    assert "kept as" not in proc.stdout
    d = make_daemon(env=QUIET, data_dir=fresh)
    assert keys_me(d, key).status_code == 200
    assert status_of(d, key, finished["job_id"]).json()["status"] == "finished"


def make_database(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    migrate(conn)
    conn.close()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"PK\x03\x04 not a database at all" * 100, "not a SQLite database"),
        ("other", "not one of convertd's"),
        ("newer", f"knows only up to {SCHEMA_VERSION}"),
    ],
    ids=["missing", "garbage", "foreign-sqlite", "newer-schema"],
)
def test_restore_refuses_what_it_cannot_use(
    tmp_path: Path, content: bytes | str | None, message: str
) -> None:
    data = tmp_path / "data"
    run_cli(data, "keys", "create", "--name", "current")
    database = data / "convertd.db"
    before = digest(database)
    file = tmp_path / "backup.db"
    if isinstance(content, bytes):
        file.write_bytes(content)
    elif content == "other":
        conn = sqlite3.connect(file)
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.commit()
        conn.close()
    elif content == "newer":
        make_database(file)
        conn = sqlite3.connect(file)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.close()
    proc = run_cli(data, "restore", str(file), check=False)
    assert proc.returncode in (1, 2) and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert digest(database) == before
    assert sorted(p.name for p in data.iterdir() if "convertd.db" in p.name) == ["convertd.db"]


def test_backup_of_no_database_and_into_no_directory(tmp_path: Path) -> None:
    proc = run_cli(tmp_path / "empty", "backup", str(tmp_path / "b.db"), check=False)
    assert proc.returncode == 1 and "nothing to back up" in proc.stderr
    run_cli(tmp_path / "data", "plans", "list")
    proc = run_cli(tmp_path / "data", "backup", str(tmp_path / "no" / "b.db"), check=False)
    assert proc.returncode == 1 and "no directory" in proc.stderr


def test_backup_is_one_moment_and_holds_no_writer_up(tmp_path: Path) -> None:
    """A write committed in the middle of a backup, by a connection that will not wait at all
    (busy_timeout 0), succeeds, and the backup does not contain it: a snapshot, not a lock."""
    source = tmp_path / "c.db"
    make_database(source)
    conn = sqlite3.connect(source, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 0")
    with conn:
        conn.executemany(
            "INSERT INTO uploads (file_path, file_name, file_size, extension, created_at)"
            " VALUES (?, 'a.txt', 1, 'txt', 0)",
            [(f"{n:016x}/a.txt",) for n in range(5000)],
        )
    steps: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        steps.append((done, total))
        if len(steps) == 2:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM uploads WHERE id <= 1000")
            conn.execute("COMMIT")

    dest = tmp_path / "b.db"
    summary = backup.backup(source, dest, pages=4, progress=progress)
    assert len(steps) > 2 and steps[-1][0] == steps[-1][1]
    assert conn.execute("SELECT COUNT(*) FROM uploads").fetchone() == (4000,)
    assert rows(dest, "SELECT COUNT(*) FROM uploads") == [(5000,)]
    assert summary.schema_version == SCHEMA_VERSION and summary.size == dest.stat().st_size
    conn.close()


def leave_a_wal(database: Path, name: str) -> None:
    """Rename the key as a daemon killed with -9 would leave it: committed, in the -wal."""
    script = (
        "import os, sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "conn.execute('PRAGMA wal_autocheckpoint = 0')\n"
        "conn.execute('UPDATE api_keys SET name = ?', (sys.argv[2],))\n"
        "os._exit(0)  # no checkpoint, no close: the WAL stays\n"
    )
    subprocess.run([sys.executable, "-c", script, str(database), name], check=True)
    assert Path(f"{database}-wal").stat().st_size > 0


def test_restore_keeps_the_current_database_whole_wal_and_all(tmp_path: Path) -> None:
    """A daemon killed with -9 leaves committed writes in convertd.db-wal. A backup has them;
    the database kept aside has them (folded in); no -wal is left to be replayed onto the
    restored file."""
    data = tmp_path / "data"
    run_cli(data, "keys", "create", "--name", "in-backup")
    saved = tmp_path / "saved.db"
    run_cli(data, "backup", str(saved))
    database = data / "convertd.db"
    leave_a_wal(database, "after-backup")
    run_cli(data, "backup", str(tmp_path / "later.db"))
    assert rows(tmp_path / "later.db", "SELECT name FROM api_keys") == [("after-backup",)]
    # A database copied with its -wal (by hand, the daemon stopped) restores with what it holds.
    run_cli(tmp_path / "other", "restore", str(database))
    assert rows(tmp_path / "other" / "convertd.db", "SELECT name FROM api_keys") == [
        ("after-backup",)
    ]

    proc = run_cli(data, "restore", str(saved))
    assert "schema" in proc.stdout
    assert sorted(p.name for p in tmp_path.glob("saved.db*")) == ["saved.db"]  # read, untouched
    assert not Path(f"{database}-wal").exists() and not Path(f"{database}-shm").exists()
    assert rows(database, "SELECT name FROM api_keys") == [("in-backup",)]
    (aside,) = data.glob("convertd.db.before-restore-*")
    assert not Path(f"{aside}-wal").exists()
    assert rows(aside, "SELECT name FROM api_keys") == [("after-backup",)]
    assert rows(aside, "PRAGMA integrity_check") == [("ok",)]
    # The kept database is itself a backup that restore takes.
    run_cli(data, "restore", str(aside))
    assert rows(database, "SELECT name FROM api_keys") == [("after-backup",)]


def test_restore_sets_aside_a_wal_left_without_its_database(tmp_path: Path) -> None:
    """convertd.db removed by hand, its -wal not: the -wal belongs to another database and must
    not be replayed onto the restored one."""
    data = tmp_path / "data"
    run_cli(data, "keys", "create", "--name", "in-backup")
    saved = tmp_path / "saved.db"
    run_cli(data, "backup", str(saved))
    database = data / "convertd.db"
    leave_a_wal(database, "stale")
    database.unlink()
    run_cli(data, "restore", str(saved))
    assert rows(database, "SELECT name FROM api_keys") == [("in-backup",)]
    assert rows(database, "PRAGMA integrity_check") == [("ok",)]
    assert not Path(f"{database}-wal").exists()
    kept = {p.name.split("Z")[-1] for p in data.glob("convertd.db.before-restore-*")}
    assert kept == {"-wal", "-shm"}


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can restore for another user")
def test_root_restores_for_the_service_user(tmp_path: Path) -> None:
    """As `sudo convertd restore` for the system service: what the restore leaves in the data
    dir belongs to the data dir's owner, whom the daemon runs as, or it could not open it."""
    data = tmp_path / "data"
    run_cli(data, "keys", "create", "--name", "service")
    saved = tmp_path / "saved.db"
    run_cli(data, "backup", str(saved))
    service_uid = 65534  # nobody
    for path in [data, *data.iterdir()]:
        os.chown(path, service_uid, -1)
    (data / "convertd.lock").unlink(missing_ok=True)  # never made by the service yet
    run_cli(data, "restore", str(saved))
    assert {p.name: p.stat().st_uid for p in data.iterdir()} == {
        "convertd.db": service_uid,
        "convertd.lock": service_uid,
        **{p.name: service_uid for p in data.glob("convertd.db.before-restore-*")},
    }


def test_backup_refuses_the_live_database_and_anything_in_the_data_dir(
    make_daemon: Any, tmp_path: Path
) -> None:
    """`convertd backup DATA/convertd.db --force` while the daemon runs would rename the copy
    over the database it writes to: everything written from then on lost at its next start.
    Whatever the spelling (.., a symlink, a hard link), nothing in the data dir is replaced."""
    d: Daemon = make_daemon(env=QUIET)
    key = d.create_key("before")
    data = d.data_dir
    database = data / "convertd.db"
    (tmp_path / "to-data").symlink_to(data)
    (tmp_path / "to-db.db").symlink_to(database)
    os.link(database, tmp_path / "hard-link.db")
    (data / "uploads" / "old.db").write_bytes(b"an old backup, in the wrong place")
    targets = [
        database,
        data / "convertd.db-wal",
        data / "convertd.db-shm",
        data / "convertd.db-journal",
        data / "convertd.lock",
        data / "uploads" / ".." / "convertd.db",
        tmp_path / "to-data" / "convertd.db",
        tmp_path / "to-db.db",
        tmp_path / "hard-link.db",
        data / "backup.db",
        data / "uploads" / "old.db",
        tmp_path / "to-data" / "new.db",
    ]
    live = {p.name: p.stat().st_ino for p in data.iterdir() if p.is_file()}
    for target in targets:
        proc = d.cli("backup", str(target), "--force", check=False)
        assert proc.returncode == 1, (target, proc.stdout)
        assert "outside the data dir" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert "live convertd.db:" in d.cli("backup", str(database), check=False).stderr
    assert "inside the data dir" in d.cli("backup", str(data / "b.db"), check=False).stderr
    assert {name: (data / name).stat().st_ino for name in live} == live
    assert not list(data.rglob("*.tmp")) and not (data / "backup.db").exists()

    # The daemon's database is the one it writes: a key made now is there after a restart.
    later = d.create_key("after")
    assert d.stop() == 0
    d = make_daemon(env=QUIET, data_dir=data)
    assert keys_me(d, key).json()["name"] == "before"
    assert keys_me(d, later).json()["name"] == "after"


@pytest.fixture(name="small_disk")
def small_disk_fixture(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs: the hostile suite's full-disk trick."""
    with small_disk(tmp_path, 4) as mount:
        yield mount


def fill(disk: Path, leave: int) -> None:
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with (disk / "filler").open("ab") as f:
        f.write(b"\0" * max(free - leave, 0))


# Measured on tmpfs: 16 KiB left or less, "disk I/O error"; 32-40 KiB, "database or disk is full".
@pytest.mark.parametrize("leave", [0, 36 * 1024], ids=["no-room", "little-room"])
def test_a_full_disk_is_said_in_one_line(small_disk: Path, tmp_path: Path, leave: int) -> None:
    """With no room SQLite says "disk I/O error", with a little "database or disk is full";
    either way an admin command says the disk is full, where, and no traceback."""
    data = small_disk / "data"
    run_cli(data, "keys", "create", "--name", "first")
    fill(small_disk, leave)
    commands = [["keys", "create", "--name", f"k{n}"] for n in range(5)] + [
        ["presets", "add", "small", "--filetype", "image", "--to", "webp"]
    ]
    runs = [run_cli(data, *argv, check=False) for argv in commands]
    failed = [proc for proc in runs if proc.returncode != 0]
    assert len(failed) == len(commands), [proc.stdout for proc in runs]
    for proc in failed:
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        (line,) = [line for line in proc.stderr.splitlines() if line.startswith("convertd:")]
        assert line == (
            f"convertd: the database could not be written: the disk is full (free space in {data})"
        )

    # A backup onto the full disk says so, and leaves nothing behind.
    fill(small_disk, 0)
    run_cli(tmp_path / "other", "keys", "create", "--name", "other")
    dest = small_disk / "b.db"
    proc = run_cli(tmp_path / "other", "backup", str(dest), check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"the backup could not be written to {dest}: the disk is full" in proc.stderr
    assert "not a usable SQLite database" not in proc.stderr
    assert sorted(p.name for p in small_disk.iterdir()) == ["data", "filler"]


def test_restore_says_where_it_restores_and_warns_of_an_empty_data_dir(tmp_path: Path) -> None:
    """Run as root without --data-dir, a restore goes into root's own data dir: the first line
    names it, and a data dir with no database yet draws a warning."""
    data = tmp_path / "data"
    run_cli(data, "keys", "create", "--name", "one")
    saved = tmp_path / "saved.db"
    run_cli(data, "backup", str(saved))
    proc = run_cli(tmp_path / "elsewhere", "restore", str(saved))
    assert proc.stdout.splitlines()[0] == f"restoring into the data dir {tmp_path / 'elsewhere'}"
    assert (
        f"restoring into an empty data dir {tmp_path / 'elsewhere'}: is this the daemon's? "
        "see --data-dir" in proc.stderr
    )
    proc = run_cli(data, "restore", str(saved))
    assert proc.stdout.splitlines()[0] == f"restoring into the data dir {data}"
    assert "empty data dir" not in proc.stderr
