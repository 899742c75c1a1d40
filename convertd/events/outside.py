"""Ends that no one in this daemon announces: a job or /v2 task cancelled by another process
(`convertd keys revoke` on the same data dir, raw SQL) ends without a word to this daemon's
waits, so a `?wait=` or `/sync/v2` wait on it would last its whole timeout. Once a second,
while any wait is open and (on SQLite) anything was committed since the last look, the waited
jobs and tasks that have ended are announced. Whatever ends in this daemon, or on another
node, is announced at once by whoever ends it; this is only the net under the rest, and costs
nothing while no one waits."""

from __future__ import annotations

from convertd.changes import Changes
from convertd.store import job_lists
from convertd.store.db import Database

SWEEP_SECONDS = 1.0
# The waits one sweep looks at (an IN list): more are looked at in later sweeps.
MAX_SUBJECTS = 500


class OutsideEnds:
    def __init__(self, db: Database, changes: Changes) -> None:
        self.db = db
        self.changes = changes
        self._looked_at: int | None = None  # the commit mark of the last look
        self._next = 0  # where the next sweep starts, when more than MAX_SUBJECTS wait

    async def sweep(self) -> None:
        waited = self.changes.waited()
        if not waited:
            return
        mark = self.db.committed()
        if mark is not None and mark == self._looked_at and len(waited) <= MAX_SUBJECTS:
            return  # nothing committed since the last look: nothing can have ended
        self._looked_at = mark  # taken before the read: a commit during it is looked at again
        start = self._next if self._next < len(waited) else 0
        batch = waited[start : start + MAX_SUBJECTS]
        self._next = start + len(batch)
        if ended := await job_lists.ended_among(self.db, batch):
            self.changes.changed(*ended)
