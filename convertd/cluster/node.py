"""This process as one node among several (issue 18): its row in the nodes table, kept alive,
and the jobs of nodes that stopped answering taken back for the queue. (On SQLite, the one node
records only its start and stop.)

A node says it is alive every LEASE_SECONDS / 4. A node not seen for LEASE_SECONDS (killed,
powered off, cut off, or stopped with SIGSTOP) has lost its jobs: any node's next look, within
another LEASE_SECONDS / 4, puts them back in the queue (or fails those out of attempts), so a
job of a dead node runs again within LEASE_SECONDS * 1.25 = 25 s. Its workers, if it comes back,
find the job no longer theirs (worker.py asks before it publishes a result and every second
while it runs) and drop what they were doing: a late result is never recorded.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time

from convertd import __version__, clock, logs
from convertd.periodic import Periodic
from convertd.store import nodes
from convertd.store.db import Database

logger = logging.getLogger(__name__)

LEASE_SECONDS = 20.0
BEAT_SECONDS = LEASE_SECONDS / 4


def new_node_id() -> str:
    """Unique to this process, and readable: the host, the pid, and a random part."""
    host = "".join(c if c.isalnum() or c in "-." else "-" for c in socket.gethostname())[:40]
    return f"{host or 'node'}-{os.getpid()}-{secrets.token_hex(3)}"


class NodeLife:
    def __init__(
        self,
        db: Database,
        *,
        role: str,
        workers: int,
        address: str | None = None,
    ) -> None:
        self.db = db
        self.id = new_node_id()
        self.role = role
        self.workers = workers
        self.max_attempts = 1
        self.address = address
        self._last_beat = 0.0
        # Since when this node's beats have reached the database without a break: it judges
        # others lost only after a whole lease of its own (see _take_back).
        self._connected_since: float | None = None
        self._beats = Periodic("node-beat", self._beat, BEAT_SECONDS)
        self._reaper = Periodic("node-reaper", self._take_back, BEAT_SECONDS, run_at_start=False)

    async def start(self, max_attempts: int) -> NodeLife:
        """Join; jobs taken back from lost nodes fail once they have had `max_attempts`."""
        self.max_attempts = max_attempts
        now = clock.now()
        await nodes.register(
            self.db,
            nodes.Node(
                id=self.id,
                host=socket.gethostname(),
                pid=os.getpid(),
                role=self.role,
                address=self.address,
                workers=self.workers,
                version=__version__,
                started_at=now,
                seen_at=now,
                stopped_at=None,
            ),
        )
        self._last_beat = time.monotonic()
        logger.info(
            "node %s (%s, %s) joined", self.id, self.role, logs.counted(self.workers, "worker")
        )
        if self.db.shared:
            # One SQLite node needs neither: the data dir's lock keeps others out, and an idle
            # daemon writing every few seconds would keep a NAS's disks from ever sleeping.
            self._beats.start()
            self._reaper.start()
        return self

    async def listening(self, address: str) -> None:
        """Where its API answers, once it does (the port may have been chosen then)."""
        self.address = address
        await nodes.set_address(self.db, self.id, address)

    async def stop(self) -> None:
        await self._reaper.stop()
        await self._beats.stop()
        try:
            await nodes.stopped(self.db, self.id)
        except Exception as exc:  # the database may be what is gone: nothing to do about it
            logger.warning("node %s: could not record its stop (%s)", self.id, exc)

    async def _beat(self) -> None:
        away = time.monotonic() - self._last_beat
        heard = self._connected_since is not None  # its beats went through until now
        try:
            await nodes.beat(self.db, self.id)
        except BaseException:
            self._connected_since = None
            raise
        if not heard or away > LEASE_SECONDS:
            self._connected_since = time.monotonic()
        if away > LEASE_SECONDS and heard:
            # Not a beat failed: this process itself did not run (stopped, suspended).
            logger.warning(
                "node %s did not run for %.0f s (stopped?): other nodes may have taken its "
                "running jobs, which it gives up",
                self.id,
                away,
            )
        elif away > LEASE_SECONDS:
            logger.info("node %s: the database answers again after %.0f s", self.id, away)
        self._last_beat = time.monotonic()

    async def _take_back(self) -> None:
        # Only a node that has itself been heard for a whole lease may judge another silent:
        # after the database was away (restarted, or this node cut off), every node's last beat
        # is old, and each would take the others' jobs (and use up their attempts) at once.
        since = self._connected_since
        if since is None or time.monotonic() - since < LEASE_SECONDS:
            return
        await nodes.take_back(self.db, LEASE_SECONDS, self.max_attempts)
