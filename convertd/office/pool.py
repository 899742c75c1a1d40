"""The pool of warm LibreOffice instances: found, started, handed out one document at a time,
restarted when they crash, recycled, stopped. Several documents convert in parallel, one per
instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from convertd.metrics import Metrics
from convertd.office.instance import Instance, OfficeCrashed
from convertd.office.profile import find_soffice, find_uno_python
from convertd.office.protocol import Reply, Request

logger = logging.getLogger(__name__)

# Recycle an instance after this many documents: LibreOffice's memory only grows.
DEFAULT_RECYCLE_AFTER = 200


class OfficePool:
    def __init__(
        self,
        root: Path,
        size: int,
        recycle_after: int = DEFAULT_RECYCLE_AFTER,
        uno_python: str | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.root = root
        self.size = max(1, size)
        self.recycle_after = recycle_after
        self.uno_python = uno_python  # the configured interpreter with `uno`, tried first
        self.python: str | None = None
        self.soffice: str | None = None
        self._detected = False
        self._idle: asyncio.Queue[Instance] = asyncio.Queue()
        self._instances: list[Instance] = []
        self.metrics = metrics or Metrics()
        # Read when scraped: how many run, and how many are handed out.
        self.metrics.office_instances.set_function(lambda: sum(i.running for i in self._instances))
        self.metrics.office_busy.set_function(lambda: len(self._instances) - self._idle.qsize())

    def detect(self) -> None:
        """Find soffice and a Python with uno (blocking: call it from a thread)."""
        if not self._detected:
            self.soffice = find_soffice()
            self.python = find_uno_python(self.uno_python) if self.soffice else None
            self._detected = True

    @property
    def uno_ready(self) -> bool:
        """Warm instances are possible; without uno, documents go through a cold soffice."""
        self.detect()
        return self.python is not None and self.soffice is not None

    def missing(self) -> list[str]:
        self.detect()
        return [] if self.soffice else ["soffice (LibreOffice)"]

    def start(self) -> None:
        if not self.uno_ready or self._instances:
            return
        assert self.python is not None and self.soffice is not None
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for n in range(self.size):
            instance = Instance(
                n, self.root, self.python, self.soffice, self.recycle_after, self.metrics
            )
            self._instances.append(instance)
            self._idle.put_nowait(instance)

    async def warm_up(self) -> None:
        """Start every instance now, so the first documents do not wait for LibreOffice."""
        started = await asyncio.gather(
            *(i.ensure_started() for i in self._instances), return_exceptions=True
        )
        for outcome in started:
            if isinstance(outcome, BaseException):
                logger.warning("office warm-up: %s", outcome)

    async def stop(self) -> None:
        await asyncio.gather(*(i.stop() for i in self._instances), return_exceptions=True)

    @contextlib.asynccontextmanager
    async def instance(self) -> AsyncIterator[Instance]:
        instance = await self._idle.get()
        try:
            yield instance
        finally:
            self._idle.put_nowait(instance)

    async def run(self, request: Request, timeout: float) -> Reply:
        """Convert on an idle instance; a crash is retried once on a fresh one."""
        for attempt in (1, 2):
            async with self.instance() as instance:
                try:
                    return await instance.convert(request, timeout)
                except OfficeCrashed:
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def office_pids(self) -> list[int]:
        return [i.office_pid for i in self._instances if i.office_pid]
