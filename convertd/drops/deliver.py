"""Delivering: once a drop's job has ended, its result goes to the output folder (under a name
chosen and recorded before writing, so a crash never doubles it) and its original to processed/
(or is deleted, or put back), or, if the job failed, the original goes to failed/ with a report.

Never from a file that changed after it was taken: a writer that kept the file open (a scanner,
an SMB or NFS client) may have gone on writing into it. If the original is not what was
converted, it is converted again once no one has it open for writing. A job that failed because
the disk was full is not the file's fault: the file stays, and is converted again later, ever
later while the disk stays full.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from convertd import logs
from convertd.drops import batch_moves
from convertd.drops.openfiles import open_for_writing
from convertd.drops.places import (
    display,
    fail_file,
    place_file,
    place_folder,
    publish_copy,
    unique_path,
)
from convertd.drops.rules import WatchRule
from convertd.errors import DISK_FULL
from convertd.files import DataDir
from convertd.metrics import Metrics
from convertd.periodic import backoff
from convertd.store import drops
from convertd.store.db import Database

logger = logging.getLogger(__name__)


def _about(drop: drops.Drop) -> dict[str, str] | None:
    """`extra=` naming the drop's job (journalctl JOB_ID= finds the drop's lines too)."""
    return logs.job(drop.job_id) if drop.job_id else None


# A drop whose job found the disk full is converted again after this, then twice as long...
DISK_FULL_RETRY_SECONDS = 10.0
DISK_FULL_WAIT = "the disk was full; converting it again later"
# A drop that cannot be delivered (its output folder unwritable) is tried again after this...
STUCK_RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 300.0


Outcome = Literal["ended", "again", "waiting"]


@dataclasses.dataclass(frozen=True)
class _Wait:
    until: float  # monotonic time when it is tried again
    failures: int  # in a row
    reason: str  # what was last said (logged and shown once per change)
    job_id: str | None  # the job whose end it waits on


class Deliverer:
    def __init__(
        self,
        db: Database,
        data: DataDir,
        rules: list[WatchRule],
        job_queued: Callable[[], None],
        metrics: Metrics | None = None,
    ) -> None:
        self.db = db
        self.data = data
        self.rules = {rule.name: rule for rule in rules}
        self.job_queued = job_queued  # wakes the workers
        self.metrics = metrics or Metrics()
        self._waits: dict[int, _Wait] = {}  # drop id -> why it waits, and until when

    async def deliver_ready(self) -> bool:
        """Deliver every drop whose job has ended; True if there may be more. Drops of a rule
        that is no longer configured are left for the admin, and one that cannot be delivered
        (an output folder that cannot be written) waits with back-off: neither blocks the
        others."""
        ready = await drops.ready_to_deliver(self.db, list(self.rules))
        now = time.monotonic()
        progressed = 0
        for drop, status, result_name, error in ready:
            wait = self._waits.get(drop.id)
            if wait is not None and now < wait.until:
                continue
            try:
                outcome = await self._deliver(drop, status, result_name, error, wait)
            except OSError as exc:
                where = f": {display(os.fsencode(exc.filename))}" if exc.filename else ""
                reason = f"cannot deliver it ({exc.strerror or exc}{where}); retrying"
                await self._hold(drop, STUCK_RETRY_SECONDS, reason)
                continue
            if outcome == "waiting":
                continue
            progressed += 1
            if outcome == "ended" and self._waits.pop(drop.id, None) is not None:
                logger.info("drop %s: delivered after all", drop.display_name, extra=_about(drop))
        return progressed > 0 and len(ready) >= drops.DELIVERY_BATCH

    async def _hold(self, drop: drops.Drop, first_wait: float, reason: str) -> None:
        """One more failure of a drop that must wait for something outside it: back off, say
        why once (not at every try), and show it in `convertd drops`."""
        old = self._waits.get(drop.id)
        failures = (old.failures if old else 0) + 1
        until = time.monotonic() + backoff(first_wait, failures, MAX_RETRY_SECONDS)
        self._waits[drop.id] = _Wait(until, failures, reason, drop.job_id)
        if old is None or old.reason != reason:
            logger.warning("drop waiting: %s: %s", drop.display_name, reason, extra=_about(drop))
            await drops.note(self.db, drop.id, reason)

    async def _deliver(
        self,
        drop: drops.Drop,
        status: str,
        result_name: str | None,
        error: str | None,
        wait: _Wait | None,
    ) -> Outcome:
        """Deliver one drop (or file it as failed): "ended"; or "again" if it is being
        converted again, or "waiting" if it must wait."""
        rule = self.rules[drop.rule]
        assert drop.upload_id is not None and drop.job_id is not None
        moved = self.data.upload_file(drop.upload_path)
        original = moved if await asyncio.to_thread(moved.exists) else None
        batch = original is not None and await asyncio.to_thread(original.is_dir)
        if batch:
            assert original is not None
            await asyncio.to_thread(batch_moves.settled_in, original)
        if original is not None and drop.status == "queued" and not batch:
            changed = await self._changed(drop, original)
            if changed != "same":
                return changed
        if status == "failed" and error == DISK_FULL:
            if wait is not None and wait.reason == DISK_FULL_WAIT and wait.job_id == drop.job_id:
                await self._convert_again(drop, drop.size, drop.mtime_ns, "after a full disk")
                return "again"
            # This job's failure has not been waited out yet.
            await self._hold(drop, DISK_FULL_RETRY_SECONDS, DISK_FULL_WAIT)
            return "waiting"
        if status == "failed":
            reason = error or "the conversion failed"
            if original is not None:
                await asyncio.to_thread(
                    fail_file,
                    rule,
                    original,
                    drop.output_format,
                    drop.original_name,
                    reason,
                    drop.job_id,
                    Path(os.fsdecode(drop.source_path)).parent,
                )
            await drops.close(self.db, drop.id, "failed", reason)
            self.metrics.drop_ended("failed")
            logger.info(
                "drop failed: %s: %s (job %s)",
                drop.display_name,
                reason,
                drop.job_id,
                extra=_about(drop),
            )
            return "ended"
        assert result_name is not None
        result = self.data.result_file(drop.job_id, result_name)
        target = Path(os.fsdecode(drop.output_path)) if drop.output_path else None
        if target is None:
            target = await asyncio.to_thread(unique_path, rule.output, result_name)
            await drops.set_output(self.db, drop.id, os.fsencode(target))
        # Chosen and recorded before writing: after a crash here, the same name is reused.
        if not target.exists():
            await asyncio.to_thread(publish_copy, result, target)
        if original is not None:
            await asyncio.to_thread(_file_original, rule, drop, original)
        await drops.close(self.db, drop.id, "done")
        self.metrics.drop_ended("done")
        logger.info("drop finished: %s -> %s", drop.display_name, target, extra=_about(drop))
        return "ended"

    async def _convert_again(self, drop: drops.Drop, size: int, mtime_ns: int, why: str) -> None:
        job_id = await drops.convert_again(self.db, drop.id, size, mtime_ns)
        logger.info(
            "drop %s: converting it again %s: job %s",
            drop.display_name,
            why,
            job_id,
            extra=logs.job(job_id),
        )
        self.job_queued()

    async def _changed(self, drop: drops.Drop, original: Path) -> Outcome | Literal["same"]:
        """ "same" if the original is what was converted; else it is converted again ("again")
        or, while a program still writes to it, left until the next look ("waiting")."""
        st = await asyncio.to_thread(original.stat)
        if (st.st_size, st.st_mtime_ns) == (drop.size, drop.mtime_ns):
            return "same"
        if (st.st_dev, st.st_ino) in await asyncio.to_thread(open_for_writing):
            logger.info(
                "drop waiting: %s is still being written to", drop.display_name, extra=_about(drop)
            )
            return "waiting"
        why = f"after it changed ({drop.size} -> {st.st_size} bytes)"
        await self._convert_again(drop, st.st_size, st.st_mtime_ns, why)
        return "again"


def _file_original(rule: WatchRule, drop: drops.Drop, original: Path) -> None:
    if rule.originals == "delete" and original.is_dir():  # a batch
        shutil.rmtree(original)
    elif rule.originals == "delete":
        original.unlink(missing_ok=True)
    elif rule.originals == "keep":
        original.unlink(missing_ok=True)  # a copy: the original never left its folder
    elif original.is_dir():  # a batch
        place_folder(original, rule.processed_dir(drop.output_format), drop.original_name)
    else:
        place_file(original, rule.processed_dir(drop.output_format), drop.original_name, move=True)
    shutil.rmtree(original.parent, ignore_errors=True)
