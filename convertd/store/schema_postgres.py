"""The schema on PostgreSQL: the same numbered migrations as migrations.py, in its dialect, and
the one function that applies them.

The version is kept in the one-row table schema_version (SQLite's is PRAGMA user_version). Each
step runs in its own transaction with its version bump, under a transaction-level advisory
lock, so that nodes starting together migrate once: the ones that waited read the new version.
"""

# The rule: a new migration is appended to BOTH lists, MIGRATIONS in migrations.py and
# POSTGRES_MIGRATIONS here, at the same index; tests/test_schema_engines.py checks that they
# agree (tables, views, columns in order, their types and NOT NULL, indexes, triggers, and what
# the triggers do). Never edit a shipped entry of either.
#
# The dialect: INTEGER is BIGINT, INTEGER PRIMARY KEY an identity column, REAL is DOUBLE
# PRECISION, BLOB is BYTEA; JSON stays in TEXT and flags stay integers 0/1, so the queries
# of the store read the same on both engines. SQLite's triggers become PL/pgSQL functions.

from __future__ import annotations

import logging
from importlib import resources
from typing import TYPE_CHECKING

from convertd.store.migrations import SCHEMA_VERSION, SchemaTooNew

if TYPE_CHECKING:
    import asyncpg

logger = logging.getLogger(__name__)

# pg_advisory_xact_lock's key for migrating: any fixed number no other lock of ours uses.
MIGRATION_LOCK = 0x63766D6967  # "cvmig"

# Entry N (N from 1) is postgres_schema/000N.sql: SQL files, so the schema is read as SQL.
POSTGRES_MIGRATIONS: list[str] = [
    resources.files("convertd.store.postgres_schema").joinpath(f"{n:04d}.sql").read_text()
    for n in range(1, SCHEMA_VERSION + 1)
]


async def migrate_postgres(conn: asyncpg.Connection) -> None:
    """Bring the schema up to SCHEMA_VERSION, one recorded step at a time, as migrate() does
    on SQLite; safe to call from several nodes at once."""
    while True:
        # READ COMMITTED: the version is read after the lock is taken, so a node that waited
        # for another's step sees its result.
        async with conn.transaction(isolation="read_committed"):
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            current = await _version(conn)
            if current > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"the database is at schema version {current}, but this convertd knows "
                    f"only up to {SCHEMA_VERSION}; upgrade convertd"
                )
            if current == SCHEMA_VERSION:
                return
            await conn.execute(POSTGRES_MIGRATIONS[current])
            await conn.execute("UPDATE schema_version SET version = $1", current + 1)
        logger.info("database migrated to schema version %d", current + 1)


async def _version(conn: asyncpg.Connection) -> int:
    """The recorded version; an empty database gets its schema_version table at 0."""
    if await conn.fetchval("SELECT to_regclass('schema_version')") is None:
        await conn.execute(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);"
            "INSERT INTO schema_version (version) VALUES (0)"
        )
    return int(await conn.fetchval("SELECT version FROM schema_version"))
