"""Upload records: which key sent which file, and when it expires."""

from __future__ import annotations

import dataclasses

from convertd import clock
from convertd.store.db import Conn, Database, Row, from_row


@dataclasses.dataclass(frozen=True)
class Upload:
    id: int
    key_id: int | None
    file_path: str
    file_name: str
    file_size: int
    extension: str
    created_at: float

    @classmethod
    def from_row(cls, row: Row) -> Upload:
        return from_row(cls, row)


def insert(
    conn: Conn,
    key_id: int | None,
    file_path: str,
    file_name: str,
    size: int,
    extension: str,
    created_at: float,
) -> int:
    """Insert an upload row inside the caller's transaction; returns its id."""
    cur = conn.execute(
        """INSERT INTO uploads (key_id, file_path, file_name, file_size, extension, created_at)
           VALUES (?, ?, ?, ?, ?, ?) RETURNING id""",
        (key_id, file_path, file_name, size, extension, created_at),
    )
    return int(cur.fetchone()[0])


async def record_uploads(
    db: Database, key_id: int | None, files: list[tuple[str, str, int, str]]
) -> list[Upload]:
    """Record (file_path, file_name, size, extension) tuples written by one request, together."""
    ts = clock.now()
    ids = await db.write(lambda conn: [insert(conn, key_id, *entry, ts) for entry in files])
    return [
        Upload(i, key_id, path, name, size, ext, ts)
        for i, (path, name, size, ext) in zip(ids, files, strict=True)
    ]


async def get_owned(db: Database, key_id: int | None, file_path: str) -> Upload | None:
    """The live upload at `file_path` if this key made it; another key's upload is not found."""
    row = await db.fetch_one(
        "SELECT * FROM uploads WHERE file_path = ? AND key_id IS NOT DISTINCT FROM ? "
        "AND expired = 0",
        (file_path, key_id),
    )
    return Upload.from_row(row) if row else None


async def get(db: Database, upload_id: int) -> Upload | None:
    row = await db.fetch_one("SELECT * FROM uploads WHERE id = ?", (upload_id,))
    return Upload.from_row(row) if row else None


async def expire_older_than(db: Database, cutoff: float) -> list[str]:
    """Mark uploads made before `cutoff` expired, except those a queued or running job still
    needs; returns their file paths for the caller to delete."""
    rows = await db.write(
        lambda conn: conn.execute(
            """UPDATE uploads SET expired = 1
               WHERE expired = 0 AND created_at < ?
                 AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.upload_id = uploads.id
                                 AND jobs.status IN ('pending', 'processing'))
               RETURNING file_path""",
            (cutoff,),
        ).fetchall()
    )
    return [row[0] for row in rows]
