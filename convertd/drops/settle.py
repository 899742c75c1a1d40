"""Settling: a candidate is ready once its size and modification time have stood still across
two checks at least `drop_settle_seconds` apart, and no process has it open for writing, so
nothing half-written is taken.

A candidate is checked when it is due (the settle time after it was last seen changing, or the
end of its back-off), not at the tick of a clock: a file is taken as soon as it has been still
for the settle time, and files that are not due cost nothing.
"""

from __future__ import annotations

import asyncio
import os
import time

from convertd.drops.openfiles import open_for_writing
from convertd.drops.places import display
from convertd.drops.waiting import Candidate, Waiting

# Timers may fire a hair early; checking this much late is sure to find the window complete.
DUE_MARGIN_SECONDS = 0.01


def due_at(cand: Candidate, settle_seconds: float) -> float:
    return max(cand.not_before, cand.stable_since + settle_seconds)


async def settled(
    waiting: Waiting, settle_seconds: float, max_wait_seconds: float
) -> tuple[list[Candidate], float | None]:
    """Check the candidates that are due: (those that have settled, oldest first; seconds until
    the next one is due, or None when nothing is waiting)."""
    now = time.monotonic()
    ready: list[Candidate] = []
    identity: dict[int, tuple[int, int]] = {}  # id(candidate) -> (st_dev, st_ino)
    for path, cand in list(waiting.candidates.items()):
        if now < due_at(cand, settle_seconds):
            continue
        try:
            st = await asyncio.to_thread(os.stat, path, follow_symlinks=False)
        except FileNotFoundError:
            del waiting.candidates[path]
            continue
        except OSError as exc:
            waiting.skip(cand.rule, display(path), f"cannot read it: {exc}")
            continue
        if (st.st_size, st.st_mtime_ns) != (cand.size, cand.mtime_ns):
            cand.size, cand.mtime_ns = st.st_size, st.st_mtime_ns
            cand.stable_since, cand.checks = now, 1
            cand.settled, cand.reason = False, ""
        else:
            cand.checks += 1
        if cand.checks >= 2 and now - cand.stable_since >= settle_seconds:
            ready.append(cand)
            identity[id(cand)] = (st.st_dev, st.st_ino)
        elif now - cand.first_seen > max_wait_seconds:
            cand.reason = f"still changing after {max_wait_seconds:.0f} s; taken once it stops"
    if ready:
        writing = await asyncio.to_thread(open_for_writing)
        for cand in [c for c in ready if identity[id(c)] in writing]:
            ready.remove(cand)
            # Open but idle: it must stand still for the settle time after it is closed.
            cand.stable_since, cand.checks = now, 1
            cand.reason = "still open for writing by a program; taken once it is closed"
    ready.sort(key=lambda c: (c.first_seen, str(c.path)))
    later = [due_at(c, settle_seconds) for c in waiting.candidates.values() if c not in ready]
    if not later:
        return ready, None
    return ready, max(0.0, min(later) - time.monotonic()) + DUE_MARGIN_SECONDS
