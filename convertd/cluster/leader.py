"""The work one node does for all of them, at a time (issue 18): the /v2 task engine, the
webhook sender, the drop folders and the retention sweep. Several nodes running these at once
would run a merge twice, deliver a webhook twice, or take a dropped file twice; one node leads
instead, through a lock PostgreSQL holds for it (store/postgres.py), and the others take over
when it stops: killed, its lock goes with its connection at once; stopped or cut off, within
the lock's LOST_AFTER_SECONDS (15 s) and a check. Conversions run on every node either way.

On SQLite there is one node, and it always leads.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from convertd.periodic import Periodic
from convertd.store import nodes
from convertd.store.db import Conn, Database

logger = logging.getLogger(__name__)

# pg_try_advisory_lock's key for leading: a fixed number no other lock of ours uses.
LEADER_LOCK = 0x6376_6C65_6164  # "cvlead"
CHECK_SECONDS = 2.0

# A service the leader runs: starting it returns what stops it.
Stop = Callable[[], Awaitable[None]]
Begin = Callable[[], Awaitable[Stop]]


class Leadership:
    def __init__(self, db: Database, node_id: str) -> None:
        self.db = db
        self.node_id = node_id
        self.leading = False
        self._lock = db.leader_lock(LEADER_LOCK)
        self._services: list[tuple[str, Begin]] = []
        self._stops: list[tuple[str, Stop]] = []
        self._checks = Periodic("leadership", self._check, CHECK_SECONDS, run_at_start=False)
        self._shared = db.shared

    def fence(self, conn: Conn) -> bool:
        """Inside a write: whether this node is still the leader on record. A leader cut off
        and back finds another named there and its late writes refused."""
        return nodes.leads(conn, self.node_id)

    def add(self, name: str, begin: Begin) -> None:
        """Run this service while this node leads (started in the order added)."""
        self._services.append((name, begin))

    async def start(self) -> None:
        await self._check()  # SQLite, or the first node: lead from the start
        self._checks.start()

    async def stop(self) -> None:
        await self._checks.stop()
        if self.leading:  # (on record until the next leader writes itself in)
            await self._resign()
        await self._lock.release()

    async def _check(self) -> None:
        if self.leading:
            if not await self._lock.still_held():
                logger.warning("node %s no longer leads (its lock was lost)", self.node_id)
                await self._resign()
        elif await self._lock.try_take():
            await self._lead()

    async def _lead(self) -> None:
        # On record before anything runs: what a leader no more records is refused (fence).
        await self.db.write(lambda conn: nodes.lead(conn, self.node_id))
        self.leading = True
        if self._shared:
            logger.info("node %s leads: %s", self.node_id, ", ".join(n for n, _ in self._services))
        for name, begin in self._services:
            try:
                self._stops.append((name, await begin()))
            except Exception:
                logger.exception("%s did not start", name)

    async def _resign(self) -> None:
        self.leading = False
        while self._stops:
            name, stop = self._stops.pop()
            try:
                await stop()
            except Exception:
                logger.exception("%s did not stop cleanly", name)
