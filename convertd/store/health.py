"""Is the database answering, and can it be written? The two probes health and the watchdog use.

`write_probe` commits a real change (the one row of the `health` table): it fails where the
database cannot take a write, as a job's end could not be recorded (a read-only or failing
disk, a lock held elsewhere past the busy timeout). `answers` only takes and releases the write
lock on the writer thread: it shows that thread and the lock are not stuck, and needs no free
space, so a full disk (which a restart cannot mend) does not stop the watchdog.
"""

from __future__ import annotations

from convertd import clock
from convertd.store.db import Conn, Database


def _touch(conn: Conn) -> None:
    conn.execute(
        "INSERT INTO health (id, checked_at) VALUES (1, ?) "
        "ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
        (clock.now(),),
    )


async def write_probe(db: Database) -> None:
    """Commit one small real write; raises what SQLite raised."""
    await db.write(_touch)


async def answers(db: Database) -> None:
    """BEGIN IMMEDIATE ... COMMIT of nothing, on the writer thread."""
    await db.write(lambda conn: None)
