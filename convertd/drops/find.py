"""Finding dropped files: full scans of every watched folder, with watchfiles as the doorbell.

Events only say "look now": a scan runs at start, every `drop_scan_seconds` and after every
event, so a lost event, an overflowed inotify queue, a network share that sends no events or a
watcher that died costs a delay, never a file. What a scan finds becomes a candidate in
`Waiting`; what it cannot take is listed as skipped, with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

import watchfiles

from convertd.drops.places import display
from convertd.drops.rules import WatchRule
from convertd.drops.waiting import Candidate, Waiting
from convertd.store import drops
from convertd.store.db import Database

logger = logging.getLogger(__name__)

# A burst of events is one scan: wait this long after the first for the rest.
DEBOUNCE_MS = 200


class Finder:
    def __init__(
        self, db: Database, rules: list[WatchRule], waiting: Waiting, status_file: Path
    ) -> None:
        self.db = db
        self.rules = rules
        self.waiting = waiting
        self.status_file = status_file

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
            found, skipped = await asyncio.to_thread(_scan_rule, rule, kept)
            now = time.monotonic()
            candidates = self.waiting.candidates
            for path, (size, mtime_ns) in found.items():
                if path not in candidates:
                    candidates[path] = Candidate(rule, path, size, mtime_ns, now, now)
            for path in [p for p, c in candidates.items() if c.rule is rule and p not in found]:
                del candidates[path]  # gone (taken by someone, renamed, deleted)
            self.waiting.replace_skipped(rule, skipped)
        await asyncio.to_thread(self.waiting.write_status, self.status_file)

    async def watch(self, rule: WatchRule, ring: Callable[[], None], stop: asyncio.Event) -> None:
        """Ring for a scan on every batch of events, until the watcher ends (its folder gone,
        or `stop`); the caller runs this again to restart it."""
        if not rule.folder.is_dir():
            return  # a vanished root: the next run looks again
        try:
            await self._watch_events(rule, ring, stop)
        except Exception as exc:
            if not _undecodable_name(exc):
                raise
            # watchfiles cannot give an event for a name that is not UTF-8 as text; the scan,
            # which reads names as bytes, takes the file, and the watcher starts again.
            logger.info(
                "drop watcher for %s: an event for a non-UTF-8 name; rescanning", rule.folder
            )
            return
        finally:
            ring()  # whatever happened meanwhile, the next scan finds it
        if not stop.is_set():
            logger.warning("drop watcher for %s stopped (folder gone?); restarting", rule.folder)

    async def _watch_events(
        self, rule: WatchRule, ring: Callable[[], None], stop: asyncio.Event
    ) -> None:
        async for _changes in watchfiles.awatch(
            rule.folder,
            recursive=True,
            force_polling=rule.polling or None,
            poll_delay_ms=int(rule.poll_interval * 1000),
            stop_event=stop,
            debounce=DEBOUNCE_MS,
            step=50,
            raise_interrupt=False,
            ignore_permission_denied=True,
        ):
            ring()
            if not rule.folder.is_dir():
                break


def _undecodable_name(exc: BaseException) -> bool:
    """watchfiles' error for an event whose path is not UTF-8 (alone or in a group)."""
    errors = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
    return bool(errors) and all("Unable to decode path" in str(e) for e in errors)


def _scan_rule(
    rule: WatchRule, kept: set[tuple[bytes, int, int]]
) -> tuple[dict[Path, tuple[int, int]], dict[str, str]]:
    found: dict[Path, tuple[int, int]] = {}
    skipped: dict[str, str] = {}
    if not rule.folder.is_dir():
        skipped[str(rule.folder)] = "the watched folder does not exist (yet)"
        return found, skipped
    for path, relative, st in _walk(rule, skipped):
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
    rule: WatchRule, skipped: dict[str, str]
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
