"""One schema, two engines: SQLite's migrations (store/migrations.py) and PostgreSQL's
(store/schema_postgres.py) give the same tables, columns, indexes and triggers at every
version, and the triggers do the same things, on a real SQLite file and a real PostgreSQL
server (tests/postgres.py).

The trigger scenarios are written once, in SQLite's `?` placeholders, and run on both engines;
the PostgreSQL side numbers them `$1, $2, ...`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from convertd.store.migrations import MIGRATIONS, SCHEMA_VERSION, SchemaTooNew, migrate
from convertd.store.schema_postgres import POSTGRES_MIGRATIONS, migrate_postgres
from tests import postgres
from tests.postgres import Cluster

# SQLite's declared types and what PostgreSQL's information_schema calls their counterparts.
TYPES = {"INTEGER": "bigint", "REAL": "double precision", "TEXT": "text", "BLOB": "bytea"}
# The ways information_schema spells a default that SQLite spells plainly: `'[]'::text`.
CAST = re.compile(r"::[a-z ]+$")


def test_both_engines_have_every_migration() -> None:
    assert len(POSTGRES_MIGRATIONS) == len(MIGRATIONS) == SCHEMA_VERSION


# --- the schema, compared at every version ----------------------------------------------------


def sqlite_schema(conn: sqlite3.Connection) -> dict[str, Any]:
    objects = conn.execute(
        "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' AND sql IS NOT NULL"
    ).fetchall()
    tables: dict[str, list[tuple[Any, ...]]] = {}
    for kind, name in objects:
        if kind not in ("table", "view"):
            continue
        # cid, name, type, notnull, default, pk: an INTEGER/TEXT PRIMARY KEY is NOT NULL on
        # PostgreSQL (SQLite lets a TEXT key be NULL, which no code of ours writes).
        info = conn.execute(f"PRAGMA table_info({name})").fetchall()
        if kind == "view":
            tables[name] = [("view", c[1]) for c in info]
        else:
            tables[name] = [
                (c[1], TYPES[c[2].upper()], bool(c[3] or c[5]), c[4] if not c[5] else None)
                for c in info
            ]
    return {
        "tables": tables,
        "indexes": sorted(n for k, n in objects if k == "index"),
        "triggers": sorted(n for k, n in objects if k == "trigger"),
    }


# Columns only PostgreSQL's schema has: the insertion order SQLite's rowid gives (see
# Dialect.insertion_order).
POSTGRES_ONLY = {("jobs", "seq"), ("tasks", "seq")}


async def postgres_schema(conn: asyncpg.Connection) -> dict[str, Any]:
    kinds = {
        r["table_name"]: r["table_type"]
        for r in await conn.fetch(
            "SELECT table_name, table_type FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_name != 'schema_version'"
        )
    }
    tables: dict[str, list[tuple[Any, ...]]] = {name: [] for name in kinds}
    for c in await conn.fetch(
        "SELECT table_name, column_name, data_type, is_nullable, column_default"
        " FROM information_schema.columns WHERE table_schema = 'public'"
        " AND table_name != 'schema_version' ORDER BY table_name, ordinal_position"
    ):
        if (c["table_name"], c["column_name"]) in POSTGRES_ONLY:
            continue
        if kinds[c["table_name"]] == "VIEW":
            tables[c["table_name"]].append(("view", c["column_name"]))
        else:
            default = c["column_default"] and CAST.sub("", c["column_default"])
            column = (c["column_name"], c["data_type"], c["is_nullable"] == "NO", default)
            tables[c["table_name"]].append(column)
    # Indexes made by CREATE INDEX: those behind a PRIMARY KEY or UNIQUE are SQLite's
    # autoindexes, which have no SQL of their own.
    indexes = await conn.fetch(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)"
    )
    triggers = await conn.fetch("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
    return {
        "tables": tables,
        "indexes": sorted(r[0] for r in indexes),
        "triggers": sorted(r[0] for r in triggers),
    }


def test_the_schemas_agree_at_every_version(pg_cluster: Cluster) -> None:
    """Entry N of each list, applied after the ones before it, gives the same schema."""
    lite = sqlite3.connect(":memory:", isolation_level=None)

    async def scenario() -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
        seen = []
        conn = await asyncpg.connect(pg_cluster.new_database())
        try:
            for version, (script, pg_script) in enumerate(
                zip(MIGRATIONS, POSTGRES_MIGRATIONS, strict=True), 1
            ):
                lite.executescript(script)
                await conn.execute(pg_script)
                seen.append((version, sqlite_schema(lite), await postgres_schema(conn)))
        finally:
            await conn.close()
        return seen

    for version, expected, got in asyncio.run(scenario()):
        assert got == expected, f"the engines differ at schema version {version}"
    assert "task_job_status" in expected["tables"] and expected["triggers"]


def test_the_comparison_sees_a_difference() -> None:
    a = sqlite3.connect(":memory:")
    b = sqlite3.connect(":memory:")
    a.execute("CREATE TABLE t (x INTEGER NOT NULL, y TEXT)")
    b.execute("CREATE TABLE t (y TEXT, x INTEGER NOT NULL)")
    assert sqlite_schema(a) != sqlite_schema(b)
    b.execute("DROP TABLE t")
    b.execute("CREATE TABLE t (x INTEGER, y TEXT)")
    assert sqlite_schema(a) != sqlite_schema(b)


# --- migrate_postgres -------------------------------------------------------------------------


async def version_of(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT version FROM schema_version"))


def migrated(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "database migrated" in r.getMessage()]


def test_migrating_again_changes_nothing(
    pg_cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    url = pg_cluster.new_database()

    async def scenario() -> tuple[list[str], dict[str, Any], dict[str, Any], int]:
        conn = await asyncpg.connect(url)
        try:
            await migrate_postgres(conn)
            first, before = migrated(caplog), await postgres_schema(conn)
            await migrate_postgres(conn)
            return first, before, await postgres_schema(conn), await version_of(conn)
        finally:
            await conn.close()

    with caplog.at_level(logging.INFO, logger="convertd.store.schema_postgres"):
        first, before, after, version = asyncio.run(scenario())
    assert first == [
        f"database migrated to schema version {v}" for v in range(1, SCHEMA_VERSION + 1)
    ]
    assert migrated(caplog) == first  # the second call logged nothing: it did nothing
    assert after == before and version == SCHEMA_VERSION


def test_two_nodes_starting_at_once_migrate_once(
    pg_cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    url = pg_cluster.new_database()

    async def scenario() -> list[int]:
        conns = await asyncio.gather(asyncpg.connect(url), asyncpg.connect(url))
        try:
            await asyncio.gather(*(migrate_postgres(c) for c in conns))
            return [await version_of(c) for c in conns]
        finally:
            await asyncio.gather(*(c.close() for c in conns))

    with caplog.at_level(logging.INFO, logger="convertd.store.schema_postgres"):
        assert asyncio.run(scenario()) == [SCHEMA_VERSION, SCHEMA_VERSION]
    # Each step was applied by one of the two: the other waited for it and saw its version.
    assert sorted(migrated(caplog)) == sorted(
        f"database migrated to schema version {v}" for v in range(1, SCHEMA_VERSION + 1)
    )


def test_a_newer_database_is_refused(pg_cluster: Cluster) -> None:
    url = pg_cluster.new_database()

    async def scenario() -> None:
        conn = await asyncpg.connect(url)
        try:
            await migrate_postgres(conn)
            await conn.execute("UPDATE schema_version SET version = $1", SCHEMA_VERSION + 1)
            await migrate_postgres(conn)
        finally:
            await conn.close()

    with pytest.raises(SchemaTooNew, match=rf"at schema version {SCHEMA_VERSION + 1}, but"):
        asyncio.run(scenario())


# --- what the triggers do, on both engines ----------------------------------------------------


class Engine:
    """A migrated database of either kind, queried in SQLite's dialect of placeholders."""

    def __init__(self, lite: sqlite3.Connection | None, pg: asyncpg.Connection | None) -> None:
        self.lite, self.pg = lite, pg

    async def run(self, sql: str, *args: Any) -> None:
        if self.pg is not None:
            await self.pg.execute(numbered(sql), *args)
        else:
            assert self.lite is not None
            self.lite.execute(sql, args)

    async def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        if self.pg is not None:
            return [tuple(r) for r in await self.pg.fetch(numbered(sql), *args)]
        assert self.lite is not None
        return [tuple(r) for r in self.lite.execute(sql, args).fetchall()]


def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1, $2, ...` (the scenarios hold no `?` in strings)."""
    count = iter(range(1, sql.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(count)}", sql)


@asynccontextmanager
async def engine(kind: str, where: str) -> AsyncIterator[Engine]:
    if kind == "sqlite":
        lite = sqlite3.connect(where, isolation_level=None)
        lite.execute("PRAGMA foreign_keys = ON")
        migrate(lite)
        try:
            yield Engine(lite, None)
        finally:
            lite.close()
    else:
        pg = await asyncpg.connect(where)
        await migrate_postgres(pg)
        try:
            yield Engine(None, pg)
        finally:
            await pg.close()


@pytest.fixture(params=["sqlite", "postgres"])
def on_engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[Callable[[Engine], Awaitable[None]]], None]:
    """Runs a scenario on a fresh, migrated database of the parameter's engine."""
    if request.param == "sqlite":
        where = str(tmp_path / "convertd.db")
    else:
        where = request.getfixturevalue("pg_cluster").new_database()

    def run(scenario: Callable[[Engine], Awaitable[None]]) -> None:
        async def main() -> None:
            async with engine(request.param, where) as db:
                await scenario(db)

        asyncio.run(main())

    return run


async def a_key(db: Engine, key_id: int = 1) -> None:
    await db.run(
        "INSERT INTO api_keys (id, name, prefix, key_hash, plan, created_at)"
        " VALUES (?, 'laptop', ?, 'hash', 'pro', 1.0)",
        key_id,
        f"cvd_key{key_id}",
    )


async def a_webhook(db: Engine, hook_id: str, key_id: int | None, events: str, **more: Any) -> None:
    await db.run(
        "INSERT INTO webhooks (id, key_id, url, events, rule, created_at)"
        " VALUES (?, ?, ?, ?, ?, 1.0)",
        hook_id,
        key_id,
        f"http://hooks.test/{hook_id}",
        events,
        more.get("rule"),
    )


async def a_task(db: Engine, task_id: str, job_id: str | None, status: str, **more: Any) -> None:
    await db.run(
        "INSERT INTO tasks (id, job_id, key_id, name, operation, payload, status, ignore_error,"
        " retry_of, created_at) VALUES (?, ?, ?, ?, 'convert', '{}', ?, ?, ?, 10.0)",
        task_id,
        job_id,
        more.get("key_id", 1),
        task_id,
        status,
        more.get("ignore_error", 0),
        more.get("retry_of"),
    )


EVENT = "SELECT name, api, key_id, job_id, task_id, subject, created_at FROM events"
DELIVERY = "SELECT e.name, d.webhook_id, d.key_id, d.url FROM deliveries d JOIN events e"
DELIVERY += " ON e.id = d.event_id"


def test_a_v2_job_is_told_of_once_created(on_engine: Any) -> None:
    async def scenario(db: Engine) -> None:
        await a_key(db)
        await db.run("INSERT INTO task_jobs (id, key_id, created_at) VALUES ('J1', 1, 100.5)")
        assert await db.rows(EVENT) == [("job.created", "v2", 1, "J1", None, "J1", 100.5)]
        ((event_id,),) = await db.rows("SELECT id FROM events")
        assert re.fullmatch(r"[0-9a-f]{32}", event_id)
        # A job of no key, and a webhook of no key that asked for job.created: the key is
        # matched NULL to NULL (SQLite's IS).
        await a_webhook(db, "W0", None, '["job.created"]')
        await db.run("INSERT INTO task_jobs (id, created_at) VALUES ('J0', 101.0)")
        assert await db.rows(DELIVERY) == [("job.created", "W0", None, "http://hooks.test/W0")]

    on_engine(scenario)


def test_a_task_ending_is_delivered_to_its_subscribers_once(on_engine: Any) -> None:
    async def scenario(db: Engine) -> None:
        await a_key(db)
        await a_key(db, 2)
        await a_webhook(db, "W1", 1, '["task.finished"]')
        await a_webhook(db, "W2", 1, '["task.failed", "job.failed"]')
        await a_webhook(db, "W3", 2, '["task.finished"]')  # another key's
        await db.run(
            "INSERT INTO task_jobs (id, key_id, webhook_url, created_at)"
            " VALUES ('J1', 1, 'http://jobs.test/J1', 100.0)"
        )
        await a_task(db, "T1", "J1", "waiting")
        await a_task(db, "T2", "J1", "waiting")
        await db.run("UPDATE tasks SET status = 'processing' WHERE id = 'T1'")
        assert await db.rows(DELIVERY) == []
        await db.run("UPDATE tasks SET status = 'finished', ended_at = 200.0 WHERE id = 'T1'")
        assert await db.rows(DELIVERY) == [("task.finished", "W1", 1, "http://hooks.test/W1")]
        # The same status again is no end: nothing new.
        await db.run("UPDATE tasks SET status = 'finished', message = 'x' WHERE id = 'T1'")
        # The job's last task ends: the job has ended too, told to the job's own URL.
        await db.run("UPDATE tasks SET status = 'finished', ended_at = 300.0 WHERE id = 'T2'")
        assert sorted(await db.rows(EVENT)) == [
            ("job.created", "v2", 1, "J1", None, "J1", 100.0),
            ("job.finished", "v2", 1, "J1", None, "J1#2", 300.0),
            ("task.finished", "v2", 1, "J1", "T1", "T1", 200.0),
            ("task.finished", "v2", 1, "J1", "T2", "T2", 300.0),
        ]
        assert sorted(await db.rows(DELIVERY)) == [
            ("job.finished", None, 1, "http://jobs.test/J1"),
            ("task.finished", "W1", 1, "http://hooks.test/W1"),
            ("task.finished", "W1", 1, "http://hooks.test/W1"),
        ]

    on_engine(scenario)


def test_a_job_whose_tasks_all_end_in_one_statement_is_told_of_once(on_engine: Any) -> None:
    # SQLite runs a row trigger after each row, PostgreSQL after the whole statement: the
    # first sees the job end at the last row, the second at every row; one event either way.
    async def scenario(db: Engine) -> None:
        await a_key(db)
        await db.run("INSERT INTO task_jobs (id, key_id, created_at) VALUES ('J1', 1, 1.0)")
        await a_task(db, "T1", "J1", "processing")
        await a_task(db, "T2", "J1", "waiting")
        await db.run("UPDATE tasks SET status = 'error', ended_at = 5.0 WHERE job_id = 'J1'")
        assert sorted(await db.rows(EVENT + " WHERE name != 'job.created'")) == [
            ("job.failed", "v2", 1, "J1", None, "J1#2", 5.0),
            ("task.failed", "v2", 1, "J1", "T1", "T1", 5.0),
            ("task.failed", "v2", 1, "J1", "T2", "T2", 5.0),
        ]

    on_engine(scenario)


def test_a_v1_job_with_a_webhook_url_is_told_of_its_end(on_engine: Any) -> None:
    async def scenario(db: Engine) -> None:
        await a_key(db)
        await db.run(
            "INSERT INTO uploads (id, key_id, file_path, file_name, file_size, extension,"
            " created_at) VALUES (1, 1, 'tok/a.png', 'a.png', 10, 'png', 1.0)"
        )
        for job_id, hook, source in [
            ("V1", "http://v1.test/cb", "api"),
            ("V2", None, "api"),  # no URL: nobody to tell
            ("V3", "http://v1.test/drop", "drop"),  # a drop's job is told of by its drop
        ]:
            await db.run(
                "INSERT INTO jobs (id, key_id, upload_id, filetype, input_format, output_format,"
                " webhook_url, source, created_at) VALUES (?, 1, 1, 'image', 'png', 'webp', ?, ?,"
                " 2.0)",
                job_id,
                hook,
                source,
            )
        await db.run("UPDATE jobs SET status = 'processing'")
        assert await db.rows(EVENT) == []
        await db.run("UPDATE jobs SET status = 'finished', finished_at = 50.0")
        await db.run("UPDATE jobs SET status = 'finished', error = NULL WHERE id = 'V1'")
        assert await db.rows(EVENT) == [("job.finished", "v1", 1, "V1", None, "V1", 50.0)]
        assert await db.rows(DELIVERY) == [("job.finished", None, 1, "http://v1.test/cb")]

    on_engine(scenario)


def test_a_drop_of_a_rule_with_a_webhook_is_told_of(on_engine: Any) -> None:
    async def scenario(db: Engine) -> None:
        await a_webhook(db, "R1", None, "[]", rule="scans")
        drop = (
            "INSERT INTO drops (id, rule, source_path, display_name, output_format, size,"
            " mtime_ns, upload_path, status, finished_at, created_at)"
            " VALUES (?, ?, ?, 'a.png', 'pdf', 1, 1, 'u/a.png', ?, ?, 1.0)"
        )
        await db.run(drop, 1, "scans", b"/in/a.png", "failed", 5.0)  # refused at once
        await db.run(drop, 2, "scans", b"/in/b.png", "claiming", None)
        await db.run(drop, 3, "photos", b"/in/c.png", "failed", 6.0)  # a rule without one
        await db.run("UPDATE drops SET status = 'queued' WHERE id = 2")
        await db.run("UPDATE drops SET status = 'done', finished_at = 7.0 WHERE id IN (2, 3)")
        assert sorted(await db.rows(EVENT)) == [
            ("job.failed", "drop", None, None, None, "drop-1", 5.0),
            ("job.finished", "drop", None, None, None, "drop-2", 7.0),
        ]
        assert sorted(await db.rows(DELIVERY)) == [
            ("job.failed", "R1", None, "http://hooks.test/R1"),
            ("job.finished", "R1", None, "http://hooks.test/R1"),
        ]

    on_engine(scenario)


# Each job's tasks as (status, ignore_error, retry of), and the status the view gives it.
JOB_STATUSES = {
    "waiting": [("waiting", 0, None), ("waiting", 0, None)],
    "processing": [("finished", 0, None), ("waiting", 0, None)],
    "finished": [("finished", 0, None), ("finished", 0, None)],
    "error": [("error", 0, None), ("processing", 0, None)],
    "finished, its failure allowed": [("error", 1, None), ("finished", 0, None)],
    "finished, its failure retried": [("error", 0, None), ("finished", 0, 0)],
    "processing, its failure retried": [("error", 0, None), ("processing", 0, 0)],
    "finished, with no tasks": [],
}


def test_the_job_status_view(on_engine: Any) -> None:
    async def scenario(db: Engine) -> None:
        await a_key(db)
        for n, tasks in enumerate(JOB_STATUSES.values()):
            job = f"J{n}"
            await db.run("INSERT INTO task_jobs (id, key_id, created_at) VALUES (?, 1, 1.0)", job)
            for i, (status, ignore_error, retry_of) in enumerate(tasks):
                retried = None if retry_of is None else f"{job}-{retry_of}"
                await a_task(
                    db, f"{job}-{i}", job, status, ignore_error=ignore_error, retry_of=retried
                )
        got = dict(await db.rows("SELECT job_id, status FROM task_job_status"))
        assert {case: got[f"J{n}"] for n, case in enumerate(JOB_STATUSES)} == {
            case: case.split(",")[0] for case in JOB_STATUSES
        }

    on_engine(scenario)


def test_two_nodes_ending_a_jobs_last_tasks_at_once_tell_of_its_end(pg_cluster: Cluster) -> None:
    """PostgreSQL only: SQLite has one writer. Without the job's row lock in the trigger, each
    transaction would see only its own task ended, and the job's end would never be told."""
    url = pg_cluster.new_database()

    async def scenario() -> tuple[bool, list[tuple[Any, ...]]]:
        async with engine("postgres", url) as db:
            await a_key(db)
            await db.run("INSERT INTO task_jobs (id, key_id, created_at) VALUES ('J1', 1, 1.0)")
            await a_task(db, "T1", "J1", "processing")
            await a_task(db, "T2", "J1", "processing")
            one, two = await asyncio.gather(asyncpg.connect(url), asyncpg.connect(url))
            try:
                first, second = one.transaction(), two.transaction()
                await first.start()
                await second.start()
                end = "UPDATE tasks SET status = 'finished', ended_at = 9.0 WHERE id = $1"
                await one.execute(end, "T1")
                late = asyncio.ensure_future(two.execute(end, "T2"))
                await asyncio.sleep(0.5)
                waited = not late.done()
                await first.commit()
                await late
                await second.commit()
            finally:
                await asyncio.gather(one.close(), two.close())
            return waited, await db.rows(EVENT + " WHERE name = 'job.finished'")

    waited, ends = asyncio.run(scenario())
    assert waited, "the second end did not wait for the first's commit"
    assert ends == [("job.finished", "v2", 1, "J1", None, "J1#2", 9.0)]


def test_a_missing_postgresql_is_said_not_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres, "DEBIAN_BINARIES", tmp_path / "none")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(postgres.PostgresMissing, match=r"run \./packaging/setup"):
        postgres.Cluster().start()


def test_keys_made_before_webhooks_get_a_secret_each(pg_cluster: Cluster) -> None:
    """Migration 4 gives every existing key a webhook secret like the code makes (48 hex
    digits), a different one each, on both engines."""
    key = (
        "INSERT INTO api_keys (name, prefix, key_hash, plan, created_at)"
        " VALUES ('k', ?, 'h', 'pro', 1.0)"
    )
    lite = sqlite3.connect(":memory:", isolation_level=None)
    for script in MIGRATIONS[:3]:
        lite.executescript(script)
    lite.execute(key, ("cvd_a",))
    lite.execute(key, ("cvd_b",))
    lite.executescript(MIGRATIONS[3])
    secrets = [r[0] for r in lite.execute("SELECT webhook_secret FROM api_keys")]

    async def scenario() -> list[str]:
        conn = await asyncpg.connect(pg_cluster.new_database())
        try:
            for script in POSTGRES_MIGRATIONS[:3]:
                await conn.execute(script)
            await conn.executemany(numbered(key), [("cvd_a",), ("cvd_b",)])
            await conn.execute(POSTGRES_MIGRATIONS[3])
            return [r[0] for r in await conn.fetch("SELECT webhook_secret FROM api_keys")]
        finally:
            await conn.close()

    for made in (secrets, asyncio.run(scenario())):
        assert len(made) == 2 and made[0] != made[1]
        assert all(re.fullmatch(r"whsec_[0-9a-f]{48}", s) for s in made), made
