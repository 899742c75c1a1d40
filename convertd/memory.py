"""Handing memory back to the system after jobs.

Parsing a hostile or merely huge file in-process (an archive with 100,000 entries, a big image)
leaves the daemon's heap large after the objects are gone: CPython frees them into its arenas
and glibc keeps the pages, so a long-running daemon would sit at its high-water mark. Once the
workers have been idle for a moment, a full collection and malloc_trim give those pages back.

Not after every job: memory handed back is memory the next job faults in again, which cost a
JPEG resize a fifth of its time when measured here. Under steady load the trim still runs once
every MAX_INTERVAL_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

IDLE_SECONDS = 2.0
MAX_INTERVAL_SECONDS = 60.0


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    return trim


_trim = _malloc_trim()
# glibc's M_ARENA_MAX: each thread that allocates may otherwise get an arena of its own, and
# memory freed in a thread's arena (a huge body parsed off the event loop) stays there, trim or
# not. One arena: measured here, a 13 MB body's memory all came back (with two, ~18 MB stayed),
# and a JPEG resize in the worker threads cost the same (1.15-1.16x of bare Pillow either way).
M_ARENA_MAX = -8
ARENAS = 1


def limit_arenas() -> None:
    """At start, before threads allocate: at most ARENAS malloc arenas (glibc only). A fixed
    mmap threshold would give huge blocks back at once too, but measured here it cost a JPEG
    resize 15-20 ms (Pillow's 16 MiB blocks mapped afresh each time): not taken."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(name).mallopt(M_ARENA_MAX, ARENAS)


def release() -> None:
    gc.collect()
    if _trim is not None:
        _trim(0)


class Reclaimer:
    """Runs `release` once work (jobs, huge request bodies) has stopped ending for
    IDLE_SECONDS, or at the latest every MAX_INTERVAL_SECONDS while it keeps ending."""

    def __init__(
        self, idle: float = IDLE_SECONDS, max_interval: float = MAX_INTERVAL_SECONDS
    ) -> None:
        self.idle = idle
        self.max_interval = max_interval
        self._last: float | None = None
        self._scheduled: asyncio.TimerHandle | None = None
        self._running: asyncio.Future[None] | None = None

    def work_done(self) -> None:
        loop = asyncio.get_running_loop()
        if self._last is None:
            self._last = loop.time()
        if self._scheduled is not None:
            self._scheduled.cancel()
        overdue = loop.time() - self._last >= self.max_interval
        self._scheduled = loop.call_later(0 if overdue else self.idle, self._run)

    def _run(self) -> None:
        self._scheduled = None
        if self._running is not None and not self._running.done():
            return
        loop = asyncio.get_running_loop()
        self._last = loop.time()
        self._running = loop.run_in_executor(None, release)
        self._running.add_done_callback(self._done)

    @staticmethod
    def _done(future: asyncio.Future[None]) -> None:
        if not future.cancelled() and future.exception() is not None:
            logger.warning("could not release memory: %s", future.exception())

    def close(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None


_process_reclaimer: Reclaimer | None = None


def reclaimer() -> Reclaimer:
    """The process's one Reclaimer: the worker pool's jobs and the API's huge bodies share it,
    so a burst of either ends in one trim."""
    global _process_reclaimer
    if _process_reclaimer is None:
        _process_reclaimer = Reclaimer()
    return _process_reclaimer
