"""Repair at start: finish or undo the claims a crash interrupted (see take.py)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from convertd import logs
from convertd.converters.registry import CannotInfer, Registry
from convertd.drops import batch_moves
from convertd.drops.places import fail_file
from convertd.drops.rules import WatchRule
from convertd.drops.take import batch_conversion, conversion_for
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
            queued += await _repair_batch(db, data, rule, drop, moved)
            continue
        if await asyncio.to_thread(source.exists):
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
        logger.info(
            "drop repaired: %s -> job %s", drop.display_name, job_id, extra=logs.job(job_id)
        )
    return queued


async def _repair_batch(
    db: Database, data: DataDir, rule: WatchRule | None, drop: drops.Drop, folder: Path
) -> int:
    """A batch claimed when the daemon stopped: its move finished from its manifest, then
    queued (or, if its rule no longer merges, sent to failed/ whole). How many jobs queued."""
    if not await asyncio.to_thread(batch_moves.finish, folder):
        await asyncio.to_thread(data.remove_upload, drop.upload_path)
        await drops.forget(db, drop.id)
        return 0
    if rule is None:
        return 0  # left for the admin, as any drop of a rule no longer configured
    if not rule.merge:
        reason = f"the rule {rule.name} no longer merges batches"
        await asyncio.to_thread(batch_moves.settled_in, folder)
        await asyncio.to_thread(
            fail_file,
            rule,
            folder,
            drop.output_format,
            drop.original_name,
            reason,
            None,
            Path(os.fsdecode(drop.source_path)).parent,
        )
        await drops.close(db, drop.id, "failed", reason)
        return 0
    job_id = await drops.queue(db, drop.id, folder.name, "", batch_conversion(rule))
    await asyncio.to_thread(batch_moves.settled_in, folder)
    logger.info(
        "drop batch repaired: %s -> job %s", drop.display_name, job_id, extra=logs.job(job_id)
    )
    return 1
