"""What the drop watcher knows of files it has not taken yet: the candidates settling, the files
it skips (and why), and back-off after temporary failures. Shared by finding, settling and
taking; written to `drops-status.json` for `convertd drops`."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from convertd.drops.places import display
from convertd.drops.rules import WatchRule
from convertd.periodic import backoff

logger = logging.getLogger(__name__)

MAX_SHOWN = 500
MAX_BACK_OFF_SECONDS = 300.0


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
    settled: bool = False  # stood still long enough (a batch's member waits for the others)


class Waiting:
    def __init__(self) -> None:
        self.candidates: dict[Path, Candidate] = {}
        self.skipped: dict[tuple[str, str], str] = {}  # (rule, path) -> reason
        self.failures: dict[Path, int] = {}
        self._status_written = ""

    def skip(self, rule: WatchRule, path: str, reason: str) -> None:
        self.skipped[(rule.name, path)] = reason

    def replace_skipped(self, rule: WatchRule, skipped: dict[str, str]) -> None:
        """What the latest scan of `rule` skipped, in place of what the one before did."""
        for key in [k for k in self.skipped if k[0] == rule.name]:
            del self.skipped[key]
        self.skipped.update({(rule.name, path): why for path, why in skipped.items()})

    def back_off(self, cand: Candidate, reason: str) -> None:
        """A temporary failure: leave the file where it is and try again later, ever later."""
        count = self.failures.get(cand.path, 0) + 1
        self.failures[cand.path] = count
        cand.not_before = time.monotonic() + backoff(2.0, count, MAX_BACK_OFF_SECONDS)
        cand.reason = f"{reason}; retrying"
        logger.warning("drop waiting: %s: %s (retry %d)", display(cand.path), reason, count)

    def taken(self, path: Path) -> None:
        self.candidates.pop(path, None)
        self.failures.pop(path, None)

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        waiting = [
            {
                "path": display(c.path),
                "rule": c.rule.name,
                "size": c.size,
                "waiting_seconds": round(now - c.first_seen, 1),
                "reason": c.reason or "waiting for the file to stop changing",
            }
            for c in list(self.candidates.values())[:MAX_SHOWN]
        ]
        skipped = [
            {"path": path, "rule": rule, "reason": why}
            for (rule, path), why in list(self.skipped.items())[:MAX_SHOWN]
        ]
        return {"waiting": waiting, "skipped": skipped}

    def write_status(self, target: Path) -> None:
        """Write the status file when it changed (blocking: run it in a thread)."""
        text = json.dumps(self.status(), indent=1)
        if text == self._status_written:
            return
        temp = target.with_suffix(".tmp")
        temp.write_text(text)
        os.replace(temp, target)
        self._status_written = text


def read_status(target: Path) -> dict[str, Any] | None:
    """The status a running daemon wrote, or None if there is none."""
    try:
        return dict(json.loads(target.read_text()))
    except FileNotFoundError:
        return None
