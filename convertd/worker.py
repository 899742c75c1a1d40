"""The in-process worker pool: claim a job, run its converter (converters.run), record the end.

Each worker is a `Periodic` that claims jobs while there are any and otherwise waits for
`notify()` or its poll interval. Stopping: the pool stops claiming, lets running jobs finish
within the grace period, then cancels the rest and puts them back in the queue for the next
start. Whoever needs to hear that a job ended (drop-folder delivery) subscribes with
`on_job_end`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import secrets
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from convertd import logs, memory
from convertd.browser.chromium import Chromium
from convertd.config import Config
from convertd.converters.registry import Registry
from convertd.converters.run import Output, Runner
from convertd.errors import DISK_FULL, ConversionError, is_disk_full
from convertd.files import DataDir
from convertd.metrics import Metrics
from convertd.periodic import Periodic
from convertd.store import jobs, uploads
from convertd.store.db import DATABASE_ERRORS, Database, patiently
from convertd.tasks.pipeline import PIPELINE, after_steps, run_pipeline

logger = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 1.0
TAKEN_OVER = "The job was given to another node"  # never recorded: the job is no longer ours

JobEndListener = Callable[[jobs.Job], None]
# A job still running this long after its time limit is wedged (a thread that cannot be
# stopped, a hang the limit did not catch): /health says so.
WEDGED_AFTER_SECONDS = 60.0
# A job that fails with less than this free where it worked failed for want of space.
NEARLY_FULL_BYTES = 1024**2


def disk_full_under(work: Path, exc: BaseException) -> bool:
    if is_disk_full(exc):
        return True
    try:
        return shutil.disk_usage(work).free < NEARLY_FULL_BYTES
    except OSError:
        return False


class WorkerPool:
    def __init__(
        self,
        config: Config,
        db: Database,
        registry: Registry,
        data: DataDir,
        runner: Runner,
        chromium: Chromium | None = None,
        metrics: Metrics | None = None,
        node: str | None = None,
    ) -> None:
        self.config = config
        # This process's row in the nodes table (cluster/node.py): its workers' jobs are its.
        self.node = node
        self.db = db
        self.registry = registry
        self.data = data
        self.runner = runner
        self.chromium = chromium  # for a pipeline's capture-website step
        self.metrics = metrics or Metrics()
        self._instance = secrets.token_hex(4)
        self._stopping = False
        self._workers: list[Periodic] = []
        self._running: dict[str, asyncio.Task[str]] = {}
        self._owners: dict[str, str] = {}  # job id -> the worker of ours holding it
        self._wedged_at: dict[str, float] = {}  # job id -> loop time past which it is wedged
        self._listeners: list[JobEndListener] = []
        self._watchers: list[JobEndListener] = []
        self._reclaimer = memory.reclaimer()
        self._cancelled: set[str] = set()
        # Jobs whose end is being recorded here: nothing is left to stop, and the database may
        # show that end before this worker hears its write was done (_stop_cancelled).
        self._ending: set[str] = set()
        self._cancellations = Periodic("job-cancellations", self._stop_cancelled, 1.0)

    def start(self) -> None:
        for n in range(self.config.workers):
            owner = f"{self.node or 'worker-' + self._instance}/{n}"
            work = functools.partial(self._one, owner)
            self._workers.append(Periodic(owner, work, IDLE_POLL_SECONDS).start())
        self._cancellations.start()
        logger.info("worker pool started with %s", logs.counted(self.config.workers, "worker"))

    def notify(self) -> None:
        """A job was queued: wake the idle workers now instead of at their next poll."""
        for worker in self._workers:
            worker.poke()

    def stop_cancelled_soon(self) -> None:
        """Running jobs were just cancelled in this process (a /v2 task or job cancelled or
        deleted): stop them now, not at the next once-a-second look."""
        self._cancellations.poke()

    def on_job_change(self, watcher: JobEndListener) -> None:
        """Call `watcher(job)` when a job starts, reports progress, and ends (event streams)."""
        self._watchers.append(watcher)

    def _changed(self, job: jobs.Job) -> None:
        for watcher in self._watchers:
            watcher(job)

    def on_job_end(self, listener: JobEndListener) -> None:
        """Call `listener(job)` (with the job as it was claimed) whenever a job ends here."""
        self._listeners.append(listener)

    async def stop(self) -> None:
        self._stopping = True
        running = list(self._running.values())
        if running:
            logger.info(
                "waiting up to %.0f s for %d running job(s)",
                self.config.shutdown_grace_seconds,
                len(running),
            )
            await asyncio.wait(running, timeout=self.config.shutdown_grace_seconds)
        await self._cancellations.stop()
        await asyncio.gather(*(worker.stop() for worker in self._workers))
        self._workers.clear()
        self._reclaimer.close()

    async def _one(self, owner: str) -> bool:
        """Claim one job and run it to its end; False when there was none to claim."""
        if self._stopping:
            return False
        claim = asyncio.ensure_future(jobs.claim_with_input(self.db, owner, self.node))
        try:
            claimed = await asyncio.shield(claim)
        except asyncio.CancelledError:
            # Stopped mid-claim: the claim still commits on the database thread. Whatever it
            # took goes back to the queue now, rather than waiting for the next start.
            taken = await claim
            if taken is not None:
                await jobs.requeue(self.db, taken[0].id, owner)
            raise
        if claimed is None:
            return False
        job, upload = claimed
        self._changed(job)
        started = time.monotonic()
        # The job runs in its own task so that stop() can wait for it while cancelling workers.
        run = asyncio.create_task(self._run(job, upload, owner), name=f"job-{job.id}")
        self._running[job.id] = run
        self._owners[job.id] = owner
        limit = min(job.timeout_seconds or math.inf, self.config.job_timeout_seconds)
        self._wedged_at[job.id] = asyncio.get_running_loop().time() + limit + WEDGED_AFTER_SECONDS
        try:
            state = await asyncio.shield(run)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if job.id in self._cancelled and not (current and current.cancelling()):
                # The job was cancelled (_stop_cancelled), not this worker: by whoever
                # cancelled it in the database, perhaps another process (a key revoked by the
                # CLI), so its end is announced here too (waits, streams, the task engine).
                self._count(job, "cancelled", started)
                self._ended(job)
                return True
            if not run.done():
                run.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await run
                await jobs.requeue(self.db, job.id, owner)
            raise
        finally:
            self._running.pop(job.id, None)
            self._owners.pop(job.id, None)
            self._wedged_at.pop(job.id, None)
            self._cancelled.discard(job.id)
            self._ending.discard(job.id)
        self._count(job, state, started)
        return True

    def health(self) -> tuple[bool, str]:
        """Whether every worker's loop is running and no job has outlived its time limit by
        WEDGED_AFTER_SECONDS; and a line saying so."""
        dead = sum(not worker.alive for worker in self._workers)
        now = asyncio.get_running_loop().time()
        wedged = sorted(job_id for job_id, at in self._wedged_at.items() if now > at)
        problems = []
        if dead:
            problems.append(f"{dead} of {len(self._workers)} workers stopped")
        if wedged:
            problems.append(
                f"job(s) {', '.join(wedged[:5])} still running {WEDGED_AFTER_SECONDS:.0f} s "
                "past their time limit"
            )
        if problems:
            return False, "; ".join(problems)
        if not self._workers:
            return True, "no workers (workers = 0: the queue only)"
        return True, f"{len(self._workers)} worker(s) running, {len(self._running)} busy"

    def _count(self, job: jobs.Job, state: str, started: float) -> None:
        self.metrics.job_ended(job.filetype, job.output_format, state, time.monotonic() - started)

    def count_cancelled(self, queued: list[tuple[str, str]]) -> None:
        """Jobs cancelled before a worker took them (by filetype, output format): counted as
        cancelled, with no duration."""
        for filetype, output_format in queued:
            self.metrics.job_ended(filetype, output_format, "cancelled", None)

    async def _stop_cancelled(self) -> None:
        """Stop the running jobs the database says are no longer running here (cancelled from
        outside): their task is cancelled, which kills their tools' process groups."""
        if not self._running:
            return
        held = {job_id: self._owners[job_id] for job_id in self._running if job_id in self._owners}
        for job_id, why in (await jobs.no_longer_running(self.db, held)).items():
            run = self._running.get(job_id)
            # A job whose end is being recorded is not stopped: the read may have seen that very
            # end, committed before its worker heard back, and stopping the worker then lost
            # the end's announcement (a `?wait=` ran its full time) and counted it cancelled.
            if run is not None and not run.done() and job_id not in self._ending:
                logger.info("job %s %s: stopping it", job_id, why)
                self._cancelled.add(job_id)
                run.cancel()

    async def _run(self, job: jobs.Job, upload: uploads.Upload | None, owner: str) -> str:
        """Run the job (on its input, `upload`) and record its end; its final state."""
        logs.job_id.set(job.id)  # this task's own context: its log lines name the job
        error = await self._convert(job, upload, owner)
        if error is None:
            return "finished"
        await self._record(job, lambda: jobs.fail(self.db, job.id, owner, error))
        self._ended(job)
        return "failed"

    async def _convert(
        self, job: jobs.Job, upload: uploads.Upload | None, owner: str
    ) -> str | None:
        """Run the job's conversion and record its success; the error if it failed."""
        converter = self.registry.get(job.filetype)
        if converter is None and job.filetype != PIPELINE:
            return f"The {job.filetype} converter is not available here"
        if upload is None:
            return "The input file no longer exists"
        work = await asyncio.to_thread(self.data.fresh_work_dir, job.id)
        cleared = False

        unrecorded: list[BaseException] = []  # said once, however long it lasts

        async def report(percent: int) -> None:
            # Progress is a courtesy: a write that fails (a full disk) never ends the job.
            try:
                await jobs.set_progress(self.db, job.id, owner, percent)
            except DATABASE_ERRORS as exc:
                if not unrecorded:
                    logger.warning("job %s: progress not recorded (%s)", job.id, exc)
                    unrecorded.append(exc)
            else:
                self._changed(job)

        # A job's own timeout counts when it is tighter, as converters.run has it.
        limit = min(job.timeout_seconds or math.inf, self.config.job_timeout_seconds)
        deadline = asyncio.get_running_loop().time() + limit
        try:
            source = self.data.upload_file(upload.file_path)
            if converter is None:  # a drop folder's pipeline
                steps = job.options["steps"]
                output = await self._pipeline(
                    steps, source, upload.file_name, work, report, (deadline, limit)
                )
            else:
                output = await self.runner.run(
                    converter,
                    job_id=job.id,
                    input_path=source,
                    input_name=upload.file_name,
                    input_format=job.input_format,
                    output_format=job.output_format,
                    options=job.options,
                    timeout=job.timeout_seconds,
                    work_dir=work,
                    report_progress=report,
                )
                if (after := after_steps(job.options)) and output.count == 1:
                    # ocr and optimize as options: the operations, run on what was made.
                    after_dir = work / "after"
                    await asyncio.to_thread(after_dir.mkdir)
                    output = await self._pipeline(
                        after, output.path, output.name, after_dir, report, (deadline, limit), True
                    )
            size = output.path.stat().st_size
            still_ours = functools.partial(jobs.held_by, self.db, job.id, owner)
            # Unknown (the database never answered): the end's own write decides (owner-checked).
            if await patiently(still_ours, self.db.patience, "a job's ownership") is False:
                # Given to another node while this one was not seen: its result is that one's.
                logger.warning("job %s: taken over by another node; this result is dropped", job.id)
                return TAKEN_OVER
            final = await asyncio.to_thread(self._publish, job.id, output, work)
            cleared = True  # with the result's move: one trip off the loop, not two
        except ConversionError as exc:
            # A tool that failed because the disk filled up says so in its own words.
            return DISK_FULL if disk_full_under(work, exc) else str(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_disk_full(exc):
                return DISK_FULL
            logger.exception("job %s: unexpected error in the %s converter", job.id, job.filetype)
            return "Internal error while converting this file"
        finally:
            # Scratch space goes first: on a full disk it is what lets the result be recorded.
            if not cleared:
                await asyncio.to_thread(shutil.rmtree, work, True)
        await self._record(
            job, lambda: jobs.finish(self.db, job.id, owner, final.name, output.count, size)
        )
        self._ended(job)
        return None

    def _publish(self, job_id: str, output: Output, work: Path) -> Path:
        """The result moved into place, then the job's scratch space removed (blocking)."""
        try:
            return self.data.publish_result(job_id, output.path, output.name)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def _pipeline(
        self,
        steps: list[dict[str, Any]],
        source: Path,
        name: str,
        work: Path,
        report: Callable[[int], Awaitable[None]],
        time_limit: tuple[float, float],
        as_options: bool = False,
    ) -> Output:
        """A pipeline's steps (or a conversion's after-options), within what is left of the
        job's time."""
        deadline, limit = time_limit
        try:
            async with asyncio.timeout_at(deadline):
                return await run_pipeline(
                    steps,
                    source,
                    name,
                    work,
                    runner=self.runner,
                    registry=self.registry,
                    config=self.config,
                    chromium=self.chromium,
                    report=report,
                    as_options=as_options,
                )
        except TimeoutError:
            raise ConversionError(f"The job took longer than its {limit:.0f} s limit") from None

    def _ended(self, job: jobs.Job) -> None:
        self._reclaimer.work_done()
        for listener in self._listeners:
            listener(job)
        self._changed(job)

    async def _record(self, job: jobs.Job, write: Callable[[], Awaitable[bool]]) -> None:
        """A job's end, written even if the database is a while unwritable (a full disk, a
        server restarting); if never, the job runs again (at the next start, or on another node
        once this one is not seen)."""
        self._ending.add(job.id)
        await patiently(write, self.db.patience, "a job's end")
