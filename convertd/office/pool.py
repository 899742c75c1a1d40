"""The pool of warm LibreOffice instances: found, started, handed out one document at a time,
restarted when they crash, recycled, stopped. Several documents convert in parallel, one per
instance.

Recycling never makes a document wait for LibreOffice to start: when an instance has served
its share, a replacement is started beside it (profile written, soffice listening, Writer
primed) while it keeps converting; only then does the replacement take its place, and the old
one is stopped once it has finished its document. One hand-over at a time, and the first
instances' shares are staggered, so the pool never loses two instances' worth of work at once
and holds at most one spare. An instance that passes its share while another hand-over runs
has its own begin the moment that one ends (the one furthest past first), so none serves much
more than its share plus what it converted during one hand-over.

An instance that dies while its spare starts is not started again beside it (two cold starts
at once, and a document waiting for the second): it leaves the queue, its document is retried
on another instance or on the spare, and the spare replaces it as planned. Only if the spare
fails to start does it come back, to start on its next document.

Profiles live as long as their instance: a retired or stopped one's folder is removed, and the
pool's start sweeps what a daemon that did not stop cleanly left (profile.sweep_profiles).
A one-off run (`convertd convert`, recycle_after None) never recycles: a replacement started
just before it exits would be a whole LibreOffice start for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from convertd.metrics import Metrics
from convertd.office.instance import Instance, OfficeCrashed
from convertd.office.profile import find_soffice, find_uno_python, sweep_profiles
from convertd.office.protocol import Reply, Request

logger = logging.getLogger(__name__)

# Recycle an instance after this many documents: LibreOffice's memory only grows.
DEFAULT_RECYCLE_AFTER = 200
NEVER = 2**62  # the share of an instance that is never recycled
# After a replacement failed to start, the old instance serves on; try again after this long.
RETRY_HANDOVER_AFTER = 30.0


class OfficePool:
    def __init__(
        self,
        root: Path,
        size: int,
        recycle_after: int | None = DEFAULT_RECYCLE_AFTER,
        uno_python: str | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.root = root
        self.size = max(1, size)
        # None: never recycled (a one-off run); an instance's share is then out of reach.
        self.recycle_after = max(1, recycle_after) if recycle_after is not None else None
        self.uno_python = uno_python  # the configured interpreter with `uno`, tried first
        self.python: str | None = None
        self.soffice: str | None = None
        self._detected = False
        # Idle instances; one that retired while queued is skipped when taken.
        self._idle: asyncio.Queue[Instance] = asyncio.Queue()
        self._instances: list[Instance] = []
        self._numbers = 0  # instances made so far: each has its own number, profile and pipe
        self._handover: asyncio.Task[None] | None = None  # the one recycle in flight
        self._replacing: Instance | None = None  # the instance that hand-over replaces
        self._withheld = False  # it died meanwhile and left the queue to wait for its spare
        self._retry_at = 0.0
        self._retiring: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.metrics = metrics or Metrics()
        # Read when scraped: how many run, and how many are handed out.
        self.metrics.office_instances.set_function(lambda: sum(i.running for i in self._instances))
        self.metrics.office_busy.set_function(lambda: sum(i.busy for i in self._instances))

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

    def _new_instance(self) -> Instance:
        assert self.python is not None and self.soffice is not None
        instance = Instance(self._numbers, self.root, self.python, self.soffice, self.metrics)
        self._numbers += 1
        instance.recycle_at = self.recycle_after or NEVER
        return instance

    async def start(self) -> None:
        if not self.uno_ready or self._instances:
            return
        await asyncio.to_thread(sweep_profiles, self.root)
        for n in range(self.size):
            instance = self._new_instance()
            # Staggered shares (200, 300 for two): started together, the instances would
            # otherwise all want their hand-over at the same moment.
            if self.recycle_after is not None:
                instance.recycle_at += n * self.recycle_after // self.size
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
        self._stopping = True  # no hand-over begins from here on
        if self._handover is not None:
            self._handover.cancel()
            await asyncio.gather(self._handover, return_exceptions=True)
        await asyncio.gather(*self._retiring, return_exceptions=True)
        await asyncio.gather(*(i.stop() for i in self._instances), return_exceptions=True)
        for instance in self._instances:
            await asyncio.to_thread(shutil.rmtree, instance.profile, True)

    @contextlib.asynccontextmanager
    async def instance(self) -> AsyncIterator[Instance]:
        instance = await self._idle.get()
        while not self._usable(instance):
            instance = await self._idle.get()
        instance.busy = True
        try:
            yield instance
        finally:
            instance.busy = False
            if instance.retiring:
                self._retire(instance)
            elif self._usable(instance):
                self._idle.put_nowait(instance)
                if instance.served >= instance.recycle_at:
                    self._next_handover()

    def _usable(self, instance: Instance) -> bool:
        """Whether an instance goes (back) to work. Not one replaced while it waited in the
        queue (it is being stopped), nor one that died while its spare starts: it leaves the
        queue, and _hand_over decides what becomes of it."""
        if instance is self._replacing and not instance.alive:
            if not self._withheld:  # said once: the tests and an operator see it happened
                logger.info(
                    "office instance %d died during its hand-over; its replacement takes over",
                    instance.number,
                )
            self._withheld = True
            return False
        return not instance.retiring

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

    def _next_handover(self) -> None:
        """Begin the hand-over of the instance furthest past its share, unless one runs already.
        Called when an instance that reached its share is released, and when a hand-over ends
        (an instance that passed its share meanwhile must not wait for its next release: after
        a burst there may be none for a long while)."""
        if (
            self._handover is not None
            or self._stopping
            or asyncio.get_running_loop().time() < self._retry_at
        ):
            return
        due = [
            i for i in self._instances if i.alive and not i.retiring and i.served >= i.recycle_at
        ]
        if not due:
            return
        old = max(due, key=lambda i: i.served - i.recycle_at)
        old.served_when_recycled = old.served
        self._replacing = old
        spare = self._new_instance()
        # Logged when decided, with every instance's count (tests check the overshoot from it).
        logger.info(
            "office instance %d recycled after %s (its share %d): starting instance"
            " %d to take over; served/share %s",
            old.number,
            documents(old.served),
            old.recycle_at,
            spare.number,
            self._shares(),
        )
        self.metrics.office_recycled()  # counted when decided: the hand-over takes a while
        # In a context of its own: its lines belong to no job (the one released here is done).
        self._handover = asyncio.create_task(
            self._hand_over(old, spare),
            name=f"office-handover-{old.number}",
            context=contextvars.Context(),
        )

    def _shares(self) -> str:
        return ", ".join(f"#{i.number} {i.served}/{i.recycle_at}" for i in self._instances)

    async def _hand_over(self, old: Instance, spare: Instance) -> None:
        began = asyncio.get_running_loop().time()
        try:
            await spare.ensure_started()
        except asyncio.CancelledError:
            await spare.kill()
            raise
        except Exception as exc:
            logger.warning("office instance %d: its replacement did not start: %s", old.number, exc)
            await spare.kill()
            self._retry_at = asyncio.get_running_loop().time() + RETRY_HANDOVER_AFTER
            if self._withheld:  # it died meanwhile: back to the queue, to start on next use
                self._idle.put_nowait(old)
            return
        finally:
            self._handover = None
            self._replacing = None
            self._withheld = False
        self._instances[self._instances.index(old)] = spare
        old.retiring = True
        self._idle.put_nowait(spare)
        if not old.busy:  # idle in the queue: stop it now (the queue skips it)
            self._retire(old)
        logger.info(
            "office instance %d took over from instance %d after %.1f s; served/share %s",
            spare.number,
            old.number,
            asyncio.get_running_loop().time() - began,
            self._shares(),
        )
        self._next_handover()

    def _retire(self, old: Instance) -> None:
        task = asyncio.create_task(self._stop_retired(old), name=f"office-retire-{old.number}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _stop_retired(self, old: Instance) -> None:
        await old.stop()
        await asyncio.to_thread(shutil.rmtree, old.profile, True)
        # Its final count: the lines before list only the instances in the pool, and it kept
        # converting after its hand-over began (the took-over line no longer lists it).
        logger.info(
            "office instance %d stopped after %s, %d of them during its hand-over",
            old.number,
            documents(old.served),
            old.served - old.served_when_recycled,
        )

    def office_pids(self) -> list[int]:
        return [i.office_pid for i in self._instances if i.office_pid]


def documents(n: int) -> str:
    return f"{n} document" if n == 1 else f"{n} documents"
