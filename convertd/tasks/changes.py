"""Who waits for which task or job to change (`/sync/v2` requests); woken after each committed
change, so nothing polls."""

from __future__ import annotations

import asyncio


class Changes:
    """Who is waiting for which task or job to change; woken after each committed change."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def event(self, subject: str) -> asyncio.Event:
        """The event to wait on for the next change of `subject`; take it *before* reading
        the state, so a change in between is not missed."""
        event = self._events.get(subject)
        if event is None or event.is_set():
            event = self._events[subject] = asyncio.Event()
        return event

    def changed(self, *subjects: str | None) -> None:
        for subject in subjects:
            if subject is not None and (event := self._events.pop(subject, None)) is not None:
                event.set()
