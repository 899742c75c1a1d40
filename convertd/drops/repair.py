"""Repair at start: finish or undo the claims a crash interrupted (see take.py)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from convertd.converters.registry import CannotInfer, Registry
from convertd.drops.rules import WatchRule
from convertd.drops.take import conversion_for
from convertd.files import DataDir, extension_of
from convertd.store import drops
from convertd.store.db import Database

logger = logging.getLogger(__name__)


async def repair_claims(
    db: Database, data: DataDir, registry: Registry, rules: list[WatchRule]
) -> int:
    """Claims still 'claiming': forgotten if the file never left its folder (the next scan
    takes it again), queued if it reached the upload area, failed if it vanished. Returns how
    many jobs were queued."""
    by_name = {rule.name: rule for rule in rules}
    queued = 0
    for drop in await drops.by_status(db, "claiming"):
        source = Path(os.fsdecode(drop.source_path))
        rule = by_name.get(drop.rule)
        if rule is not None and rule.originals == "keep":
            # Only a copy was being made: drop it; the next scan takes the original again.
            await asyncio.to_thread(data.remove_upload, drop.upload_path)
            await drops.forget(db, drop.id)
            continue
        moved = data.upload_file(drop.upload_path)
        if await asyncio.to_thread(moved.is_dir):
            # A batch: what reached its folder is the batch; what did not stays for the next.
            if not await asyncio.to_thread(any, moved.iterdir()):
                await asyncio.to_thread(data.remove_upload, drop.upload_path)
                await drops.forget(db, drop.id)
                continue
        elif await asyncio.to_thread(source.exists):
            await drops.forget(db, drop.id)
            continue
        if not await asyncio.to_thread(moved.exists):
            await drops.close(db, drop.id, "failed", "the file vanished while it was being taken")
            continue
        if rule is None:
            continue
        try:
            conversion = await asyncio.to_thread(
                conversion_for, registry, rule, moved, drop.output_format
            )
        except CannotInfer as exc:
            await drops.close(db, drop.id, "failed", str(exc))
            continue
        job_id = await drops.queue(db, drop.id, moved.name, extension_of(moved.name), conversion)
        queued += 1
        logger.info("drop repaired: %s -> job %s", drop.display_name, job_id)
    return queued
