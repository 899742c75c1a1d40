"""Settling: a candidate is ready once its size and modification time have stood still across
two checks at least `drop_settle_seconds` apart, so nothing half-written is taken."""

from __future__ import annotations

import asyncio
import os
import time

from convertd.drops.places import display
from convertd.drops.waiting import Candidate, Waiting


async def settled(
    waiting: Waiting, settle_seconds: float, max_wait_seconds: float
) -> list[Candidate]:
    """Check every candidate once; those that have settled, oldest first."""
    now = time.monotonic()
    ready: list[Candidate] = []
    for path, cand in list(waiting.candidates.items()):
        if now < cand.not_before:
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
        else:
            cand.checks += 1
        if cand.checks >= 2 and now - cand.stable_since >= settle_seconds:
            ready.append(cand)
        elif now - cand.first_seen > max_wait_seconds:
            cand.reason = f"still changing after {max_wait_seconds:.0f} s; taken once it stops"
    return sorted(ready, key=lambda c: (c.first_seen, str(c.path)))
