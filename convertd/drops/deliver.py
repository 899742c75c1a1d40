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
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from convertd.drops.openfiles import open_for_writing
from convertd.drops.places import display, fail_file, place_file, publish_copy, unique_path
from convertd.drops.rules import WatchRule
from convertd.errors import DISK_FULL
from convertd.files import DataDir
from convertd.store import drops
from convertd.store.db import Database

logger = logging.getLogger(__name__)

# A drop whose job found the disk full is converted again after this, then twice as long...
DISK_FULL_RETRY_SECONDS = 10.0
# A drop that cannot be delivered (its output folder unwritable) is tried again after this...
STUCK_RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 300.0


class Deliverer:
    def __init__(
        self,
        db: Database,
        data: DataDir,
        rules: list[WatchRule],
        job_queued: Callable[[], None],
    ) -> None:
        self.db = db
        self.data = data
        self.rules = {rule.name: rule for rule in rules}
        self.job_queued = job_queued  # wakes the workers
        self._disk_full: dict[int, tuple[float, int]] = {}  # drop id -> (retry at, failures)
        # drop id -> (retry at, failures, the reason last said)
        self._stuck: dict[int, tuple[float, int, str]] = {}

    async def deliver_ready(self) -> bool:
        """Deliver every drop whose job has ended; True if there may be more. Drops of a rule
        that is no longer configured are left for the admin, and one that cannot be delivered
        (an output folder that cannot be written) waits with back-off: neither blocks the
        others."""
        ready = await drops.ready_to_deliver(self.db, list(self.rules))
        now = time.monotonic()
        progressed = 0
        for drop, status, result_name, error in ready:
            stuck = self._stuck.get(drop.id)
            if stuck is not None and now < stuck[0]:
                continue
            try:
                await self._deliver(drop, status, result_name, error)
            except OSError as exc:
                await self._cannot_deliver(drop, exc)
                continue
            progressed += 1
            if self._stuck.pop(drop.id, None) is not None:
                logger.info("drop %s: delivered after all", drop.display_name)
        return progressed > 0 and len(ready) >= drops.DELIVERY_BATCH

    async def _cannot_deliver(self, drop: drops.Drop, exc: OSError) -> None:
        """Back off, say why once (not at every try), and show it in `convertd drops`."""
        _, failures, said = self._stuck.get(drop.id, (0.0, 0, ""))
        failures += 1
        delay = min(STUCK_RETRY_SECONDS * 2 ** (failures - 1), MAX_RETRY_SECONDS)
        where = f": {display(os.fsencode(exc.filename))}" if exc.filename else ""
        reason = f"cannot deliver it ({exc.strerror or exc}{where}); retrying"
        self._stuck[drop.id] = (time.monotonic() + delay, failures, reason)
        if reason != said:
            logger.warning("drop waiting: %s: %s", drop.display_name, reason)
            await drops.note(self.db, drop.id, reason)

    async def _deliver(
        self, drop: drops.Drop, status: str, result_name: str | None, error: str | None
    ) -> None:
        rule = self.rules[drop.rule]
        assert drop.upload_id is not None and drop.job_id is not None
        moved = self.data.upload_file(drop.upload_path)
        original = moved if await asyncio.to_thread(moved.exists) else None
        if original is not None and drop.status == "queued" and await self._changed(drop, original):
            return
        if status == "failed" and error == DISK_FULL:
            await self._retry_later(drop)
            return
        self._disk_full.pop(drop.id, None)
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
                )
            await drops.close(self.db, drop.id, "failed", reason)
            logger.info("drop failed: %s: %s (job %s)", drop.display_name, reason, drop.job_id)
            return
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
        logger.info("drop finished: %s -> %s", drop.display_name, target)

    async def _retry_later(self, drop: drops.Drop) -> None:
        now = time.monotonic()
        retry_at, failures = self._disk_full.get(drop.id, (0.0, 0))
        if retry_at == 0.0:
            failures += 1
            delay = min(DISK_FULL_RETRY_SECONDS * 2 ** (failures - 1), MAX_RETRY_SECONDS)
            self._disk_full[drop.id] = (now + delay, failures)
            logger.warning(
                "drop waiting: %s: the disk was full; converting it again in %.0f s",
                drop.display_name,
                delay,
            )
            return
        if now < retry_at:
            return
        self._disk_full[drop.id] = (0.0, failures)
        job_id = await drops.convert_again(self.db, drop.id, drop.size, drop.mtime_ns)
        logger.info(
            "drop %s: converting it again after a full disk: job %s", drop.display_name, job_id
        )
        self.job_queued()

    async def _changed(self, drop: drops.Drop, original: Path) -> bool:
        """True if the original is not what was converted: then it is converted again (or,
        while a program still writes to it, left until the next look)."""
        st = await asyncio.to_thread(original.stat)
        if (st.st_size, st.st_mtime_ns) == (drop.size, drop.mtime_ns):
            return False
        if (st.st_dev, st.st_ino) in await asyncio.to_thread(open_for_writing):
            logger.info("drop waiting: %s is still being written to", drop.display_name)
            return True
        job_id = await drops.convert_again(self.db, drop.id, st.st_size, st.st_mtime_ns)
        logger.info(
            "drop changed after it was taken: %s (%d -> %d bytes); converting it again: job %s",
            drop.display_name,
            drop.size,
            st.st_size,
            job_id,
        )
        self.job_queued()
        return True


def _file_original(rule: WatchRule, drop: drops.Drop, original: Path) -> None:
    if rule.originals == "delete":
        original.unlink(missing_ok=True)
    elif rule.originals == "keep":
        original.unlink(missing_ok=True)  # a copy: the original never left its folder
    else:
        place_file(original, rule.processed_dir(drop.output_format), drop.original_name, move=True)
    shutil.rmtree(original.parent, ignore_errors=True)
