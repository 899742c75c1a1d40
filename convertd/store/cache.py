"""Keys and jobs as the read path asks for them (every authenticated call, every status poll),
kept in memory only while nothing at all has been committed to the database since they were
read.

`Database.committed()` changes with every commit, by any process: this daemon's writer (a
worker's progress, a job's end, the admin API), the `convertd` CLI on the same data dir, or raw
SQL. So a key revoked or moved to another plan, a plan changed, a job that moved on, is read
again by the first request after the commit, and a request never sees a state older than the
database's when it arrived. No table, trigger or announcement has to name what changed: any
commit forgets everything, which is cheap (a key and a job row read again), and the common
case, thousands of polls between two commits, reads nothing. Where the engine cannot tell
(PostgreSQL: committed() is None), every read goes to the database, as without this.
"""

from __future__ import annotations

import asyncio

from convertd.store import jobs, keys
from convertd.store.db import Database

# Bounds the memory a flood of distinct keys or job ids could take: past it, start again.
MAX_ENTRIES = 10_000


class ReadCache:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._committed: int | None = None
        self._keys: dict[str, keys.ApiKey] = {}  # by the secret's hash (never the secret)
        self._jobs: dict[str, jobs.Job] = {}
        self._turn_mark: int | None = None
        self._asked = False  # this turn of the event loop

    def _mark(self) -> int | None:
        """`committed()`, asked at most once per turn of the event loop (the PRAGMA and its two
        fcntl locks are ~4 us; a status read asked twice, for its key and its job, and a busy
        turn runs several reads). Sound because the loop runs its callbacks first in, first
        out: the callback that forgets the mark is queued when the mark is taken, so only
        callbacks queued before then see it, and what queued them (a request's bytes, a read's
        end, a timer) happened before the mark was taken."""
        if not self._asked:
            self._turn_mark, self._asked = self.db.committed(), True
            asyncio.get_running_loop().call_soon(self._end_turn)
        return self._turn_mark

    def _end_turn(self) -> None:
        self._asked = False

    def _now(self) -> int | None:
        """The database's commit mark now, forgetting everything read before it changed."""
        committed = self._mark()
        if committed is None or committed != self._committed:
            self._keys.clear()
            self._jobs.clear()
            self._committed = committed
        return committed

    def _keep(self, seen: int, table: dict[str, keys.ApiKey] | dict[str, jobs.Job]) -> bool:
        """Whether what was read from the mark `seen` on may be kept: nothing was committed
        while it was read (a commit then may or may not be in it)."""
        if self._mark() != seen or self._committed != seen:
            return False
        if len(table) >= MAX_ENTRIES:
            table.clear()
        return True

    async def key(self, secret: str) -> keys.ApiKey | None:
        """keys.find_by_secret, from memory while nothing was committed."""
        seen = self._now()
        if seen is None:
            return await keys.find_by_secret(self.db, secret)
        digest = keys.secret_hash(secret)
        if (known := self._keys.get(digest)) is not None:
            return known
        key = await keys.find_by_secret(self.db, secret)
        if key is not None and self._keep(seen, self._keys):
            self._keys[digest] = key  # an unknown or revoked key is not kept: asked each time
        return key

    async def job(self, job_id: str) -> jobs.Job | None:
        """jobs.get, from memory while nothing was committed."""
        seen = self._now()
        if seen is None:
            return await jobs.get(self.db, job_id)
        if (known := self._jobs.get(job_id)) is not None:
            return known
        job = await jobs.get(self.db, job_id)
        if job is not None and self._keep(seen, self._jobs):
            self._jobs[job_id] = job
        return job
