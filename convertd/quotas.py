"""Per-key call counters for the minute and day windows, checked and bumped atomically.

One write transaction bumps both windows with `INSERT ... ON CONFLICT DO UPDATE ... WHERE count <
limit RETURNING count`: a window at its limit returns no row and the whole transaction is rolled
back, so concurrent calls (from this process or another) can never be admitted past a limit, and
a refused call counts against nothing.
"""

from __future__ import annotations

import dataclasses
import math
import sqlite3

from convertd import clock
from convertd.db import Database
from convertd.errors import RateLimited
from convertd.keys import ApiKey

WINDOWS = {"minute": 60, "day": 86400}


@dataclasses.dataclass(frozen=True)
class WindowUsage:
    window: str
    limit: int | None
    used: int
    reset_at: int  # unix seconds when the window starts again

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.used, 0)

    def headers(self) -> dict[str, str]:
        """The X-RateLimit-* headers; Reset is in unix seconds, as GitHub's API has it."""
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }


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


class _OverLimit(Exception):
    def __init__(self, window: str) -> None:
        self.window = window


def _limit(key: ApiKey, window: str) -> int | None:
    return key.plan.calls_per_minute if window == "minute" else key.plan.calls_per_day


def _window_start(window: str, ts: float) -> int:
    return clock.minute_start(ts) if window == "minute" else clock.day_start(ts)


_BUMP = """INSERT INTO call_counts (key_id, span, span_start, count)
           VALUES (:key_id, :span, :start, 1)
           ON CONFLICT (key_id, span, span_start)
           DO UPDATE SET count = count + 1 WHERE :limit IS NULL OR count < :limit
           RETURNING count"""


async def count_call(db: Database, key: ApiKey) -> Usage:
    """Count one call against the key, or raise RateLimited without counting it."""
    ts = clock.now()

    def bump(conn: sqlite3.Connection) -> dict[str, int]:
        used: dict[str, int] = {}
        for window in WINDOWS:
            limit = _limit(key, window)
            row = conn.execute(
                _BUMP,
                {
                    "key_id": key.id,
                    "span": window,
                    "start": _window_start(window, ts),
                    "limit": limit,
                },
            ).fetchone()
            if row is None or (limit is not None and row[0] > limit):
                raise _OverLimit(window)  # rolls the whole transaction back
            used[window] = row[0]
        conn.execute(
            "UPDATE api_keys SET usage_count = usage_count + 1, last_used_at = ? WHERE id = ?",
            (ts, key.id),
        )
        return used

    try:
        used = await db.run_write(bump)
    except _OverLimit as over:
        limit = _limit(key, over.window) or 0
        full = WindowUsage(
            window=over.window,
            limit=limit,
            used=limit,
            reset_at=_window_start(over.window, ts) + WINDOWS[over.window],
        )
        raise RateLimited(
            f"This key has used all {limit} calls allowed per {over.window}.",
            retry_after=max(1, math.ceil(full.reset_at - ts)),
            hint="Wait the number of seconds in Retry-After, or move the key to a plan with a "
            "higher limit.",
            rate_headers=full.headers(),
        ) from None
    return _usage(key, ts, used)


async def current_usage(db: Database, key: ApiKey) -> Usage:
    """The counts so far in the current windows, without counting a call."""
    ts = clock.now()
    used: dict[str, int] = {}
    for window in WINDOWS:
        row = await db.fetch_one(
            "SELECT count FROM call_counts WHERE key_id = ? AND span = ? AND span_start = ?",
            (key.id, window, _window_start(window, ts)),
        )
        used[window] = row[0] if row else 0
    return _usage(key, ts, used)


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
    async with db.write() as conn:
        await conn.execute("DELETE FROM call_counts WHERE span_start < ?", (int(before),))
