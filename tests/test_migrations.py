"""Upgrades: a filled database at every earlier schema version becomes the latest with its rows
intact, and the daemon serves it; a database newer than the code is refused, by every command.

The fill goes by which tables exist at the version, so an appended migration is tested from
every version before it without touching this file; a migration that adds a table makes the
next one's test ask for rows for it (FILL below).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from convertd.store.migrations import MIGRATIONS, SCHEMA_VERSION
from tests.conftest import Daemon
from tests.daemon import free_port, run_cli

NOW = time.time()  # recent, so that the daemon's retention sweep keeps every row
SECRET = "cvd_" + "k" * 43
JOB = "0b7e2c9a-5d41-4f6e-8a3b-2c1d0e9f8a7b"
FAILED_JOB = "1c8f3dab-6e52-4a7f-9b4c-3d2e1f0a9b8c"
TASK_JOB = "2d9a4ebc-7f63-4b80-8c5d-4e3f2a1b0c9d"
TASK = "3eab5fcd-8074-4c91-9d6e-5f4a3b2c1d0e"

# Realistic rows per table, with every column any version has: each version gets the columns
# its table has, and a column added later takes its default in the migration that adds it.
FILL: dict[str, list[dict[str, Any]]] = {
    "plans": [{"name": "team", "api_access": 1, "calls_per_day": 50_000, "calls_per_minute": 600}],
    "api_keys": [
        {
            "id": 7,
            "name": "nas-backup-script",
            "prefix": SECRET[:12],
            "key_hash": hashlib.sha256(SECRET.encode()).hexdigest(),
            "plan": "team",
            "restriction_type": "ip",
            "allowed_ips": json.dumps(["127.0.0.0/8"]),
            "allowed_domains": "[]",
            "usage_count": 41,
            "last_used_at": NOW - 60,
            "created_at": NOW - 3600,
            "revoked_at": None,
            "scopes": json.dumps(["user.read", "task.read", "task.write"]),
            "webhook_secret": "whsec_" + "ab" * 24,
        },
        {
            "id": 8,
            "name": "old laptop",
            "prefix": "cvd_revokedx",
            "key_hash": "0" * 64,
            "plan": "basic",
            "restriction_type": "all",
            "allowed_ips": "[]",
            "allowed_domains": "[]",
            "usage_count": 3,
            "last_used_at": None,
            "created_at": NOW - 7200,
            "revoked_at": NOW - 600,
        },
    ],
    "call_counts": [
        {"key_id": 7, "span": "day", "span_start": int(NOW // 86400 * 86400), "count": 41}
    ],
    "uploads": [
        {
            "id": 1,
            "key_id": 7,
            "file_path": "0123456789abcdef/holiday photo.png",
            "file_name": "holiday photo.png",
            "file_size": 48213,
            "extension": "png",
            "created_at": NOW - 300,
            "expired": 0,
        }
    ],
    "jobs": [
        {
            "id": JOB,
            "key_id": 7,
            "upload_id": 1,
            "filetype": "image",
            "input_format": "png",
            "output_format": "webp",
            "options": json.dumps({"quality": 80}),
            "status": "finished",
            "progress": 100,
            "attempts": 1,
            "result_name": "holiday photo.webp",
            "result_count": 1,
            "result_size": 20111,
            "created_at": NOW - 300,
            "started_at": NOW - 299,
            "finished_at": NOW - 298,
            "source": "api",
            "timeout_seconds": None,
            "webhook_url": None,
        },
        {
            "id": FAILED_JOB,
            "key_id": 7,
            "upload_id": 1,
            "filetype": "image",
            "input_format": "png",
            "output_format": "jpg",
            "status": "failed",
            "error": "Input is a damaged or truncated PNG image",
            "attempts": 1,
            "created_at": NOW - 200,
            "finished_at": NOW - 199,
            "source": "drop",
        },
    ],
    "drops": [
        {
            "id": 1,
            "rule": "photos",
            "source_path": b"/srv/drop/inbox/photos/caf\xe9.png",  # not UTF-8: bytes survive
            "display_name": "caf\ufffd.png",
            "output_format": "jpg",
            "size": 48213,
            "mtime_ns": 1_700_000_000_000_000_000,
            "upload_path": "0123456789abcdef/holiday photo.png",
            "upload_id": 1,
            "job_id": FAILED_JOB,
            "status": "done",
            "output_path": b"/srv/drop/outbox/photos/caf\xe9.jpg",
            "created_at": NOW - 200,
            "finished_at": NOW - 199,
        }
    ],
    "task_jobs": [
        {"id": TASK_JOB, "key_id": 7, "tag": "invoices", "webhook_url": None, "created_at": NOW}
    ],
    "tasks": [
        {
            "id": TASK,
            "job_id": TASK_JOB,
            "key_id": 7,
            "name": "convert-1",
            "operation": "convert",
            "payload": json.dumps({"input": [], "output_format": "webp"}),
            "depends_on": "[]",
            "ignore_error": 0,
            "status": "finished",
            "conversion_id": JOB,
            "result": json.dumps({"files": [{"filename": "holiday photo.webp", "size": 20111}]}),
            "attempts": 1,
            "created_at": NOW - 100,
            "started_at": NOW - 99,
            "ended_at": NOW - 98,
        }
    ],
    "webhooks": [
        {
            "id": "4fbc6ade-9185-4da2-8e7f-6a5b4c3d2e1f",
            "key_id": 7,
            "url": "https://example.com/convertd",
            "events": json.dumps(["job.finished", "job.failed"]),
            "signing_secret": None,
            "rule": None,
            "created_at": NOW - 50,
        }
    ],
    "events": [
        {
            "id": "e" * 32,
            "name": "job.finished",
            "api": "v1",
            "key_id": 7,
            "job_id": JOB,
            "subject": JOB,
            "created_at": NOW - 298,
        }
    ],
    "deliveries": [
        {
            "id": 1,
            "event_id": "e" * 32,
            "key_id": 7,
            "url": "https://example.com/hook",
            "status": "delivered",
            "attempts": 1,
            "body": b'{"event": "job.finished"}',
            "last_answer": "200 OK",
            "last_at": NOW - 297,
            "created_at": NOW - 298,
        }
    ],
    "health": [{"id": 1, "checked_at": NOW - 30}],
    "presets": [
        {
            "name": "nas-thumbs",
            "filetype": "image",
            "output_format": "jpg",
            "options": json.dumps({"width": 320, "quality": 70}),
            "description": "thumbnails for the photo share",
            "created_at": NOW - 900,
            "updated_at": NOW - 800,
            "used_by": None,
        }
    ],
    "nodes": [
        {
            "id": "nas-1234-0a1b2c3d",
            "host": "nas",
            "pid": 1234,
            "role": "serve",
            "address": "http://127.0.0.1:8470",
            "workers": 2,
            "version": "0.1.0",
            "started_at": NOW - 7200,
            "seen_at": NOW - 3600,
            "stopped_at": NOW - 3600,
        }
    ],
    "leader": [{"id": 1, "node": "nas-1234-0a1b2c3d", "since": NOW - 7200}],
    "storage": [{"id": 1, "mark": "5e1f0c2a9b7d4e6f8a1b2c3d4e5f6a7b", "created_at": NOW - 7200}],
}
# What the daemon itself changes when the key is used (and /health's write probe).
CHANGES_IN_USE = {
    ("health", "checked_at"),
    ("api_keys", "usage_count"),
    ("api_keys", "last_used_at"),
    ("call_counts", "count"),
    # The daemon leads as it starts (cluster/leader.py): its node is the leader on record.
    ("leader", "node"),
    ("leader", "since"),
}


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})")]


def tables(conn: sqlite3.Connection) -> list[str]:
    found = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid")
    return [str(row[0]) for row in found]


def build_at(path: Path, version: int) -> dict[str, list[dict[str, Any]]]:
    """A database at schema `version`, as that convertd left it, filled; returns what went in."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA foreign_keys = ON")
    for n, script in enumerate(MIGRATIONS[:version]):
        conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {n + 1};\nCOMMIT;")
    present = tables(conn)
    unfilled = [t for t in present if t not in FILL]
    assert not unfilled, f"add realistic rows for {unfilled} to FILL in tests/test_migrations.py"
    written: dict[str, list[dict[str, Any]]] = {}
    conn.execute("BEGIN")
    for table in FILL:  # in order: what a row refers to comes first
        if table not in present:
            continue
        have = columns(conn, table)
        written[table] = [{c: v for c, v in row.items() if c in have} for row in FILL[table]]
        for row in written[table]:
            names = ", ".join(row)
            marks = ", ".join("?" * len(row))
            conn.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", tuple(row.values()))
    conn.execute("COMMIT")
    conn.close()
    return written


def primary_key(conn: sqlite3.Connection, table: str) -> list[str]:
    info = sorted((row[5], row[1]) for row in conn.execute(f"PRAGMA table_info({table})"))
    return [name for rank, name in info if rank > 0]


def assert_rows_survived(path: Path, written: dict[str, list[dict[str, Any]]]) -> None:
    conn = sqlite3.connect(path)
    try:
        for table, table_rows in written.items():
            key = primary_key(conn, table)
            for row in table_rows:
                kept = {c: v for c, v in row.items() if (table, c) not in CHANGES_IN_USE}
                where = " AND ".join(f"{c} = ?" for c in key)
                found = conn.execute(
                    f"SELECT {', '.join(kept)} FROM {table} WHERE {where}",
                    tuple(row[c] for c in key),
                ).fetchone()
                assert found == tuple(kept.values()), (table, row)
    finally:
        conn.close()


# Every version before the latest, and the latest itself (which checks FILL for new tables).
@pytest.mark.parametrize("version", range(SCHEMA_VERSION + 1))
def test_upgrade_from_every_schema_version(make_daemon: Any, tmp_path: Path, version: int) -> None:
    data = tmp_path / "data"
    data.mkdir()
    database = data / "convertd.db"
    written = build_at(database, version)

    d: Daemon = make_daemon(env={"CONVERTD_OFFICE_PREWARM": "false"}, workers=1)
    assert "database migrated to schema version" in d.log() or version == SCHEMA_VERSION
    if "api_keys" in written:
        me = requests.get(f"{d.base}/keys/me", headers={"X-API-Key": SECRET}, timeout=10)
        assert me.status_code == 200, me.text
        assert me.json()["name"] == "nas-backup-script" and me.json()["plan"] == "team"
        status = requests.get(
            f"{d.base}/status/{JOB}", headers={"X-API-Key": SECRET}, timeout=10
        ).json()
        assert status["status"] == "finished" and status["file_name"] == "holiday photo.webp"
        revoked = requests.get(
            f"{d.base}/keys/me", headers={"X-API-Key": "cvd_revokedx" + "x" * 35}, timeout=10
        )
        assert revoked.status_code == 401
    if "tasks" in written:
        task = requests.get(
            f"http://127.0.0.1:{d.port}/v2/tasks/{TASK}",
            headers={"Authorization": f"Bearer {SECRET}"},
            timeout=10,
        )
        assert task.status_code == 200 and task.json()["data"]["status"] == "finished", task.text
    assert d.stop() == 0

    conn = sqlite3.connect(database)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()
    assert_rows_survived(database, written)


def test_a_newer_database_is_refused_by_serve_and_by_admin_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run_cli(data, "keys", "create", "--name", "kept")
    database = data / "convertd.db"
    conn = sqlite3.connect(database)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = database.read_bytes()
    for command in (
        ["serve", "--port", str(free_port())],
        ["keys", "list"],
        ["backup", str(tmp_path / "b.db")],
    ):
        proc = run_cli(data, *command, check=False)
        assert proc.returncode == 2, (command, proc.stderr)
        assert (
            f"knows only up to {SCHEMA_VERSION}" in proc.stderr and "Traceback" not in proc.stderr
        )
    assert not (tmp_path / "b.db").exists()
    assert database.read_bytes() == before
