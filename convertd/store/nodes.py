"""The nodes sharing the database (migration 7): each records itself as it starts, says it is
alive every few seconds, and takes back the jobs of a node that has not been seen for the lease.
"""

from __future__ import annotations

import dataclasses
import logging

from convertd import clock
from convertd.store.db import Conn, Database, Row, dialect_of, from_row

logger = logging.getLogger(__name__)

# Nodes that stopped or died are listed for a day, then forgotten (by the retention sweep).
FORGET_AFTER_SECONDS = 86400.0


@dataclasses.dataclass(frozen=True)
class Node:
    id: str
    host: str
    pid: int
    role: str  # "serve" or "worker"
    address: str | None
    workers: int
    version: str
    started_at: float
    seen_at: float
    stopped_at: float | None
    running: int = 0  # jobs its workers hold now
    leads: bool = False
    seen_ago: float = 0.0  # seconds since it was last seen, by the database's clock

    @classmethod
    def from_row(cls, row: Row) -> Node:
        return from_row(cls, row, leads=bool(row["leads"]))


async def register(db: Database, node: Node) -> None:
    await db.write(
        lambda conn: conn.execute(
            f"""INSERT INTO nodes (id, host, pid, role, address, workers, version, started_at,
                                  seen_at, stopped_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, {dialect_of(conn).now}, NULL)""",  # noqa: S608
            (
                node.id,
                node.host,
                node.pid,
                node.role,
                node.address,
                node.workers,
                node.version,
                node.started_at,
            ),
        )
    )


async def beat(db: Database, node_id: str) -> None:
    """The node is alive now."""
    await db.write(
        lambda conn: conn.execute(
            f"UPDATE nodes SET seen_at = {dialect_of(conn).now} WHERE id = ?",  # noqa: S608
            (node_id,),
        ),
        contended=True,
    )


async def set_address(db: Database, node_id: str, address: str) -> None:
    await db.write(
        lambda conn: conn.execute("UPDATE nodes SET address = ? WHERE id = ?", (address, node_id))
    )


async def stopped(db: Database, node_id: str) -> None:
    await db.write(
        lambda conn: conn.execute(
            f"UPDATE nodes SET seen_at = {dialect_of(conn).now}, stopped_at = ? WHERE id = ?",  # noqa: S608
            (clock.now(), node_id),
        )
    )


# The nodes whose jobs are theirs to finish: running, and seen within the lease (by the
# database's clock: the one all nodes' beats were written with).
_ALIVE = "SELECT id FROM nodes WHERE stopped_at IS NULL AND seen_at >= {now} - ?"


def _take_back(conn: Conn, lease_seconds: float, max_attempts: int) -> tuple[list[str], list[str]]:
    """Inside the caller's transaction: the running jobs of nodes no longer alive go back to
    the queue, or fail when they have had their attempts; (requeued ids, failed ids)."""
    now = clock.now()
    alive = _ALIVE.format(now=dialect_of(conn).now)
    gave_up = conn.execute(
        f"""UPDATE jobs SET status = 'failed', finished_at = ?, owner = NULL,
                  error = 'Gave up after ' || attempts || ' attempts: the node running it '
                          || 'stopped answering'
           WHERE status = 'processing' AND node IS NOT NULL AND attempts >= ?
             AND node NOT IN ({alive}) RETURNING id""",  # noqa: S608 (a constant)
        (now, max_attempts, lease_seconds),
    ).fetchall()
    requeued = conn.execute(
        f"""UPDATE jobs SET status = 'pending', owner = NULL, progress = NULL
           WHERE status = 'processing' AND node IS NOT NULL
             AND node NOT IN ({alive}) RETURNING id""",  # noqa: S608 (a constant)
        (lease_seconds,),
    ).fetchall()
    return [row[0] for row in requeued], [row[0] for row in gave_up]


async def take_back(
    db: Database, lease_seconds: float, max_attempts: int
) -> tuple[list[str], list[str]]:
    requeued, failed = await db.write(lambda conn: _take_back(conn, lease_seconds, max_attempts))
    for job_id in requeued:
        logger.warning("job %s: its node stopped answering; queued again", job_id)
    for job_id in failed:
        logger.warning("job %s: its node stopped answering; gave up (attempts used)", job_id)
    return requeued, failed


async def listed(db: Database, lease_seconds: float, everyone: bool = False) -> list[Node]:
    """The live nodes (seen within the lease), newest first; with `everyone`, also those that
    stopped or died in the last day."""
    alive = "" if everyone else f"WHERE n.stopped_at IS NULL AND n.seen_at >= {db.dialect.now} - ?"
    params = () if everyone else (lease_seconds,)
    rows = await db.fetch_all(
        f"""SELECT n.*, (SELECT COUNT(*) FROM jobs j WHERE j.status = 'processing'
                        AND j.node = n.id) AS running,
                  EXISTS (SELECT 1 FROM leader l WHERE l.node = n.id) AS leads,
                  {db.dialect.now} - n.seen_at AS seen_ago
           FROM nodes n {alive} ORDER BY n.started_at DESC, n.id""",  # noqa: S608 (constants)
        params,
    )
    return [Node.from_row(row) for row in rows]


def lead(conn: Conn, node_id: str) -> None:
    """`node_id` leads from now (it holds the leader's lock)."""
    conn.execute(
        "INSERT INTO leader (id, node, since) VALUES (1, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET node = excluded.node, since = excluded.since",
        (node_id, clock.now()),
    )


async def storage_mark_moved(db: Database, seen: str | None, fresh: str) -> bool:
    """If the storage's mark on record is `seen` (or none is, the first node's start), make it
    `fresh` and say True; else False: the folder this node sees is not the one on record."""

    def move(conn: Conn) -> bool:
        row = conn.execute("SELECT mark FROM storage WHERE id = 1").fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO storage (id, mark, created_at) VALUES (1, ?, ?)", (fresh, clock.now())
            )
            return True
        if row[0] != seen:
            return False
        conn.execute("UPDATE storage SET mark = ? WHERE id = 1", (fresh,))
        return True

    return bool(await db.write(move))


def leads(conn: Conn, node_id: str) -> bool:
    """Inside the caller's transaction: whether `node_id` is the leader on record."""
    return conn.execute("SELECT 1 FROM leader WHERE node = ?", (node_id,)).fetchone() is not None


async def forget_before(db: Database, cutoff: float) -> int:
    """Nodes not seen since `cutoff` leave the list."""
    return int(
        await db.write(
            lambda conn: conn.execute("DELETE FROM nodes WHERE seen_at < ?", (cutoff,)).rowcount
        )
    )
