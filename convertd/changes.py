"""Waiting for a job or task to end without polling (`/sync/v2`, v1's `?wait=`): whoever
records a change announces it here after it is committed, and it wakes whoever waits on it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class Changes:
    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._listeners: list[Callable[[], None]] = []
        self._closed = False

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every announced change (the webhook sender looks for work)."""
        self._listeners.append(listener)

    def _event(self, subject: str) -> asyncio.Event:
        event = self._events.get(subject)
        if event is None or event.is_set():
            event = self._events[subject] = asyncio.Event()
        return event

    def changed(self, *subjects: str | None) -> None:
        for subject in subjects:
            if subject is not None and (event := self._events.pop(subject, None)) is not None:
                event.set()
        for listener in self._listeners:
            listener()

    def close(self) -> None:
        """The daemon is stopping: every wait answers now, with the state as it stands."""
        self._closed = True
        for event in self._events.values():
            event.set()
        self._events.clear()

    async def until(
        self,
        subject: str,
        load: Callable[[], Awaitable[T]],
        ended: Callable[[T], bool],
        timeout: float,
    ) -> T:
        """`load()` once `ended` says so, or as it stands after `timeout` seconds; woken by
        `changed(subject)`, never by polling."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            # Taken before the state is read, so a change in between is not missed.
            event = self._event(subject)
            current = await load()
            remaining = deadline - loop.time()
            if ended(current) or remaining <= 0 or self._closed:
                return current
            try:
                async with asyncio.timeout(remaining):
                    await event.wait()
            except TimeoutError:
                pass
