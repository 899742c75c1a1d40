"""systemd's watchdog: `WATCHDOG=1` every half of `WatchdogSec=` while convertd is healthy.

Healthy here means what a restart could mend: the event loop turns (the ping is sent from it)
and the database answers (the writer thread takes and releases the write lock,
store/health.answers, within the interval). A full disk or a missing tool is /health's
business, not the watchdog's: a restart mends neither, so they must not set off a restart loop.
A probe still waiting when the next is due is not doubled: the ping is simply missed, and
systemd restarts the service once `WatchdogSec=` passes without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from convertd import sdnotify
from convertd.periodic import Periodic
from convertd.store import health
from convertd.store.db import DATABASE_ERRORS, DATABASE_OR_OS, Database

logger = logging.getLogger(__name__)


class Watchdog:
    def __init__(self, db: Database, notify_socket: str, interval: float) -> None:
        self.db = db
        self.notify_socket = notify_socket
        self.interval = interval
        self._probe: asyncio.Task[None] | None = None
        self._failing = False
        self._periodic = Periodic("watchdog", self._ping, interval)

    def start(self) -> Watchdog:
        logger.info("systemd watchdog: a ping every %.1f s while all is well", self.interval)
        self._periodic.start()
        return self

    async def stop(self) -> None:
        await self._periodic.stop()
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError, *DATABASE_OR_OS):
                await self._probe

    async def _ping(self) -> None:
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(health.answers(self.db), name="watchdog-probe")
        try:
            async with asyncio.timeout(self.interval):
                await asyncio.shield(self._probe)
        except (TimeoutError, *DATABASE_ERRORS, OSError) as exc:  # type: ignore[misc]
            if not self._failing:
                logger.error("systemd watchdog: no ping, the database does not answer (%r)", exc)
            self._failing = True
            return
        if self._failing:
            logger.info("systemd watchdog: the database answers again; pinging")
        self._failing = False
        sdnotify.notify(self.notify_socket, "WATCHDOG=1")
