"""Drop records: a file taken from a watched folder, its job, and what became of it.

A drop moves through: claiming (row written, file being moved into the upload area) -> queued
(its upload and job exist) -> delivering (output name chosen) -> done | failed. Each step is one
transaction, so a crash at any point is repaired at the next start.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

from convertd import clock
from convertd.store import jobs, uploads
from convertd.store.db import Conn, Database, Row, from_row, marks

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Drop:
    id: int
    rule: str
    source_path: bytes
    display_name: str
    output_format: str
    size: int
    mtime_ns: int
    upload_path: str  # where the claim moves the file: "<token>/<name>" in the upload area
    upload_id: int | None
    job_id: str | None
    status: str
    output_path: bytes | None
    error: str | None
    created_at: float
    finished_at: float | None

    @property
    def original_name(self) -> str:
        """The original's own name, byte for byte (not UTF-8, newlines, a leading dash, all
        kept): what it is called wherever convertd puts it back."""
        return os.fsdecode(self.source_path).rsplit("/", 1)[-1]

    @classmethod
    def from_row(cls, row: Row) -> Drop:
        output = row["output_path"]
        return from_row(
            cls,
            row,
            source_path=bytes(row["source_path"]),
            output_path=bytes(output) if output is not None else None,
        )


@dataclasses.dataclass(frozen=True)
class Found:
    """A file found in a watched folder, as its drop records it."""

    rule: str
    source: bytes  # its path; bytes, names need not be UTF-8
    name: str  # for people, and for the output
    output_format: str
    size: int
    mtime_ns: int


def _insert(
    conn: Conn,
    found: Found,
    status: str,
    upload_path: str = "",
    error: str | None = None,
) -> int:
    now = clock.now()
    cur = conn.execute(
        """INSERT INTO drops (rule, source_path, display_name, output_format, size, mtime_ns,
                              upload_path, status, error, created_at, finished_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id""",
        (
            *dataclasses.astuple(found),
            upload_path,
            status,
            error,
            now,
            now if status == "failed" else None,
        ),
    )
    return int(cur.fetchone()[0])


async def begin_claim(db: Database, found: Found, upload_path: str) -> int:
    """The drop's row, written before the file moves to `upload_path`; its id."""
    return await db.write(lambda conn: _insert(conn, found, "claiming", upload_path))


async def queue(
    db: Database, drop_id: int, file_name: str, extension: str, conversion: jobs.Conversion
) -> str:
    """Record the claimed file as an upload and queue its job, in one transaction."""

    def record(conn: Conn) -> str:
        row = conn.execute(
            "SELECT size, upload_path FROM drops WHERE id = ?", (drop_id,)
        ).fetchone()
        assert row is not None
        upload_id = uploads.insert(conn, None, row[1], file_name, row[0], extension, clock.now())
        job = jobs.insert(conn, upload_id, conversion, key_id=None, source="drop")
        conn.execute(
            "UPDATE drops SET status = 'queued', upload_id = ?, job_id = ? WHERE id = ?",
            (upload_id, job["id"], drop_id),
        )
        return str(job["id"])

    return await db.write(record)


async def convert_again(db: Database, drop_id: int, size: int, mtime_ns: int) -> str:
    """The taken file changed after it was taken (a writer kept it open): record what it is
    now and queue the same conversion of it again, in one transaction; the new job's id."""

    def record(conn: Conn) -> str:
        old = conn.execute(
            """SELECT j.upload_id, j.filetype, j.input_format, j.output_format, j.options
               FROM drops d JOIN jobs j ON j.id = d.job_id WHERE d.id = ?""",
            (drop_id,),
        ).fetchone()
        assert old is not None
        conversion = jobs.Conversion(
            old["filetype"], old["input_format"], old["output_format"], json.loads(old["options"])
        )
        job = jobs.insert(conn, old["upload_id"], conversion, key_id=None, source="drop")
        conn.execute(
            "UPDATE drops SET status = 'queued', job_id = ?, size = ?, mtime_ns = ? WHERE id = ?",
            (job["id"], size, mtime_ns, drop_id),
        )
        return str(job["id"])

    return await db.write(record)


async def set_output(db: Database, drop_id: int, output: bytes) -> None:
    await db.write(
        lambda conn: conn.execute(
            "UPDATE drops SET status = 'delivering', output_path = ? WHERE id = ?",
            (output, drop_id),
        )
    )


async def close(db: Database, drop_id: int, status: str, error: str | None = None) -> None:

    def record(conn: Conn) -> None:
        conn.execute(
            "UPDATE drops SET status = ?, error = ?, finished_at = ? WHERE id = ?",
            (status, error, clock.now(), drop_id),
        )
        # The original has left the upload area: its record must not be swept again.
        conn.execute(
            "UPDATE uploads SET expired = 1 WHERE id = (SELECT upload_id FROM drops WHERE id = ?)",
            (drop_id,),
        )

    await db.write(record)


async def record_refused(db: Database, found: Found, error: str) -> None:
    """A file refused when it was found (no converter makes its format of it): a drop that
    failed at once, so that `convertd drops` lists it with the reason."""
    await db.write(lambda conn: _insert(conn, found, "failed", error=error))


async def note(db: Database, drop_id: int, why: str) -> None:
    """Why a drop still waits, for `convertd drops` (its status stays as it is)."""
    await db.write(
        lambda conn: conn.execute("UPDATE drops SET error = ? WHERE id = ?", (why, drop_id))
    )


async def forget(db: Database, drop_id: int) -> None:
    await db.write(
        lambda conn: conn.execute(
            "DELETE FROM drops WHERE id = ? AND status = 'claiming'", (drop_id,)
        )
    )


async def by_status(db: Database, *statuses: str) -> list[Drop]:
    rows = await db.fetch_all(
        f"SELECT * FROM drops WHERE status IN ({marks(statuses)}) ORDER BY id",  # noqa: S608 (placeholders)
        statuses,
    )
    return [Drop.from_row(r) for r in rows]


DELIVERY_BATCH = 200


async def ready_to_deliver(
    db: Database, rules: list[str]
) -> list[tuple[Drop, str, str | None, str | None]]:
    """Queued or half-delivered drops of these rules whose job has ended, at most
    DELIVERY_BATCH of them: (drop, job status, result, error)."""
    rows = await db.fetch_all(
        f"""SELECT d.*, j.status AS job_status, j.result_name, j.error AS job_error
           FROM drops d JOIN jobs j ON j.id = d.job_id
           WHERE d.status IN ('queued', 'delivering') AND j.status IN ('finished', 'failed')
             AND d.rule IN ({marks(rules)})
           ORDER BY d.id LIMIT ?""",  # noqa: S608 (placeholders only)
        (*rules, DELIVERY_BATCH),
    )
    return [(Drop.from_row(r), r["job_status"], r["result_name"], r["job_error"]) for r in rows]


async def kept_originals(db: Database, rule: str) -> set[tuple[bytes, int, int]]:
    """(path, size, mtime) of originals a `keep` rule has taken (they stay in place, converting,
    converted or failed): not to be taken again unless they change."""
    rows = await db.fetch_all(
        "SELECT source_path, size, mtime_ns FROM drops WHERE rule = ?",
        (rule,),
    )
    return {(bytes(r[0]), r[1], r[2]) for r in rows}


async def latest(
    db: Database, statuses: tuple[str, ...], limit: int, rule: str | None = None
) -> list[Drop]:
    """The newest `limit` drops in these statuses (the status index finds them), newest first;
    of one rule, or of all."""
    rows = await db.fetch_all(
        f"""SELECT * FROM drops WHERE status IN ({marks(statuses)})
            AND (CAST(? AS TEXT) IS NULL OR rule = ?)
            ORDER BY id DESC LIMIT ?""",  # noqa: S608 (placeholders only)
        (*statuses, rule, rule, limit),
    )
    return [Drop.from_row(r) for r in rows]


async def recent(db: Database, limit: int = 50) -> list[Drop]:
    rows = await db.fetch_all("SELECT * FROM drops ORDER BY id DESC LIMIT ?", (limit,))
    return [Drop.from_row(r) for r in rows]


async def get(db: Database, drop_id: int) -> Drop | None:
    row = await db.fetch_one("SELECT * FROM drops WHERE id = ?", (drop_id,))
    return Drop.from_row(row) if row else None
