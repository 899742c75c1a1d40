"""Drop folders: files dropped into watched folders become jobs in the same queue.

The folder is the inbox, SQLite is the truth, and watchfiles is only a doorbell. Files are
found by full scans (at start, periodically, and whenever an event or a new folder rings) as
well as by events, so a lost event, an overflowed inotify queue, a network share that sends no
events, or a watcher that died costs a delay, never a file. A file is taken only once its size
and modification time have stood still for the settle time. Taking it is crash-safe: the drop
row is written first, then the file is renamed into the upload area (outside the inbox), checked
unchanged, and queued. Results appear in the output folder under a fresh name, written to a
temporary name and renamed; originals go to processed/ or failed/ (with a NAME.error.txt).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import watchfiles

from convertd import clock, drops
from convertd.config import Config
from convertd.converters.base import OptionError, canonical_format
from convertd.converters.registry import FILETYPES, Registry
from convertd.db import Database
from convertd.droprules import RuleError, WatchRule, check_layout, inbox_rule
from convertd.files import DataDir, extension_of, safe_filename, stem_of

logger = logging.getLogger(__name__)

MAX_SKIPPED_SHOWN = 500


def display(path: bytes | Path) -> str:
    raw = path if isinstance(path, bytes) else os.fsencode(path)
    return raw.decode("utf-8", errors="replace")


@dataclasses.dataclass
class Candidate:
    rule: WatchRule
    path: Path
    size: int
    mtime_ns: int
    first_seen: float
    stable_since: float
    checks: int = 1
    not_before: float = 0.0  # back-off after a temporary failure
    reason: str = ""  # why it is still here, when that is not just settling


def unique_path(directory: Path, name: str) -> Path:
    """`name`, or `stem (1).ext`, `stem (2).ext`, ...: the first that does not exist yet."""
    candidate = directory / name
    n = 1
    while candidate.exists() or candidate.is_symlink():
        ext = extension_of(name)
        stem = stem_of(name)
        candidate = directory / (f"{stem} ({n}).{ext}" if ext else f"{stem} ({n})")
        n += 1
    return candidate


def place_file(src: Path, directory: Path, name: str, *, move: bool) -> Path:
    """Put a file in `directory` under a name not yet taken; never overwrite. A rename where
    possible, else a copy to a temporary name, then a link to the final name (which fails
    instead of overwriting if another writer took the name first)."""
    directory.mkdir(parents=True, exist_ok=True)
    while True:
        target = unique_path(directory, name)
        if move:
            try:
                os.link(src, target)  # atomic, and refuses an existing name
                os.unlink(src)
                return target
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
        temp = directory / f".{target.name}.convertd-tmp"
        shutil.copyfile(src, temp)
        try:
            os.link(temp, target)
        except FileExistsError:
            continue
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        if move:
            os.unlink(src)
        return target


def build_rules(config: Config, registry: Registry) -> list[WatchRule]:
    """The embedded inbox plus the configured rules, checked: a RuleError names the rule and
    the field at fault."""
    rules = [inbox_rule(config.drop_dir, config.drop_originals), *config.watch_rules]
    check_layout(rules)
    for rule in rules[1:]:
        _check_rule(rule, registry)
    return rules


def _check_rule(rule: WatchRule, registry: Registry) -> None:
    if rule.filetype is not None:
        if rule.filetype not in FILETYPES:
            raise RuleError(
                f"watch rule {rule.name!r}: field 'filetype' must be one of {', '.join(FILETYPES)}"
            )
        converter = registry.known(rule.filetype)
        if converter is None or rule.output_format not in converter.output_formats:
            raise RuleError(
                f"watch rule {rule.name!r}: field 'output_format' "
                f"{rule.output_format!r} is not made by {rule.filetype}"
            )
        try:
            converter.validate_options(dict(rule.options), rule.output_format or "")
        except OptionError as exc:
            raise RuleError(f"watch rule {rule.name!r}: field 'options': {exc}") from None
    elif not any(rule.output_format in c.output_formats for c in registry.known_all()):
        raise RuleError(
            f"watch rule {rule.name!r}: field 'output_format' "
            f"{rule.output_format!r} is not a format convertd makes"
        )
    elif rule.options:
        raise RuleError(
            f"watch rule {rule.name!r}: field 'options' needs a 'filetype', "
            "since options belong to one converter"
        )


class DropWatcher:
    def __init__(
        self,
        config: Config,
        db: Database,
        data: DataDir,
        registry: Registry,
        notify: Any,
        rules: list[WatchRule],
    ) -> None:
        self.config = config
        self.db = db
        self.data = data
        self.registry = registry
        self.notify = notify
        self.rules = rules  # from build_rules, checked at start-up
        self.candidates: dict[Path, Candidate] = {}
        self.skipped: dict[str, str] = {}
        self.failures: dict[Path, int] = {}
        self._scan_now = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._status_written = ""

    # ----- setup -----

    def start(self) -> None:
        default = self.rules[0]
        for path in (default.folder, default.output, default.processed, default.failed):
            path.mkdir(parents=True, exist_ok=True)
        for rule in self.rules:
            self._tasks.append(asyncio.create_task(self._watch(rule), name=f"watch-{rule.name}"))
        self._tasks.append(asyncio.create_task(self._scanner(), name="drop-scanner"))
        self._tasks.append(asyncio.create_task(self._settler(), name="drop-settler"))
        self._tasks.append(asyncio.create_task(self._deliverer(), name="drop-deliverer"))
        names = ", ".join(f"{r.name} ({r.folder})" for r in self.rules)
        logger.info("watching drop folders: %s", names)

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # ----- finding files -----

    async def _watch(self, rule: WatchRule) -> None:
        """Events ring the bell for a scan; the watcher is restarted whenever it dies."""
        if not self.config.drop_events and not rule.polling:
            return
        delay = 1.0
        while not self._stop.is_set():
            if not rule.folder.is_dir():
                await asyncio.sleep(1.0)  # a vanished root: wait for it to come back
                continue
            try:
                async for _changes in watchfiles.awatch(
                    rule.folder,
                    recursive=True,
                    force_polling=rule.polling or None,
                    poll_delay_ms=int(rule.poll_interval * 1000),
                    stop_event=self._stop,
                    debounce=200,
                    step=50,
                    raise_interrupt=False,
                    ignore_permission_denied=True,
                ):
                    self._scan_now.set()
                    delay = 1.0
                    if not rule.folder.is_dir():
                        break
                if not self._stop.is_set():
                    logger.warning(
                        "drop watcher for %s stopped (folder gone?); restarting", rule.folder
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning(
                    "drop watcher for %s failed (%s); restarting in %.0f s", rule.folder, exc, delay
                )
            self._scan_now.set()  # whatever happened meanwhile, the next scan finds it
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _scanner(self) -> None:
        await self._repair()
        while True:
            try:
                await self.scan_all()
            except Exception:
                logger.exception("drop scan failed; will try again")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.drop_scan_seconds):
                    await self._scan_now.wait()
            self._scan_now.clear()
            await asyncio.sleep(0.1)  # let a burst of events settle into one scan

    async def scan_all(self) -> None:
        # The embedded folders come back if someone deletes them.
        default = self.rules[0]
        for path in (default.folder, default.output, default.processed, default.failed):
            await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
        for rule in self.rules:
            kept = (
                await drops.kept_originals(self.db, rule.name)
                if rule.originals == "keep"
                else set()
            )
            found, skipped = await asyncio.to_thread(self._scan_rule, rule, kept)
            now = time.monotonic()
            for path, (size, mtime_ns) in found.items():
                if path not in self.candidates:
                    self.candidates[path] = Candidate(rule, path, size, mtime_ns, now, now)
            for path in [
                p for p, c in self.candidates.items() if c.rule is rule and p not in found
            ]:
                del self.candidates[path]  # gone (taken by someone, renamed, deleted)
            for key in [k for k in self.skipped if k.startswith(f"{rule.name}:")]:
                del self.skipped[key]
            self.skipped.update({f"{rule.name}:{k}": v for k, v in skipped.items()})
        await asyncio.to_thread(self._write_status)

    def _scan_rule(
        self, rule: WatchRule, kept: set[tuple[bytes, int, int]]
    ) -> tuple[dict[Path, tuple[int, int]], dict[str, str]]:
        found: dict[Path, tuple[int, int]] = {}
        skipped: dict[str, str] = {}
        if not rule.folder.is_dir():
            skipped[str(rule.folder)] = "the watched folder does not exist (yet)"
            return found, skipped
        for path, relative, st in self._walk(rule, skipped):
            if not rule.wants(relative):
                continue
            if rule.by_subfolder and len(relative.parts) < 2:
                skipped[display(path)] = "put files in inbox/<format>/, e.g. inbox/pdf/"
                continue
            if (os.fsencode(path), st.st_size, st.st_mtime_ns) in kept:
                continue
            found[path] = (st.st_size, st.st_mtime_ns)
        return found, skipped

    def _walk(
        self, rule: WatchRule, skipped: dict[str, str]
    ) -> Iterator[tuple[Path, PurePosixPath, os.stat_result]]:
        stack = [rule.folder]
        while stack:
            directory = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except OSError as exc:
                skipped[display(directory)] = f"cannot read the folder: {exc.strerror}"
                continue
            for entry in entries:
                path = Path(entry.path)
                relative = PurePosixPath(path.relative_to(rule.folder).as_posix())
                try:
                    if entry.is_symlink():
                        if not entry.name.startswith("."):
                            skipped[display(path)] = "a symbolic link: not followed"
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        if not entry.name.startswith(".") and (
                            rule.recursive or (rule.by_subfolder and len(relative.parts) == 1)
                        ):
                            stack.append(path)
                        continue
                    if entry.is_file(follow_symlinks=False):
                        yield path, relative, entry.stat(follow_symlinks=False)
                except OSError as exc:
                    skipped[display(path)] = f"cannot read it: {exc.strerror}"

    def _write_status(self) -> None:
        """What is waiting and what is skipped, for `convertd drops status`."""
        now = time.monotonic()
        waiting = [
            {
                "path": display(c.path),
                "rule": c.rule.name,
                "size": c.size,
                "waiting_seconds": round(now - c.first_seen, 1),
                "reason": c.reason or "waiting for the file to stop changing",
            }
            for c in list(self.candidates.values())[:MAX_SKIPPED_SHOWN]
        ]
        skipped = [
            {"path": k.split(":", 1)[1], "rule": k.split(":", 1)[0], "reason": v}
            for k, v in list(self.skipped.items())[:MAX_SKIPPED_SHOWN]
        ]
        text = json.dumps({"waiting": waiting, "skipped": skipped}, indent=1)
        if text == self._status_written:
            return
        target = self.data.root / "drops-status.json"
        temp = target.with_suffix(".tmp")
        temp.write_text(text)
        os.replace(temp, target)
        self._status_written = text

    # ----- taking files -----

    async def _settler(self) -> None:
        interval = max(0.05, min(self.config.drop_settle_seconds / 2, 0.5))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.settle_once()
            except Exception:
                logger.exception("drop settle check failed; will try again")

    async def settle_once(self) -> None:
        now = time.monotonic()
        ready: list[Candidate] = []
        for path, cand in list(self.candidates.items()):
            if now < cand.not_before:
                continue
            try:
                st = await asyncio.to_thread(os.stat, path, follow_symlinks=False)
            except FileNotFoundError:
                del self.candidates[path]
                continue
            except OSError as exc:
                self.skipped[f"{cand.rule.name}:{display(path)}"] = f"cannot read it: {exc}"
                continue
            if (st.st_size, st.st_mtime_ns) != (cand.size, cand.mtime_ns):
                cand.size, cand.mtime_ns = st.st_size, st.st_mtime_ns
                cand.stable_since, cand.checks = now, 1
            else:
                cand.checks += 1
            if cand.checks >= 2 and now - cand.stable_since >= self.config.drop_settle_seconds:
                ready.append(cand)
            elif now - cand.first_seen > self.config.drop_max_wait_seconds:
                cand.reason = (
                    f"still changing after {self.config.drop_max_wait_seconds:.0f} s; "
                    "taken once it stops"
                )
        for cand in sorted(ready, key=lambda c: (c.first_seen, str(c.path))):
            await self._take(cand)

    async def _take(self, cand: Candidate) -> None:
        rule, path = cand.rule, cand.path
        relative = PurePosixPath(path.relative_to(rule.folder).as_posix())
        fmt = canonical_format(rule.format_for(relative) or "")
        name = safe_filename(display(os.fsencode(path.name)))
        choice = await asyncio.to_thread(self.registry.infer, path, fmt, rule.filetype)
        if isinstance(choice, str):
            await self._reject(cand, fmt, name, choice)
            return
        filetype, input_format = choice
        converter = self.registry.get(filetype)
        if converter is None:  # a tool is missing: temporary, the file stays where it is
            self._back_off(
                cand, f"the {filetype} converter is not available here (see `convertd doctor`)"
            )
            return
        options = dict(rule.options)
        if rule.by_subfolder:
            options = {}
        source = os.fsencode(path)
        file_path, dest = await asyncio.to_thread(self.data.new_upload_path, name)
        # The row first, naming where the file is going: a crash after the move is repairable.
        drop_id = await drops.begin_claim(
            self.db, rule.name, source, name, fmt, cand.size, cand.mtime_ns, file_path
        )
        try:
            await asyncio.to_thread(self._move_in, path, dest, cand)
        except FileNotFoundError:
            await drops.forget(self.db, drop_id)
            self.candidates.pop(path, None)
            return
        except _Changed:
            await drops.forget(self.db, drop_id)
            cand.stable_since, cand.checks = time.monotonic(), 1
            return
        except OSError as exc:
            await drops.forget(self.db, drop_id)
            self._back_off(cand, f"could not take it: {exc.strerror}")
            return
        self.candidates.pop(path, None)
        job_id = await drops.queue(
            self.db,
            drop_id,
            file_name=name,
            extension=extension_of(name),
            filetype=filetype,
            input_format=input_format,
            output_format=fmt,
            options=options,
        )
        self.failures.pop(path, None)
        logger.info("drop taken: %s (rule %s) -> job %s", display(path), rule.name, job_id)
        self.notify()

    def _move_in(self, path: Path, dest: Path, cand: Candidate) -> None:
        """Move the file out of the inbox into the upload area, and check it did not change."""
        try:
            os.rename(path, dest)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                shutil.rmtree(dest.parent, ignore_errors=True)
                raise
            shutil.copyfile(path, dest)  # another filesystem: copy, check, then remove
            st = os.stat(path)
            if (st.st_size, st.st_mtime_ns) != (cand.size, cand.mtime_ns):
                shutil.rmtree(dest.parent, ignore_errors=True)
                raise _Changed() from None
            os.unlink(path)
        if dest.stat().st_size != cand.size:
            # Changed between the last check and the rename: give it back and wait again.
            os.rename(dest, path)
            shutil.rmtree(dest.parent, ignore_errors=True)
            raise _Changed()

    def _back_off(self, cand: Candidate, reason: str) -> None:
        count = self.failures.get(cand.path, 0) + 1
        self.failures[cand.path] = count
        cand.not_before = time.monotonic() + min(2.0**count, 300.0)
        cand.reason = f"{reason}; retrying"
        logger.warning("drop waiting: %s: %s (retry %d)", display(cand.path), reason, count)

    async def _reject(self, cand: Candidate, fmt: str, name: str, reason: str) -> None:
        """A file that can never convert: straight to failed/, with its report."""
        self.candidates.pop(cand.path, None)
        try:
            await asyncio.to_thread(
                self._fail_file, cand.rule, cand.path, fmt or "unknown", name, reason, None
            )
        except OSError as exc:
            self.skipped[f"{cand.rule.name}:{display(cand.path)}"] = (
                f"{reason}; and it could not be moved to failed/: {exc.strerror}"
            )
            return
        logger.info("drop failed: %s: %s", display(cand.path), reason)

    def _fail_file(
        self, rule: WatchRule, src: Path, fmt: str, name: str, reason: str, job_id: str | None
    ) -> Path:
        target = place_file(src, rule.failed_dir(fmt), name, move=True)
        when = clock.iso(clock.now())
        report = {
            "file": target.name,
            "error": reason,
            "job_id": job_id,
            "rule": rule.name,
            "output_format": fmt,
            "failed_at": when,
        }
        (target.parent / f"{target.name}.error.txt").write_text(
            f"{target.name} could not be converted to {fmt}.\n\nReason: {reason}\n"
            f"Job: {job_id or '-'}\nTime: {when} UTC\n\n"
            f"To try again, move {target.name} back into the inbox.\n",
            encoding="utf-8",
        )
        (target.parent / f"{target.name}.error.json").write_text(
            json.dumps(report, indent=2), encoding="utf-8"
        )
        return target

    # ----- delivering results -----

    async def _deliverer(self) -> None:
        while True:
            try:
                for drop, status, result_name, error in await drops.ready_to_deliver(self.db):
                    await self._deliver(drop, status, result_name, error)
            except Exception:
                logger.exception("drop delivery failed; will try again")
            await asyncio.sleep(0.2)

    async def _deliver(
        self, drop: drops.Drop, status: str, result_name: str | None, error: str | None
    ) -> None:
        rule = next((r for r in self.rules if r.name == drop.rule), None)
        if rule is None:
            return  # its rule was removed from the config; left for the admin
        assert drop.upload_id is not None and drop.job_id is not None
        original = await self._original_path(drop)
        if status == "failed":
            reason = error or "the conversion failed"
            if original is not None:
                await asyncio.to_thread(
                    self._fail_file,
                    rule,
                    original,
                    drop.output_format,
                    drop.display_name,
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
            await asyncio.to_thread(self._publish, result, target)
        if original is not None:
            await asyncio.to_thread(self._file_original, rule, drop, original)
        await drops.close(self.db, drop.id, "done")
        logger.info("drop finished: %s -> %s", drop.display_name, target)

    async def _original_path(self, drop: drops.Drop) -> Path | None:
        path = self.data.upload_file(drop.upload_path)
        return path if await asyncio.to_thread(path.exists) else None

    def _publish(self, result: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.parent / f".{target.name}.convertd-tmp"
        shutil.copyfile(result, temp)
        os.replace(temp, target)

    def _file_original(self, rule: WatchRule, drop: drops.Drop, original: Path) -> None:
        if rule.originals == "delete":
            original.unlink(missing_ok=True)
        elif rule.originals == "keep":
            back = Path(os.fsdecode(drop.source_path))
            if back.exists():
                place_file(
                    original, rule.processed_dir(drop.output_format), drop.display_name, move=True
                )
            else:
                back.parent.mkdir(parents=True, exist_ok=True)
                os.rename(original, back)
        else:
            place_file(
                original, rule.processed_dir(drop.output_format), drop.display_name, move=True
            )
        shutil.rmtree(original.parent, ignore_errors=True)

    # ----- repair at start -----

    async def _repair(self) -> None:
        """Finish or undo claims a crash interrupted."""
        for drop in await drops.by_status(self.db, "claiming"):
            source = Path(os.fsdecode(drop.source_path))
            if await asyncio.to_thread(source.exists):
                await drops.forget(self.db, drop.id)  # not moved yet: the scan takes it again
                continue
            moved = self.data.upload_file(drop.upload_path)
            if not await asyncio.to_thread(moved.exists):
                await drops.close(
                    self.db, drop.id, "failed", "the file vanished while it was being taken"
                )
                continue
            rule = next((r for r in self.rules if r.name == drop.rule), None)
            if rule is None:
                continue
            choice = await asyncio.to_thread(
                self.registry.infer, moved, drop.output_format, rule.filetype
            )
            if isinstance(choice, str):
                await drops.close(self.db, drop.id, "failed", choice)
                continue
            job_id = await drops.queue(
                self.db,
                drop.id,
                file_name=moved.name,
                extension=extension_of(moved.name),
                filetype=choice[0],
                input_format=choice[1],
                output_format=drop.output_format,
                options={} if rule.by_subfolder else dict(rule.options),
            )
            logger.info("drop repaired: %s -> job %s", drop.display_name, job_id)
        self.notify()


class _Changed(Exception):
    """The file changed while it was being taken."""
