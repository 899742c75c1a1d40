"""Presets saved in the database (`convertd presets add`, `POST /v2/presets`).

Only the rows: what a preset means, and which source wins for a name, is tasks/presets.py's.
"""

from __future__ import annotations

import json

from convertd import clock
from convertd.presets import DATABASE, Preset
from convertd.store.db import Conn, Database, Row

SELECT = (
    "SELECT name, filetype, output_format, options, description, created_at, updated_at "
    "FROM presets"
)
INSERT = (
    "INSERT INTO presets "
    "(name, filetype, output_format, options, description, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


class Exists(Exception):
    """A preset of that name is already in the database."""


def _preset(row: Row) -> Preset:
    return Preset(
        name=row["name"],
        filetype=row["filetype"],
        output_format=row["output_format"],
        options=json.loads(row["options"]),
        description=row["description"],
        source=DATABASE,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def all_saved(db: Database) -> list[Preset]:
    rows = await db.fetch_all(SELECT + " ORDER BY name")
    return [_preset(row) for row in rows]


async def count(db: Database) -> int:
    row = await db.fetch_one("SELECT count(*) FROM presets")
    return int(row[0]) if row is not None else 0


async def get(db: Database, name: str) -> Preset | None:
    row = await db.fetch_one(SELECT + " WHERE name = ?", (name,))
    return _preset(row) if row is not None else None


async def save(db: Database, preset: Preset, *, replace: bool) -> Preset:
    """Insert the preset (Exists if the name is taken), or with `replace` insert or update it."""
    now = clock.now()
    options = json.dumps(preset.options, sort_keys=True)

    def write(conn: Conn) -> Row:
        params = (preset.name, preset.filetype, preset.output_format, options, preset.description)
        if not replace:
            # ON CONFLICT, not a caught error: PostgreSQL ends a transaction a statement failed in.
            added = conn.execute(INSERT + " ON CONFLICT (name) DO NOTHING", (*params, now, now))
            if added.rowcount == 0:
                raise Exists(preset.name)
        else:
            conn.execute(
                INSERT + " ON CONFLICT (name) DO UPDATE SET filetype = excluded.filetype, "
                "output_format = excluded.output_format, options = excluded.options, "
                "description = excluded.description, updated_at = excluded.updated_at",
                (*params, now, now),
            )
        row: Row = conn.execute(SELECT + " WHERE name = ?", (preset.name,)).fetchone()
        return row

    return _preset(await db.write(write))


async def delete(db: Database, name: str) -> bool:
    def write(conn: Conn) -> bool:
        return conn.execute("DELETE FROM presets WHERE name = ?", (name,)).rowcount > 0

    return await db.write(write)


async def mark_used(db: Database, users: dict[str, str]) -> None:
    """Record which watch rule names each saved preset (the daemon's rules, at start)."""

    def write(conn: Conn) -> None:
        conn.execute("UPDATE presets SET used_by = NULL WHERE used_by IS NOT NULL")
        conn.executemany(
            "UPDATE presets SET used_by = ? WHERE name = ?",
            [(rule, name) for name, rule in sorted(users.items())],
        )

    await db.write(write)


async def user_of(db: Database, name: str) -> str | None:
    """The watch rule naming a saved preset, as the daemon last started, or None."""
    row = await db.fetch_one("SELECT used_by FROM presets WHERE name = ?", (name,))
    return str(row[0]) if row is not None and row[0] is not None else None
