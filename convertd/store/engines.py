"""Which engine a database is on, picked once: by what the database is named with."""

from __future__ import annotations

from pathlib import Path

from convertd.store.db import Database, is_database_url
from convertd.store.postgres import PostgresDatabase
from convertd.store.sqlite import SqliteDatabase


async def open_database(where: Path | str) -> Database:
    """The database at `where`: a PostgreSQL URL, or the path of a SQLite file (created and
    migrated as needed)."""
    if is_database_url(where):
        return await PostgresDatabase.connect(str(where))
    return await SqliteDatabase.open(Path(where))
