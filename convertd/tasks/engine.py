"""The task engine: runs each task of a /v2 job as soon as the tasks it depends on have finished.

A convert task runs as an ordinary queued job (the worker pool, its limits, retries and crash
recovery): queued here, settled when the job ends. The other operations (tasks/work.py) run
here, as asyncio tasks. Whatever state a task moves to is committed first and announced after
(`Changes`), which is what `/sync/v2` requests wait on.

After a crash, nothing needs replaying: queued conversions are recovered by the queue, and tasks
this engine was running start again from scratch (their files are made in a staging directory
and published in one rename, so a half-made result is never seen). With several nodes the leader
runs it (cluster/leader.py); `fence` refuses the ends a leader no more records."""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from convertd.browser.chromium import Chromium
from convertd.changes import Changes, task_items
from convertd.config import Config
from convertd.converters.registry import Registry
from convertd.errors import DISK_FULL, is_disk_full
from convertd.fetch import Policy, parse_networks
from convertd.files import DataDir, extension_of
from convertd.periodic import Periodic
from convertd.store import jobs, tasks, uploads
from convertd.store.db import Conn, Database, patiently
from convertd.tasks import work
from convertd.tasks.conversion import conversion_of, office_pdf, take_conversion_result
from convertd.tasks.operations import TaskFailed
from convertd.tasks.outputs import describe, link_or_copy
from convertd.tasks.tools import result_beyond_files
from convertd.worker import WorkerPool

logger = logging.getLogger(__name__)
T = TypeVar("T")
Cancelled = tuple[list[tasks.Task], list[tuple[str, str]]]  # and queued jobs' filetype, format
BACKSTOP_SECONDS = 30.0  # a backstop only: it is poked whenever what it waits for happens
CONCURRENT_OPERATIONS = 8  # downloads and archives at once (the pool bounds conversions)


class TaskEngine:
    fence: Callable[[Conn], bool] = staticmethod(lambda conn: True)

    def __init__(
        self,
        config: Config,
        db: Database,
        data: DataDir,
        registry: Registry,
        pool: WorkerPool,
        changes: Changes,
        chromium: Chromium | None = None,
    ) -> None:
        self.config = config
        office = functools.partial(office_pdf, registry, pool.runner)
        self.means = work.Means(config, chromium, office, pool.metrics)
        self.db = db
        self.data = data
        self.registry = registry
        self.pool = pool
        self.changes = changes
        self.policy = Policy(parse_networks(config.import_url_allow))
        self._stepper = Periodic("task-engine", self._step, BACKSTOP_SECONDS)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(CONCURRENT_OPERATIONS)
        self._receiving: set[str] = set()
        # Whether a task may have ended badly since the last look for its waiters (a write).
        self._orphans_possible = True
        # Only a /v2 convert task's job ends one of its tasks: a v1 or drop job's end would
        # cost a step (three reads) for nothing, at every small job.
        self.pool.on_job_end(lambda job: self.poke() if job.source == "v2" else None)

    async def start(self) -> None:
        for task in await tasks.running_here(self.db):
            if task.attempts >= self.config.max_attempts:
                await self._fail(
                    task,
                    "INTERRUPTED",
                    f"Gave up after {task.attempts} attempts: convertd stopped while running it",
                )
            elif await self.db.write(functools.partial(tasks.restart, task_id=task.id)):
                logger.info("task %s processing again after an unclean stop", task.id)
                self._spawn(task)
        self._stepper.start()
        self.poke()

    async def stop(self) -> None:
        await self._stepper.stop()
        running = list(self._running.values())
        for run in running:
            run.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    def poke(self) -> None:
        self._stepper.poke()

    def added(self) -> None:
        """Tasks were created: step now (one may name an input that has already failed); and
        whoever listens for changes hears of it (a task done as it was made, an import, has
        already recorded its event for the webhook sender)."""
        self._orphans_possible = True
        self.poke()
        self.changes.changed()

    def changed(self, task: tasks.Task) -> None:
        """A task ended (or was cancelled or deleted): wake who waits on it or its job."""
        self.changes.changed(task.id, task.job_id)
        self.changes.publish(task.key_id, *task_items(task.id, task.job_id))

    def started(self, task: tasks.Task) -> None:
        """A task started: its waiters and the key's event streams hear of it (a job ends only
        when a task ends, so the job's waiters do not)."""
        self.changes.changed(task.id)
        self.changes.publish(task.key_id, *task_items(task.id, task.job_id))

    # ----- stepping: settle ended conversions, fail orphans, start what is ready -----

    async def _step(self) -> bool:
        if self._running:  # cancelled or deleted through another node: stopped here too
            for task_id in await tasks.not_processing(self.db, list(self._running)):
                self._running[task_id].cancel()
        await self._settle_conversions()
        orphans: list[str] = []
        if self._orphans_possible:
            self._orphans_possible = False
            orphans = await self.db.write(tasks.fail_orphans)
        if orphans:
            for task in await tasks.get_many(self.db, orphans):
                self.changed(task)
        for task in await tasks.ready(self.db):
            await self._start(task)
        return False

    async def _settle_conversions(self) -> None:
        rows = await tasks.conversions_ended(self.db)
        found = {t.id: t for t in await tasks.get_many(self.db, [r["task_id"] for r in rows])}
        for row in rows:
            task = found.get(row["task_id"])
            if task is None:
                continue
            if row["status"] == jobs.Status.FAILED:
                await self._fail(task, "CONVERSION_FAILED", row["error"] or "The conversion failed")
                continue
            files = await self._guarded(
                task,
                "The converted file could not be kept",
                asyncio.to_thread(
                    take_conversion_result, self.data, task, row["job_id"], row["result_name"]
                ),
            )
            if files is not _FAILED:
                await self._finish(task, files)

    async def _guarded(self, task: tasks.Task, internal: str, attempt: Awaitable[T]) -> T | Failed:
        """`attempt`'s result; if it raises, the task fails (and _FAILED comes back): with the
        TaskFailed's own code and message, or as an internal error (`internal`, or the disk
        being full) for anything unexpected. Failing the task, rather than leaving it where it
        was, keeps one bad task from being tried again on every step."""
        try:
            return await attempt
        except TaskFailed as exc:
            await self._fail(task, exc.code, exc.message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("task %s (%s): %s", task.id, task.operation, internal)
            await self._fail(task, "INTERNAL_ERROR", DISK_FULL if is_disk_full(exc) else internal)
        return _FAILED

    async def _start(self, task: tasks.Task) -> None:
        if task.operation == "convert":
            await self._guarded(task, "Internal error in convert", self._start_conversion(task))
            return
        if task.operation == "export/url" and not task.payload.get("archive_multiple_files"):
            await self._export(task)  # links only: quick enough for the step itself
            return
        if await self.db.write(lambda conn: tasks.start(conn, task.id)):
            self.started(task)
            self._spawn(task)

    async def _inputs(self, task: tasks.Task, only: list[str] | None = None) -> list[Path]:
        inputs = {t.id: t for t in await tasks.get_many(self.db, task.depends_on)}
        paths = []  # of all the tasks it depends on, or `only` of those (a watermark's image)
        for task_id in task.depends_on if only is None else only:
            source = inputs.get(task_id)
            if source is None:
                raise TaskFailed("INPUT_TASK_FAILED", "An input task was deleted")
            paths += [self.data.task_file(task_id, f["filename"]) for f in source.files]
        return paths

    async def _start_conversion(self, task: tasks.Task) -> None:
        paths = await self._inputs(task)
        if len(paths) != 1:
            raise TaskFailed(
                "INVALID_INPUT",
                f"A convert task takes one file; its input has {len(paths)}. "
                "Convert each file in a task of its own, or archive them first.",
            )
        source = paths[0]
        conversion = await asyncio.to_thread(conversion_of, self.registry, task.payload, source)
        file_path, dest = await asyncio.to_thread(self.data.new_upload_path, source.name)
        await asyncio.to_thread(link_or_copy, source, dest)
        size = dest.stat().st_size

        def queue(conn: Conn) -> bool:
            upload_id = uploads.insert(
                conn,
                task.key_id,
                file_path,
                source.name,
                size,
                extension_of(source.name),
                task.created_at,
            )
            job = jobs.insert(conn, upload_id, conversion, key_id=task.key_id, source="v2")
            if not tasks.start(conn, task.id, conversion_id=job["id"]):
                raise _NoLongerWaiting
            return True

        try:
            await self.db.write(queue)
        except _NoLongerWaiting:
            await asyncio.to_thread(self.data.remove_upload, file_path)
            return
        self.pool.notify()
        self.started(task)

    # ----- operations the engine runs itself -----

    def _spawn(self, task: tasks.Task) -> None:
        run = asyncio.create_task(self._run(task), name=f"task-{task.id}")
        self._running[task.id] = run

    async def _run(self, task: tasks.Task) -> None:
        try:
            async with self._slots:
                files = await self._guarded(
                    task, f"Internal error in {task.operation}", self._made(task, self._work)
                )
            if files is not _FAILED:
                await self._finish(task, files)
        finally:
            self._running.pop(task.id, None)

    async def _work(self, task: tasks.Task, staging: Path) -> None:
        inputs = functools.partial(self._inputs, task)
        await work.perform(task, staging, inputs, self.policy, self.means)

    async def _links(self, task: tasks.Task, staging: Path) -> None:
        await asyncio.to_thread(work.link_all, await self._inputs(task), staging)

    async def _made(
        self, task: tasks.Task, make: Callable[[tasks.Task, Path], Awaitable[None]]
    ) -> list[dict[str, Any]]:
        """The task's files: made by `make` in a fresh staging directory, then published whole."""
        staging = await asyncio.to_thread(self.data.fresh_task_staging, task.id)
        await make(task, staging)
        await asyncio.to_thread(self.data.publish_task_files, task.id, staging)
        return await asyncio.to_thread(describe, self.data.task_dir(task.id))

    async def _export(self, task: tasks.Task) -> None:
        """export/url is links to its inputs' files: made within the step, and recorded
        waiting -> finished in one write, as there is nothing to wait for."""
        files = await self._guarded(
            task, "Internal error in export/url", self._made(task, self._links)
        )
        if files is _FAILED:
            return
        if await self._record(lambda conn: tasks.finish(conn, task.id, files, waiting=True)):
            logger.info("task %s finished (export/url)", task.id)
        else:
            await self._drop_files_if_deleted(task)
        self.changed(task)
        self.poke()  # a task that takes this export as its input is ready now

    # ----- recording ends -----

    async def _finish(self, task: tasks.Task, files: list[dict[str, Any]]) -> None:
        extra = await asyncio.to_thread(result_beyond_files, self.data.task_dir(task.id))
        if await self._record(lambda conn: tasks.finish(conn, task.id, files, extra=extra)):
            logger.info("task %s finished (%s)", task.id, task.operation)
        else:
            await self._drop_files_if_deleted(task)
        self.changed(task)
        self.poke()

    async def _record(self, end: Callable[[Conn], T]) -> T | None:
        """A task's end (what `end` returns; None if fenced off), written even if the database is
        briefly unwritable (a full disk); one that could not be written runs again at the start."""
        fenced = functools.partial(self.db.write, lambda c: end(c) if self.fence(c) else None)
        return await patiently(fenced, self.db.patience, "a task's end")

    async def _drop_files_if_deleted(self, task: tasks.Task) -> None:
        """Files made for a task deleted meanwhile go too (the retention sweep catches what a
        race leaves anyway: task directories without a task)."""
        if await tasks.get(self.db, task.id) is None:
            await asyncio.to_thread(self.data.remove_task_files, task.id)

    async def _fail(self, task: tasks.Task, code: str, message: str) -> None:
        self._orphans_possible = True  # the step's backstop, for inputs deleted meanwhile
        ended = await self._record(lambda conn: tasks.fail(conn, task.id, code, message))
        if ended:  # this task, and those of its job that waited on it, in one transaction
            logger.info("task %s error (%s): %s", task.id, code, message)
            for dependent in await tasks.get_many(self.db, ended[1:]) if ended[1:] else []:
                self.changed(dependent)
        self.changed(task)
        self.poke()

    # ----- what clients do to tasks -----

    async def uploaded(self, task: tasks.Task, staging: Path) -> bool:
        """An import/upload's file arrived in `staging`: publish it and finish the task, once
        (the caller holds `receiving(task)`, so no other upload to it runs meanwhile)."""
        files = await asyncio.to_thread(describe, staging)
        await asyncio.to_thread(self.data.publish_task_files, task.id, staging)
        if not await self.db.write(lambda conn: tasks.finish(conn, task.id, files, waiting=True)):
            await asyncio.to_thread(self.data.remove_task_files, task.id)
            return False
        self.changed(task)
        self.poke()
        return True

    def receiving(self, task_id: str) -> bool:
        """Claim the right to receive an upload for this task; False if one is under way."""
        if task_id in self._receiving:
            return False
        self._receiving.add(task_id)
        return True

    def received(self, task_id: str) -> None:
        self._receiving.discard(task_id)

    async def cancel(self, task_id: str) -> list[tasks.Task]:
        """Cancel a task and those depending on it; running work stops (a conversion's tools
        are killed by the worker pool's cancellation check, run at once)."""
        doomed, queued = await self.db.write(functools.partial(_cancel, task_ids=[task_id]))
        await self._stop(doomed, queued)
        return doomed

    async def delete(self, deleted: list[tasks.Task], delete: Callable[[Conn], Any]) -> None:
        """Stop these tasks, run `delete` (which removes their rows) and remove their files;
        whoever waits on them or watches them hears of it."""
        task_ids = [t.id for t in deleted]

        def cancel_and_delete(conn: Conn) -> tuple[Cancelled, list[tuple[str, str]]]:
            cancelled = _cancel(conn, task_ids)
            forgotten = tasks.forget_conversions(conn, task_ids)
            delete(conn)
            return cancelled, forgotten

        cancelled, forgotten = await self.db.write(cancel_and_delete)
        await self._stop(*cancelled)
        for task_id in task_ids:
            await asyncio.to_thread(self.data.remove_task_files, task_id)
        for job_id, upload_path in forgotten:
            await asyncio.to_thread(self.data.remove_job_files, job_id)
            await asyncio.to_thread(self.data.remove_upload, upload_path)
        for task in deleted:
            self.changed(task)

    async def _stop(self, doomed: list[tasks.Task], queued: list[tuple[str, str]]) -> None:
        self._orphans_possible = True
        self.pool.count_cancelled(queued)
        if any(task.conversion_id for task in doomed):
            self.pool.stop_cancelled_soon()
        for task in doomed:
            run = self._running.get(task.id)
            if run is not None:
                run.cancel()
            self.changed(task)
        self.poke()


def _cancel(conn: Conn, task_ids: list[str]) -> Cancelled:
    """Inside a transaction: cancel these tasks and those depending on them, and fail the queued
    conversions of those that were converting (the worker pool then kills their tools)."""
    doomed = tasks.cancel(conn, task_ids)
    conversions = [t.conversion_id for t in doomed if t.conversion_id]
    queued = jobs.cancel(conn, conversions, "Cancelled: its /v2 task was cancelled or deleted")
    return doomed, queued


class Failed(enum.Enum):
    """What _guarded gives back when the attempt failed the task."""

    FAILED = enum.auto()


_FAILED = Failed.FAILED


class _NoLongerWaiting(Exception):
    """The task was cancelled or deleted while its conversion was being queued."""
