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
BLOCKED = "settled; in a batch, waiting for {} to settle"


def group_of(cand: Candidate) -> str:
    """The batch a file belongs to: its top-level folder under the rule's, or "" (loose)."""
    relative = PurePosixPath(cand.path.relative_to(cand.rule.folder).as_posix())
    return relative.parts[0] if len(relative.parts) > 1 else ""


def split_batches(
    waiting: Waiting, ready: list[Candidate]
) -> tuple[list[Candidate], list[list[Candidate]], float | None]:
    """(the ready files to take one by one, the batches complete now, seconds until a held
    batch is due). A batch is complete when each of its files has settled and none has come
    for `batch_seconds`; until then its settled files are held, not checked again, until the
    batch is due (or, while one of them still changes, every `batch_seconds`)."""
    now = time.monotonic()
    singles = [c for c in ready if not c.rule.merge]
    touched = set()
    for cand in ready:
        if cand.rule.merge:
            cand.settled = True
            touched.add((cand.rule.name, group_of(cand)))
    if not touched:
        return singles, [], None
    groups: dict[tuple[str, str], list[Candidate]] = {}
    for cand in waiting.candidates.values():
        if cand.rule.merge and (key := (cand.rule.name, group_of(cand))) in touched:
            groups.setdefault(key, []).append(cand)
    batches: list[list[Candidate]] = []
    next_due: float | None = None
    for members in groups.values():
        seconds = members[0].rule.batch_seconds
        due = max(c.first_seen for c in members) + seconds
        unsettled = [c for c in members if not c.settled]
        if not unsettled and now >= due:
            batches.append(sorted(members, key=lambda c: str(c.path)))
            continue
        wake = due if not unsettled else now + seconds
        reason = BLOCKED.format(unsettled[0].path.name) if unsettled else HELD.format(seconds)
        for cand in members:
            if cand.settled:
                cand.not_before, cand.reason = wake, reason
        next_due = min(next_due if next_due is not None else wake - now, wake - now)
    return singles, batches, None if next_due is None else max(0.0, next_due)
