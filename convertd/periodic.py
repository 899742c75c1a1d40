"""Periodic background work, the one way: an interval, a wake-up call, error handling, a clean stop.

Every forever-loop in convertd (workers waiting for jobs, call-count flushes, the retention
sweep, drop-folder scans, settle checks and deliveries) is a `Periodic`: it runs its work, then
waits for the interval or until someone calls `poke()`. Work that returns True has more to do
and runs again at once. An exception is logged (with its traceback the first time in a row,
in one line while it keeps failing) and the work is tried again after the interval (at least a
second), so a bad moment (a full disk, a locked database) never ends the loop. `stop()`
cancels the task and waits for it; with `final=True` the work runs once more, shielded, so what
it keeps in memory (call counts) is not lost at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

MIN_RETRY_SECONDS = 1.0


class Periodic:
    def __init__(
        self,
        name: str,
        work: Callable[[], Awaitable[bool | None]],
        interval: float,
        *,
        run_at_start: bool = True,
        debounce: float = 0.0,
        final: bool = False,
    ) -> None:
        self.name = name
        self.work = work
        self.interval = interval
        self.run_at_start = run_at_start
        self.debounce = debounce  # after a poke, wait this long so a burst runs the work once
        self.final = final
        self._poked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Periodic:
        self._task = asyncio.create_task(self._run(), name=self.name)
        return self

    def poke(self) -> None:
        """Run the work soon, without waiting for the rest of the interval."""
        self._poked.set()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.final:
            try:
                await asyncio.shield(self.work())
            except Exception:
                logger.exception("%s: the last run at shutdown failed", self.name)

    async def _run(self) -> None:
        delay = 0.0 if self.run_at_start else self.interval
        failures = 0
        while True:
            if delay > 0:
                await self._wait(delay)
            self._poked.clear()
            try:
                again = await self.work()
            except Exception as exc:
                failures += 1
                delay = max(self.interval, MIN_RETRY_SECONDS)
                if failures == 1:
                    logger.exception("%s failed; trying again in %.1f s", self.name, delay)
                else:
                    logger.error("%s failed again (%d in a row): %s", self.name, failures, exc)
                continue
            failures = 0
            delay = 0.0 if again else self.interval

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._poked.wait()
        if self._poked.is_set() and self.debounce > 0:
            await asyncio.sleep(self.debounce)
