"""Per-key call counts in the minute and day windows, and their table: in memory for one node
(CallCounter), in the database for several (SharedCallCounter); call_counter picks."""

from __future__ import annotations

import dataclasses
import logging

from convertd import clock
from convertd.store.db import Conn, Database, dialect_of
from convertd.store.keys import ApiKey, get_key

logger = logging.getLogger(__name__)

WINDOWS = {"minute": 60, "day": 86400}
FLUSH_SECONDS = 1.0
# How stale a key's last use may be on record when it is used uncounted (CallCounter.seen).
SEEN_EVERY_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class WindowUsage:
    window: str
    limit: int | None
    used: int
    reset_at: int  # unix seconds when the window starts again

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.used, 0)


@dataclasses.dataclass(frozen=True)
class Usage:
    minute: WindowUsage
    day: WindowUsage

    def tightest(self) -> WindowUsage | None:
        """The limited window with the fewest calls left (the sooner reset on a tie)."""
        limited = [w for w in (self.minute, self.day) if w.limit is not None]
        if not limited:
            return None
        return min(limited, key=lambda w: (w.remaining, w.reset_at))


class QuotaExceeded(Exception):
    """A call was refused, uncounted: `window` is full until `window.reset_at`."""

    def __init__(self, window: WindowUsage, at: float) -> None:
        super().__init__(f"{window.limit} calls per {window.window} used")
        self.window = window
        self.at = at


def _limit(key: ApiKey, window: str) -> int | None:
    return key.plan.calls_per_minute if window == "minute" else key.plan.calls_per_day


def _window_start(window: str, ts: float) -> int:
    return clock.minute_start(ts) if window == "minute" else clock.day_start(ts)


def _window_starts(ts: float) -> dict[str, int]:
    """When each window that `ts` falls in began."""
    return {w: _window_start(w, ts) for w in WINDOWS}


class CallCounter:
    """Counts every authenticated call per key in its minute and day windows.

    The counts in memory are the authority: one daemon owns a data dir (server.py locks it), and
    a call is checked and counted with no await in between, so concurrent calls can never be
    admitted past a limit and a refused call counts against nothing. `flush()`, run every
    FLUSH_SECONDS and at shutdown, writes the counts and each key's usage to SQLite in one
    transaction, so a restart carries on the windows where they were; a crash forgets at most
    the last second. Keeping SQLite out of each call is what lets status polling run at
    thousands per second. (A database several nodes share counts in the database instead:
    SharedCallCounter.)
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._counts: dict[tuple[int, str, int], int] = {}
        self._dirty: set[tuple[int, str, int]] = set()
        # key id -> (calls not yet added to api_keys.usage_count, time of the latest call)
        self._calls: dict[int, tuple[int, float]] = {}
        self._writing: dict[int, tuple[int, float]] = {}  # being written by a flush
        self._flushes = 0  # flushes written so far

    async def _load(self, key_id: int, starts: dict[str, int]) -> None:
        wanted = [(key_id, w, start) for w, start in starts.items()]
        if all(k in self._counts for k in wanted):
            return
        rows = await self.db.fetch_all(
            "SELECT span, span_start, count FROM call_counts WHERE key_id = ? AND "
            "((span = 'minute' AND span_start = ?) OR (span = 'day' AND span_start = ?))",
            (key_id, starts["minute"], starts["day"]),
        )
        stored = {(key_id, row[0], row[1]): row[2] for row in rows}
        for k in wanted:
            # Another call may have loaded and counted this window while we read: keep its count.
            # (And a flush may have forgotten a window that ended meanwhile: bring it back.)
            self._counts.setdefault(k, stored.get(k, 0))

    async def count(self, key: ApiKey, calls: int = 1) -> Usage:
        """Count `calls` calls against the key, or raise QuotaExceeded without counting any."""
        ts = clock.now()
        starts = _window_starts(ts)
        await self._load(key.id, starts)
        # No await from here on: the check and the bump are one step for the event loop.
        for window, start in starts.items():
            limit = _limit(key, window)
            if limit is not None and self._counts[(key.id, window, start)] + calls > limit:
                so_far = self._counts[(key.id, window, start)]
                full = WindowUsage(window, limit, so_far, start + WINDOWS[window])
                raise QuotaExceeded(full, ts)
        used = {}
        for window, start in starts.items():
            k = (key.id, window, start)
            self._counts[k] += calls
            self._dirty.add(k)
            used[window] = self._counts[k]
        pending, _ = self._calls.get(key.id, (0, ts))
        self._calls[key.id] = (pending + calls, ts)
        return _usage(key, ts, used)

    def seen(self, key: ApiKey) -> None:
        """A use of the key that no plan counts (a Prometheus scrape): its last use, written
        with the next flush as a counted call's is, and only if the one on record is older
        than SEEN_EVERY_SECONDS (a scrape every 15 s is not a write every 15 s)."""
        ts = clock.now()
        if key.id in self._calls or (key.last_used_at or 0.0) > ts - SEEN_EVERY_SECONDS:
            return
        self._calls[key.id] = (0, ts)

    async def usage(self, key: ApiKey) -> Usage:
        """The counts so far in the current windows, without counting a call."""
        ts = clock.now()
        starts = _window_starts(ts)
        await self._load(key.id, starts)
        return _usage(key, ts, {w: self._counts[(key.id, w, s)] for w, s in starts.items()})

    async def key_with_usage(self, key_id: int) -> ApiKey | None:
        """The key as stored, with `usage_count` and `last_used_at` counting the calls not yet
        written: exact, and a read only (it answers when the disk is full)."""
        for _ in range(5):
            generation = self._flushes
            pending = dict(self._calls)
            pending.update(self._writing)
            key = await get_key(self.db, key_id)
            if self._flushes == generation:  # no flush landed between the two looks
                break
        if key is None:
            return None
        calls, latest = pending.get(key_id, (0, 0.0))
        return dataclasses.replace(
            key,
            usage_count=key.usage_count + calls,
            last_used_at=max(key.last_used_at or 0.0, latest) or None,
        )

    async def flush(self) -> None:
        """Write the counts and usage gathered since the last flush, in one transaction."""
        if not self._dirty and not self._calls:
            return
        counts = [(*k, self._counts[k]) for k in self._dirty]
        calls = self._calls
        self._dirty, self._calls, self._writing = set(), {}, calls

        def write(conn: Conn) -> None:
            greatest = dialect_of(conn).greatest
            conn.executemany(
                "INSERT INTO call_counts (key_id, span, span_start, count) VALUES (?, ?, ?, ?) "  # noqa: S608
                "ON CONFLICT (key_id, span, span_start) DO UPDATE "
                f"SET count = {greatest}(call_counts.count, excluded.count)",
                counts,
            )
            conn.executemany(
                "UPDATE api_keys SET usage_count = usage_count + ?, "  # noqa: S608
                f"last_used_at = {greatest}(coalesce(last_used_at, 0), ?) WHERE id = ?",
                [(n, last, key_id) for key_id, (n, last) in calls.items()],
            )

        try:
            await self.db.write(write)
            self._flushes += 1
        except BaseException:
            # Not written: keep it for the next flush (counts only grow; usage adds up).
            self._dirty.update(k[:3] for k in counts)
            for key_id, (n, last) in calls.items():
                pending, latest = self._calls.get(key_id, (0, last))
                self._calls[key_id] = (pending + n, max(last, latest))
            raise
        finally:
            self._writing = {}
        self._forget_ended_windows()

    def _forget_ended_windows(self) -> None:
        ts = clock.now()
        current = _window_starts(ts)
        for k in [k for k in self._counts if k[2] < current[k[1]] and k not in self._dirty]:
            del self._counts[k]


# What a window with no limit is checked against in SQL (a count never gets near it).
NO_LIMIT = 2**62


class SharedCallCounter(CallCounter):
    """CallCounter for a database several nodes share (PostgreSQL): the counts in the database
    are the authority, as no node can see another's memory.

    `count` is one write, one statement: an upsert of both windows' rows that adds the calls
    only where the sum stays within the window's limit, and returns the rows it bumped. It runs
    READ COMMITTED (`contended`): the upsert locks each row it updates, so a second node's
    upsert of the same row waits, then checks its limit against the count the first one
    committed; the first call of a window races on the primary key, and ON CONFLICT turns the
    loser's insert into that same checked update. Both rows are locked in the same order
    (minute, day), so two calls never wait on each other in a loop. If either window refuses,
    the write raises and is rolled back: a refused call counts against nothing, in neither
    window. A counted call costs one short write (about 1 ms on a local server, and a node's
    writes queue behind one another), where CallCounter's costs none; a refused one reads the
    count it was refused at.

    The windows are each node's clock's: keep the nodes' clocks in step (NTP), or a call near a
    minute's edge is counted in the window its node believes in.

    The key's usage_count and last_used_at limit nothing, so they stay batched in each node and
    are added by `flush` as CallCounter's are (each node adds only its own calls: the sum is
    exact, up to a second behind). `_counts` stays empty here, so `flush` writes no counts.
    """

    async def count(self, key: ApiKey, calls: int = 1) -> Usage:
        """Count `calls` calls against the key, or raise QuotaExceeded without counting any."""
        ts = clock.now()
        starts = _window_starts(ts)
        limits = {w: _limit(key, w) for w in WINDOWS}

        def write(conn: Conn) -> dict[str, int]:
            rows = conn.execute(
                "INSERT INTO call_counts (key_id, span, span_start, count) "
                "VALUES (?, 'minute', ?, ?), (?, 'day', ?, ?) "
                "ON CONFLICT (key_id, span, span_start) DO UPDATE "
                "SET count = call_counts.count + excluded.count "
                "WHERE call_counts.count + excluded.count <= CASE excluded.span "
                "WHEN 'minute' THEN CAST(? AS BIGINT) ELSE CAST(? AS BIGINT) END "
                "RETURNING span, count",
                (
                    key.id,
                    starts["minute"],
                    calls,
                    key.id,
                    starts["day"],
                    calls,
                    _or_no_limit(limits["minute"]),
                    _or_no_limit(limits["day"]),
                ),
            ).fetchall()
            used = {row[0]: int(row[1]) for row in rows}
            for window, start in starts.items():
                limit = limits[window]
                if window in used and (limit is None or used[window] <= limit):
                    continue
                # Refused: no row back (the count stays as it was: read it), or the window's
                # first call inserted past its limit (an insert checks nothing; none before).
                so_far = (
                    used[window] - calls if window in used else _stored(conn, key, start, window)
                )
                raise QuotaExceeded(WindowUsage(window, limit, so_far, start + WINDOWS[window]), ts)
            return used

        used = await self.db.write(write, contended=True)
        pending, _ = self._calls.get(key.id, (0, ts))
        self._calls[key.id] = (pending + calls, ts)
        return _usage(key, ts, used)

    async def usage(self, key: ApiKey) -> Usage:
        """The counts so far in the current windows, all nodes' calls, without counting one."""
        ts = clock.now()
        starts = _window_starts(ts)
        rows = await self.db.fetch_all(
            "SELECT span, count FROM call_counts WHERE key_id = ? AND "
            "((span = 'minute' AND span_start = ?) OR (span = 'day' AND span_start = ?))",
            (key.id, starts["minute"], starts["day"]),
        )
        stored = {row[0]: int(row[1]) for row in rows}
        return _usage(key, ts, {w: stored.get(w, 0) for w in WINDOWS})


def _or_no_limit(limit: int | None) -> int:
    return NO_LIMIT if limit is None else limit


def _stored(conn: Conn, key: ApiKey, start: int, window: str) -> int:
    row = conn.execute(
        "SELECT count FROM call_counts WHERE key_id = ? AND span = ? AND span_start = ?",
        (key.id, window, start),
    ).fetchone()
    return 0 if row is None else int(row[0])


def call_counter(db: Database) -> CallCounter:
    """The counter for this database: in memory for SQLite (one daemon owns the data dir), in
    the database for PostgreSQL (several nodes may share it)."""
    return SharedCallCounter(db) if db.shared else CallCounter(db)


def _usage(key: ApiKey, ts: float, used: dict[str, int]) -> Usage:
    def window_usage(window: str) -> WindowUsage:
        return WindowUsage(
            window=window,
            limit=_limit(key, window),
            used=used[window],
            reset_at=_window_start(window, ts) + WINDOWS[window],
        )

    return Usage(minute=window_usage("minute"), day=window_usage("day"))


async def prune_counters(db: Database, before: float) -> None:
    """Forget windows that ended before `before`; they no longer limit anything."""
    await db.write(
        lambda conn: conn.execute("DELETE FROM call_counts WHERE span_start < ?", (int(before),))
    )
