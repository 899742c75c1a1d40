"""Drop folders: files dropped into watched folders become jobs in the same queue.

The folder is the inbox, SQLite is the truth, and watchfiles is only a doorbell. The stages,
each in its own module and each run by a `Periodic`:

    find.py     scans (at start, every drop_scan_seconds, after events) -> candidates
    settle.py   candidates whose size and mtime stood still -> ready
    take.py     ready files claimed crash-safely -> queued jobs
    deliver.py  ended jobs -> results in the output folder, originals to processed/ or failed/
    repair.py   at start: claims a crash interrupted, finished or undone

Delivery runs when the worker pool says a drop's job ended (with several nodes, also when another
node announces a change: the job may have run there), and otherwise only now and then as a
safety net: an idle daemon does not query for deliveries several times a second.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable

from convertd.config import Config
from convertd.converters.registry import Registry
from convertd.drops.batches import split_batches
from convertd.drops.deliver import Deliverer
from convertd.drops.find import Finder
from convertd.drops.repair import repair_claims
from convertd.drops.rules import WatchRule
from convertd.drops.settle import settled
from convertd.drops.take import Taker
from convertd.drops.waiting import Waiting
from convertd.files import DataDir
from convertd.metrics import Metrics
from convertd.periodic import Periodic
from convertd.store.db import Database
from convertd.store.jobs import Job

logger = logging.getLogger(__name__)

# A watcher that ended (its folder deleted, an error) starts again after this long; one that
# keeps failing (say, past the inotify watch limit), after ever longer, up to the maximum.
WATCH_RESTART_SECONDS = 1.0
WATCH_MAX_BACKOFF_SECONDS = 30.0
# How often deliveries are looked for without being told a drop's job ended.
DELIVERY_SAFETY_NET_SECONDS = 10.0


class DropWatcher:
    def __init__(
        self,
        config: Config,
        db: Database,
        data: DataDir,
        registry: Registry,
        rules: list[WatchRule],
        job_queued: Callable[[], None],
        metrics: Metrics | None = None,
        fresh: Callable[[WatchRule], Awaitable[WatchRule]] | None = None,
        waiting: Waiting | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.data = data
        self.registry = registry
        self.rules = rules  # from build_rules, checked at start-up
        self.job_queued = job_queued
        self.waiting = waiting or Waiting()
        metrics = metrics or Metrics()
        metrics.drop_files_waiting.set_function(lambda: len(self.waiting.candidates))
        metrics.drop_files_skipped.set_function(lambda: len(self.waiting.skipped))
        self.finder = Finder(db, rules, self.waiting, data.drops_status)
        self.taker = Taker(db, data, registry, self.waiting, job_queued, metrics, fresh)
        self.deliverer = Deliverer(db, data, rules, job_queued, metrics)
        self._repaired = False
        self._stop = asyncio.Event()
        settle_every = max(0.05, min(config.drop_settle_seconds / 2, 0.5))
        self._scanner = Periodic("drop-scanner", self._scan, config.drop_scan_seconds, debounce=0.1)
        self._settler = Periodic("drop-settler", self._settle, settle_every, run_at_start=False)
        self._delivery = Periodic(
            "drop-delivery", self.deliverer.deliver_ready, DELIVERY_SAFETY_NET_SECONDS
        )
        self._watchers = [
            Periodic(
                f"watch-{rule.name}",
                functools.partial(self.finder.watch, rule, self._scanner.poke, self._stop),
                WATCH_RESTART_SECONDS,
                max_backoff=WATCH_MAX_BACKOFF_SECONDS,
            )
            for rule in rules
            if config.drop_events or rule.polling
        ]

    def start(self) -> None:
        default = self.rules[0]
        for path in (default.folder, default.output, default.processed, default.failed):
            path.mkdir(parents=True, exist_ok=True)
        for periodic in (*self._watchers, self._scanner, self._settler, self._delivery):
            periodic.start()
        names = ", ".join(f"{r.name} ({r.folder})" for r in self.rules)
        logger.info("watching drop folders: %s", names)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(
            *(p.stop() for p in (*self._watchers, self._scanner, self._settler, self._delivery))
        )

    def job_ended(self, job: Job) -> None:
        """The worker pool's word that a job ended: deliver at once if it was a drop's."""
        if job.source == "drop":
            self._delivery.poke()

    def deliver_soon(self) -> None:
        """Look for deliveries now: a job may have ended on another node (cluster/relay.py)."""
        self._delivery.poke()

    async def _scan(self) -> None:
        if not self._repaired:
            if await repair_claims(self.db, self.data, self.registry, self.rules):
                self.job_queued()
            self._repaired = True
        await self.finder.scan_all()

    async def _settle(self) -> float | None:
        """Take what has settled; returns when the next candidate is due for its check."""
        ready, next_due = await settled(
            self.waiting, self.config.drop_settle_seconds, self.config.drop_max_wait_seconds
        )
        singles, batches, batch_due = split_batches(self.waiting, ready)
        for cand in singles:
            await self.taker.take(cand)
        for batch in batches:
            await self.taker.take_batch(batch)
        if batch_due is not None:
            next_due = batch_due if next_due is None else min(next_due, batch_due)
        if ready:  # `convertd drops` shows what is waiting now, not at the last scan
            await asyncio.to_thread(self.waiting.write_status, self.data.drops_status)
        return next_due
