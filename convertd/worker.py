"""The in-process worker pool: claim a job, run its converter under a timeout, record the result.

Stopping: the pool stops claiming, lets running jobs finish within the grace period, then cancels
the rest and puts them back in the queue for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import shutil
import sqlite3
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from convertd import jobs, uploads
from convertd.config import Config
from convertd.converters.base import Limits, Task
from convertd.converters.registry import Registry
from convertd.db import Database
from convertd.errors import ConversionError
from convertd.files import DataDir, stem_of
from convertd.memory import Reclaimer

logger = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 1.0
OUTER_TIMEOUT_SLACK = 5.0
RECORD_ATTEMPTS = 5


def _zip_outputs(outputs: list[Path], dest: Path) -> None:
    # Outputs are already compressed formats for the most part; ZIP_DEFLATED costs little anyway.
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in outputs:
            zf.write(path, arcname=path.name)


class WorkerPool:
    def __init__(self, config: Config, db: Database, registry: Registry, data: DataDir) -> None:
        self.config = config
        self.db = db
        self.registry = registry
        self.data = data
        self.limits = Limits(
            max_image_pixels=config.max_image_pixels,
            job_timeout_seconds=config.job_timeout_seconds,
            max_media_seconds=config.max_media_seconds,
        )
        self._instance = secrets.token_hex(4)
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._running: dict[str, asyncio.Task[None]] = {}
        self._reclaimer = Reclaimer()

    def start(self) -> None:
        for n in range(self.config.workers):
            owner = f"worker-{self._instance}-{n}"
            self._loops.append(asyncio.create_task(self._loop(owner), name=owner))
        logger.info("worker pool started with %d workers", self.config.workers)

    def notify(self) -> None:
        """A job was queued: wake an idle worker now instead of at its next poll."""
        self._wakeup.set()

    async def stop(self) -> None:
        self._stopping.set()
        self._wakeup.set()
        running = list(self._running.values())
        if running:
            logger.info(
                "waiting up to %.0f s for %d running job(s)",
                self.config.shutdown_grace_seconds,
                len(running),
            )
            await asyncio.wait(running, timeout=self.config.shutdown_grace_seconds)
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()
        self._reclaimer.close()

    async def _loop(self, owner: str) -> None:
        while not self._stopping.is_set():
            try:
                await self._one(owner)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A worker must outlive a bad moment (a full disk, a locked database): the job
                # it held, if any, is still 'processing' and runs again at the next start.
                logger.exception("%s: unexpected error; carrying on", owner)
                await asyncio.sleep(1.0)

    async def _one(self, owner: str) -> None:
        """Claim one job and run it to its end, or wait a little for one to arrive."""
        job = await jobs.claim_next(self.db, owner)
        if job is None:
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(IDLE_POLL_SECONDS):
                    await self._wakeup.wait()
            return
        # The job runs in its own task so that stop() can wait for it while cancelling loops.
        run = asyncio.create_task(self._run(job, owner), name=f"job-{job.id}")
        self._running[job.id] = run
        try:
            await asyncio.shield(run)
        except asyncio.CancelledError:
            if not run.done():
                run.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await run
                await jobs.requeue(self.db, job.id, owner)
            raise
        finally:
            self._running.pop(job.id, None)

    async def _run(self, job: jobs.Job, owner: str) -> None:
        converter = self.registry.get(job.filetype)
        upload = await uploads.get(self.db, job.upload_id)
        if converter is None:
            await jobs.fail(
                self.db, job.id, owner, f"The {job.filetype} converter is not available here"
            )
            return
        if upload is None:
            await jobs.fail(self.db, job.id, owner, "The input file no longer exists")
            return
        work = await asyncio.to_thread(self.data.fresh_work_dir, job.id)

        async def report(percent: int) -> None:
            await jobs.set_progress(self.db, job.id, owner, percent)

        task = Task(
            job_id=job.id,
            input_path=self.data.upload_file(upload.file_path),
            input_name=upload.file_name,
            input_format=job.input_format,
            output_format=job.output_format,
            options=job.options,
            work_dir=work,
            limits=self.limits,
            report_progress=report,
        )
        error: str | None = None
        try:
            # Converters stop their own tools at the job timeout and say which one hung; this
            # outer limit, a little later, is the backstop for a converter that does not.
            async with asyncio.timeout(self.config.job_timeout_seconds + OUTER_TIMEOUT_SLACK):
                outputs = await converter.convert(task)
            if not outputs:
                raise ConversionError("The conversion produced no output")
            name, path = await asyncio.to_thread(self._package, task, outputs)
            size = path.stat().st_size
            final = await asyncio.to_thread(self.data.publish_result, job.id, path, name)
        except ConversionError as exc:
            error = str(exc)
        except TimeoutError:
            error = f"The conversion took longer than the {self.config.job_timeout_seconds} s limit"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                error = "The server ran out of disk space while converting this file"
            else:
                logger.exception(
                    "job %s: unexpected error in the %s converter", job.id, job.filetype
                )
                error = "Internal error while converting this file"
        finally:
            # Scratch space goes first: on a full disk it is what lets the result be recorded.
            await asyncio.to_thread(shutil.rmtree, work, True)
        if error is None:
            await self._record(
                lambda: jobs.finish(self.db, job.id, owner, final.name, len(outputs), size)
            )
        else:
            await self._record(lambda: jobs.fail(self.db, job.id, owner, str(error)))
        self._reclaimer.job_ended()

    async def _record(self, write: Callable[[], Awaitable[bool]]) -> None:
        """A job's end, written even if the database is briefly unwritable (a full disk)."""
        for attempt in range(RECORD_ATTEMPTS):
            try:
                await write()
                return
            except sqlite3.OperationalError as exc:
                logger.error("could not record a job's end (%s); attempt %d", exc, attempt + 1)
                await asyncio.sleep(1.0 + attempt)
        logger.error("gave up recording a job's end; it runs again at the next start")

    def _package(self, task: Task, outputs: list[Path]) -> tuple[str, Path]:
        return package_outputs(task, outputs)


def package_outputs(task: Task, outputs: list[Path]) -> tuple[str, Path]:
    """One output is delivered as itself; several as one ZIP named after the input."""
    if len(outputs) == 1:
        return f"{stem_of(task.input_name)}.{task.output_format}", outputs[0]
    bundle = task.work_dir / f".bundle-{os.getpid()}.zip"
    _zip_outputs(outputs, bundle)
    return f"{stem_of(task.input_name)}.zip", bundle
