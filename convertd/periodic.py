"""Periodic background work, the one way: an interval, a wake-up call, error handling, a clean stop.

Every forever-loop in convertd (workers waiting for jobs, call-count flushes, the retention
sweep, drop-folder scans, settle checks and deliveries) is a `Periodic`: it runs its work, then
waits for the interval or until someone calls `poke()`. Work that returns True has more to do
and runs again at once; work that returns a number of seconds runs again after that long (at
most the interval), for work that knows when it is next due. An exception is logged (with its
traceback the first time in a row, in one line while it keeps failing) and the work is tried
again after the interval (at least a second; with `max_backoff`, twice as long after each
failure in a row, up to that), so a bad moment (a full disk, a locked database) never ends the
loop; while it keeps failing, a line at the 2nd, 4th, 8th... failure in a row, so a long outage
is a few lines, not one a second. `stop()` cancels the task and waits for it. With
`final=True`, `stop()` instead lets a run in progress finish (cancelling it could abandon a
write that still commits on the database thread) and then runs the work once more, so what it
keeps in memory (call counts) is neither lost nor written twice at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

MIN_RETRY_SECONDS = 1.0
# Failures that say all there is in one line (a database away): no traceback. Named by the
# layer that knows them (store/db.py).
_quiet: tuple[type[BaseException], ...] = ()


def quiet_failures(*kinds: type[BaseException]) -> None:
    global _quiet
    _quiet = (*_quiet, *kinds)


def backoff(first: float, failures: int, longest: float) -> float:
    """The wait after `failures` failures in a row: `first`, then twice as long each time, up
    to `longest`. The one back-off rule for everything in convertd that tries again."""
    return min(first * 2.0 ** max(failures - 1, 0), max(longest, first))


class Periodic:
    def __init__(
        self,
        name: str,
        work: Callable[[], Awaitable[bool | float | None]],
        interval: float,
        *,
        run_at_start: bool = True,
        debounce: float = 0.0,
        final: bool = False,
        max_backoff: float | None = None,
    ) -> None:
        self.name = name
        self.work = work
        self.interval = interval
        self.run_at_start = run_at_start
        self.debounce = debounce  # after a poke, wait this long so a burst runs the work once
        self.final = final
        self.max_backoff = max_backoff
        self._poked = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Periodic:
        self._task = asyncio.create_task(self._run(), name=self.name)
        return self

    @property
    def alive(self) -> bool:
        """Started and not ended: its loop survives any error in the work, so an ended task
        means it was stopped, or something outside the work killed it."""
        return self._task is not None and not self._task.done()

    def poke(self) -> None:
        """Run the work soon, without waiting for the rest of the interval."""
        self._poked.set()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            if self.final:
                self._stopping = True
                self.poke()
            else:
                task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # whoever called stop() is being cancelled too
        if self.final:
            try:
                await self.work()
            except Exception:
                logger.exception("%s: the last run at shutdown failed", self.name)

    async def _run(self) -> None:
        delay = 0.0 if self.run_at_start else self.interval
        failures = 0
        while True:
            if delay > 0:
                await self._wait(delay)
            if self._stopping:
                return
            self._poked.clear()
            try:
                again = await self.work()
            except Exception as exc:
                failures += 1
                delay = max(self.interval, MIN_RETRY_SECONDS)
                if self.max_backoff is not None:
                    delay = backoff(delay, failures, self.max_backoff)
                if failures == 1:
                    logger.error(
                        "%s failed; trying again in %.1f s",
                        self.name,
                        delay,
                        exc_info=None if isinstance(exc, _quiet) else exc,
                    )
                elif failures & (failures - 1) == 0:  # 2, 4, 8...: an outage is not a flood
                    logger.error("%s failed again (%d in a row): %s", self.name, failures, exc)
                continue
            if failures > 1:
                logger.info("%s works again after %d failures in a row", self.name, failures)
            failures = 0
            if again is True:
                delay = 0.0
            elif isinstance(again, int | float) and not isinstance(again, bool):
                delay = min(max(float(again), 0.0), self.interval)
            else:
                delay = self.interval

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._poked.wait()
        if self._poked.is_set() and self.debounce > 0:
            await asyncio.sleep(self.debounce)
