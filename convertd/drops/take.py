"""Taking a settled file: work out what it becomes, then claim it crash-safely and queue its job.

The drop row is written first, naming where the file is going; then the file is renamed out of
the watched folder into the upload area and checked unchanged; then its upload and job are
recorded in one transaction. A crash between any two steps is repaired at the next start
(repair.py). A file that can never convert goes straight to failed/ with its report; a
temporary problem (a missing tool, a full disk) leaves it where it is, with back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath

from convertd import logs
from convertd.converters.base import canonical_format
from convertd.converters.registry import CannotInfer, Registry
from convertd.drops import batch_moves
from convertd.drops.batches import group_of
from convertd.drops.places import display, fail_file
from convertd.drops.rules import PIPELINE, RuleError, WatchRule
from convertd.drops.waiting import Candidate, Waiting
from convertd.files import DataDir, extension_of, safe_filename
from convertd.metrics import Metrics
from convertd.store import drops
from convertd.store.db import Database
from convertd.store.jobs import Conversion

logger = logging.getLogger(__name__)


class _Changed(Exception):
    """The file changed while it was being taken."""


class Taker:
    def __init__(
        self,
        db: Database,
        data: DataDir,
        registry: Registry,
        waiting: Waiting,
        job_queued: Callable[[], None],
        metrics: Metrics | None = None,
        fresh: Callable[[WatchRule], Awaitable[WatchRule]] | None = None,
    ) -> None:
        self.db = db
        self.data = data
        self.registry = registry
        self.waiting = waiting
        self.job_queued = job_queued  # wakes the workers
        self.metrics = metrics or Metrics()
        # A rule naming a preset, with the preset as it is now (drops/checks.py's Fresh).
        self.fresh = fresh

    async def take(self, cand: Candidate) -> None:
        path = cand.path
        try:
            rule = await self.fresh(cand.rule) if self.fresh else cand.rule
        except RuleError as exc:
            name = safe_filename(display(os.fsencode(path.name)))
            fmt = cand.rule.output_format or "unknown"
            found = drops.Found(
                cand.rule.name, os.fsencode(path), name, fmt, cand.size, cand.mtime_ns
            )
            await self._reject(cand, found, str(exc))
            return
        relative = PurePosixPath(path.relative_to(rule.folder).as_posix())
        fmt = canonical_format(rule.format_for(relative) or "")
        name = safe_filename(display(os.fsencode(path.name)))
        found = drops.Found(
            rule.name, os.fsencode(path), name, fmt or "unknown", cand.size, cand.mtime_ns
        )
        try:
            conversion = await asyncio.to_thread(conversion_for, self.registry, rule, path, fmt)
        except CannotInfer as exc:
            await self._reject(cand, found, str(exc))
            return
        filetype = conversion.filetype
        if filetype != PIPELINE and self.registry.get(filetype) is None:
            # A tool is missing: temporary, the file stays.
            self.waiting.back_off(
                cand, f"the {filetype} converter is not available here (see `convertd doctor`)"
            )
            return
        file_path, dest = await asyncio.to_thread(self.data.new_upload_path, name)
        # The row first, naming where the file is going: a crash after the move is repairable.
        drop_id = await drops.begin_claim(self.db, found, file_path)
        try:
            take_in = _copy_in if rule.originals == "keep" else _move_in
            await asyncio.to_thread(take_in, path, dest, cand)
        except FileNotFoundError:
            await drops.forget(self.db, drop_id)
            self.waiting.candidates.pop(path, None)
            return
        except _Changed:
            await drops.forget(self.db, drop_id)
            cand.stable_since, cand.checks = time.monotonic(), 1
            return
        except OSError as exc:
            await drops.forget(self.db, drop_id)
            self.waiting.back_off(cand, f"could not take it: {exc.strerror}")
            return
        self.waiting.taken(path)
        job_id = await drops.queue(self.db, drop_id, name, extension_of(name), conversion)
        logger.info(
            "drop taken: %s (rule %s) -> job %s",
            display(path),
            rule.name,
            job_id,
            extra=logs.job(job_id),
        )
        self.job_queued()

    async def take_batch(self, batch: list[Candidate]) -> None:
        """A batch's files (drops/batches.py) as one drop and one job: claimed first, then
        moved into one folder of the upload area, all or none (batch_moves.py), then queued.
        After a crash, repair.py finishes the move and queues it."""
        try:
            rule = await self.fresh(batch[0].rule) if self.fresh else batch[0].rule
        except RuleError as exc:
            for cand in batch:  # left where they are until the rule's preset is fixed
                self.waiting.back_off(cand, str(exc))
            return
        group = group_of(batch[0])
        stamp = time.strftime("%Y-%m-%d-%H%M%S", time.localtime())
        name = safe_filename(display(os.fsencode(group))) if group else f"batch-{stamp}"
        base = rule.folder / group if group else rule.folder
        found = drops.Found(
            rule.name,
            os.fsencode(rule.folder / (group or name)),
            name,
            rule.output_format or PIPELINE,
            sum(c.size for c in batch),
            max(c.mtime_ns for c in batch),
        )
        try:
            file_path, folder = await asyncio.to_thread(self.data.new_upload_path, name)
        except OSError as exc:
            for cand in batch:
                self.waiting.back_off(cand, f"could not take the batch: {exc.strerror}")
            return
        drop_id = await drops.begin_claim(self.db, found, file_path)
        try:
            await asyncio.to_thread(batch_moves.move_in, batch, folder, base)
        except batch_moves.NotTaken as exc:
            await asyncio.to_thread(self.data.remove_upload, file_path)
            await drops.forget(self.db, drop_id)
            for cand in batch:
                self.waiting.back_off(cand, f"the batch was not taken ({exc})")
            return
        if group:  # the folder moved in goes too, once empty
            await asyncio.to_thread(_remove_empty, base)
        for cand in batch:
            self.waiting.taken(cand.path)
        job_id = await drops.queue(self.db, drop_id, name, "", batch_conversion(rule))
        await asyncio.to_thread(batch_moves.settled_in, folder)
        logger.info(
            "drop batch taken: %d files as %s (rule %s) -> job %s",
            len(batch),
            name,
            rule.name,
            job_id,
            extra=logs.job(job_id),
        )
        self.job_queued()

    async def _reject(self, cand: Candidate, found: drops.Found, reason: str) -> None:
        """A file that can never convert: straight to failed/ (under its own name), with its
        report."""
        self.waiting.candidates.pop(cand.path, None)
        fmt = found.output_format
        try:
            await asyncio.to_thread(
                fail_file,
                cand.rule,
                cand.path,
                fmt,
                cand.path.name,
                reason,
                None,
                cand.path.parent,
            )
        except OSError as exc:
            self.waiting.skip(
                cand.rule,
                display(cand.path),
                f"{reason}; and it could not be moved to failed/: {exc.strerror}",
            )
            return
        await drops.record_refused(self.db, found, reason)
        self.metrics.drop_ended("failed")
        logger.info("drop failed: %s: %s", display(cand.path), reason)


def conversion_for(registry: Registry, rule: WatchRule, path: Path, fmt: str) -> Conversion:
    """Blocking (it may read the file's first bytes): what a rule makes of a file. CannotInfer
    if nothing turns it into the rule's format. A pipeline's steps say what they make when they
    run; a step that cannot take the file fails the job, and the file goes to failed/ with that
    step's reason."""
    if rule.steps:
        input_format = extension_of(path.name) or "bin"
        return Conversion(PIPELINE, input_format, fmt, {"steps": list(rule.steps)})
    filetype, input_format = registry.infer(path, fmt, rule.filetype)
    # The rule's options were normalised when it was built; the inbox has none.
    return Conversion(filetype, input_format, fmt, rule.options)


def batch_conversion(rule: WatchRule) -> Conversion:
    """What a merge rule makes of a batch: its steps (a merge first), on the batch's files."""
    return Conversion(
        PIPELINE, "batch", rule.output_format or PIPELINE, {"steps": list(rule.steps)}
    )


def _remove_empty(folder: Path) -> None:
    """Blocking: remove `folder` and the folders in it, where they are empty."""
    for directory, _, _ in sorted(os.walk(folder), key=lambda w: -len(w[0])):
        with contextlib.suppress(OSError):
            os.rmdir(directory)


def _copy_in(path: Path, dest: Path, cand: Candidate) -> None:
    """For `originals = "keep"`: the original never leaves its folder (sync tools watching it
    would see a delete); a copy, with its times, is what converts."""
    try:
        shutil.copy2(path, dest)
        st = os.stat(path)
    except OSError:
        shutil.rmtree(dest.parent, ignore_errors=True)
        raise
    if (st.st_size, st.st_mtime_ns) != (cand.size, cand.mtime_ns):
        shutil.rmtree(dest.parent, ignore_errors=True)
        raise _Changed()


def _move_in(path: Path, dest: Path, cand: Candidate) -> None:
    """Move the file out of the inbox into its own folder of the upload area, and check it did
    not change; on any failure, that folder goes."""
    try:
        _move(path, dest, cand)
    except BaseException:
        shutil.rmtree(dest.parent, ignore_errors=True)
        raise


def _move(path: Path, dest: Path, cand: Candidate) -> None:
    """Move the file to `dest` and check it did not change; on failure nothing is left at
    `dest` and the file is where it was."""
    try:
        os.rename(path, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        try:  # another filesystem: copy, check, then remove
            shutil.copyfile(path, dest)
            st = os.stat(path)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        if (st.st_size, st.st_mtime_ns) != (cand.size, cand.mtime_ns):
            dest.unlink(missing_ok=True)
            raise _Changed() from None
        os.unlink(path)
    if dest.stat().st_size != cand.size:
        # Changed between the last check and the rename: give it back and wait again.
        os.rename(dest, path)
        raise _Changed()
