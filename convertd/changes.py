"""Hearing of changes without polling: whoever records a change announces it here after it is
committed. `changed(subject)` wakes whoever waits for that job or task to end (`/sync/v2`, v1's
`?wait=`); `publish(key_id, item)` tells the event streams of that key (`/v1/events`,
`/v2/events`) which job or task to show again. With several nodes, a relay (cluster/relay.py)
carries both to the other nodes, whose `heard` announces them there."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

# What changed, for an event stream: ("job", id) a v1-style queued job (any source), ("task",
# id) a /v2 task, ("task_job", id) a /v2 job; ("new_job", id) and ("new_task_job", id) when one
# was just made (shown as job.created whatever its status by then).
Item = tuple[str, str]


def task_items(task_id: str, job_id: str | None) -> list[Item]:
    """A /v2 task changed: it, and the job it belongs to (whose status and percent follow)."""
    return [("task", task_id)] + ([("task_job", job_id)] if job_id else [])


class Subscription:
    """One event stream's view: the items changed since it last looked, each once however
    often it changed (so a slow reader costs one entry per job, not one per change)."""

    def __init__(self) -> None:
        self._pending: dict[Item, None] = {}
        self._ready = asyncio.Event()
        self.closed = False

    def add(self, item: Item) -> None:
        self._pending[item] = None
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def next(self, timeout: float) -> list[Item]:
        """The items changed since the last call, waiting up to `timeout` for one; [] if none."""
        if not self._pending and not self.closed:
            try:
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
            except TimeoutError:
                pass
        self._ready.clear()
        items, self._pending = list(self._pending), {}
        return items


# What a relay carries to the other nodes: the subjects that changed, and what was published
# to which key's streams.
Published = list[tuple[int | None, list[Item]]]
Relay = Callable[[list[str], Published], None]


class Changes:
    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._waiting: dict[str, int] = {}  # subject -> how many until() wait on it now
        self._listeners: list[Callable[[], None]] = []
        self._heard_listeners: list[Callable[[], None]] = []
        self._streams: dict[int | None, set[Subscription]] = {}
        self._closed = False
        self.relay: Relay | None = None

    def subscribe(self, key_id: int | None) -> Subscription:
        subscription = Subscription()
        if self._closed:
            subscription.close()
        self._streams.setdefault(key_id, set()).add(subscription)
        return subscription

    def streams_of(self, key_id: int | None) -> int:
        return len(self._streams.get(key_id, ()))

    def unsubscribe(self, key_id: int | None, subscription: Subscription) -> None:
        streams = self._streams.get(key_id)
        if streams is not None:
            streams.discard(subscription)
            if not streams:
                del self._streams[key_id]

    def publish(self, key_id: int | None, *items: Item) -> None:
        self._publish(key_id, items)
        if self.relay is not None:
            self.relay([], [(key_id, list(items))])

    def _publish(self, key_id: int | None, items: tuple[Item, ...] | list[Item]) -> None:
        for subscription in self._streams.get(key_id, ()):
            for item in items:
                subscription.add(item)

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every announced change (the webhook sender looks for work)."""
        self._listeners.append(listener)

    def on_heard(self, listener: Callable[[], None]) -> None:
        """Call `listener` after each change another node announced (what this node did, its
        listener hears of in its own way)."""
        self._heard_listeners.append(listener)

    def _event(self, subject: str) -> asyncio.Event:
        event = self._events.get(subject)
        if event is None or event.is_set():
            event = self._events[subject] = asyncio.Event()
        return event

    def changed(self, *subjects: str | None) -> None:
        named = [subject for subject in subjects if subject is not None]
        self._changed(named)
        if self.relay is not None:
            self.relay(named, [])

    def _changed(self, subjects: list[str]) -> None:
        for subject in subjects:
            if (event := self._events.pop(subject, None)) is not None:
                event.set()
        for listener in self._listeners:
            listener()

    def heard(self, subjects: list[str], published: list[tuple[int | None, list[Item]]]) -> None:
        """What another node announced, announced here (and not relayed again)."""
        for key_id, items in published:
            self._publish(key_id, items)
        self._changed(subjects)
        for listener in self._heard_listeners:
            listener()

    def close(self) -> None:
        """The daemon is stopping: every wait answers now, with the state as it stands."""
        self._closed = True
        for event in self._events.values():
            event.set()
        self._events.clear()
        for streams in self._streams.values():
            for subscription in streams:
                subscription.close()

    def waited(self) -> list[str]:
        """The subjects some `until()` waits on now (events/outside.py looks at them)."""
        return list(self._waiting)

    async def until(
        self,
        subject: str,
        load: Callable[[], Awaitable[T]],
        ended: Callable[[T], bool],
        timeout: float,
    ) -> T:
        """`load()` once `ended` says so, or as it stands after `timeout` seconds; woken by
        `changed(subject)`, never by polling. The first `load()` is the caller's read too (a
        subject that does not exist raises there), so a wait costs no extra read; whatever
        happens, the subject's event goes when its last waiter does (an ended job's is never
        set again, and would stay forever)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._waiting[subject] = self._waiting.get(subject, 0) + 1
        try:
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
        finally:
            if (left := self._waiting.pop(subject) - 1) > 0:
                self._waiting[subject] = left
            else:
                self._events.pop(subject, None)
