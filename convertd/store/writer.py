"""The writer thread each engine writes through: it runs calls one at a time, in order, and
hands each result back to the event loop that asked. A whole transaction is one hop off the
loop, and writes never interleave within a process (a queue and a thread of our own, as lean
as aiosqlite's; a thread pool costs a tenth more per write, measured here)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class WriterThread(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="db-writer", daemon=True)
        self._calls: queue.SimpleQueue[
            tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[[], Any]] | None
        ] = queue.SimpleQueue()

    def call(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        # In the caller's context: a line logged by the write names the request and job.
        self._calls.put((loop, future, functools.partial(contextvars.copy_context().run, fn)))
        return future

    def run(self) -> None:
        self.started()
        try:
            while (item := self._calls.get()) is not None:
                loop, future, fn = item
                try:
                    outcome: tuple[Any, BaseException | None] = (fn(), None)
                except BaseException as exc:
                    outcome = (None, exc)
                # A loop that has closed meanwhile (a CLI command ending) has no one to tell.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle, future, *outcome)
        finally:
            self.finished()

    def started(self) -> None:
        """On the thread, before the first call."""

    def finished(self) -> None:
        """On the thread, after the last call (stop())."""

    def stop(self) -> None:
        self._calls.put(None)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():  # the caller was cancelled; the call ran anyway
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
