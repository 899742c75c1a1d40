"""Batches: a rule with `merge = true` turns files that arrive together into one result.

A batch is the loose files of the rule's folder that arrived within `batch_seconds` of each
other, or the files of a folder moved in whole (each top-level folder is a batch of its own).
Its files are held, settled, until none of its group is still settling and none has arrived
for `batch_seconds`; then the whole group is taken at once (take.py), in file-name order.
"""

from __future__ import annotations

import time
from pathlib import PurePosixPath

from convertd.drops.waiting import Candidate, Waiting

HELD = "settled; in a batch, taken once no file has come for {:g} s"


def group_of(cand: Candidate) -> str:
    """The batch a file belongs to: its top-level folder under the rule's, or "" (loose)."""
    relative = PurePosixPath(cand.path.relative_to(cand.rule.folder).as_posix())
    return relative.parts[0] if len(relative.parts) > 1 else ""


def split_batches(
    waiting: Waiting, ready: list[Candidate]
) -> tuple[list[Candidate], list[list[Candidate]], float | None]:
    """(the ready files to take one by one, the batches complete now, seconds until the next
    held batch may be), holding the files of batches still gathering."""
    now = time.monotonic()
    singles = [c for c in ready if not c.rule.merge]
    groups: dict[tuple[str, str], list[Candidate]] = {}
    for cand in ready:
        if cand.rule.merge:
            groups.setdefault((cand.rule.name, group_of(cand)), []).append(cand)
    batches: list[list[Candidate]] = []
    next_due: float | None = None
    for (rule, group), members in groups.items():
        everyone = [
            c for c in waiting.candidates.values() if c.rule.name == rule and group_of(c) == group
        ]
        due = max(c.first_seen for c in everyone) + members[0].rule.batch_seconds
        if now >= due and len(everyone) == len(members):
            batches.append(sorted(members, key=lambda c: str(c.path)))
            continue
        for cand in members:
            cand.not_before = max(due, now + 0.1)
            cand.reason = HELD.format(cand.rule.batch_seconds)
        wait = max(0.0, due - now)
        next_due = wait if next_due is None else min(next_due, wait)
    return singles, batches, next_due
