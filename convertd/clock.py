"""Time as convertd stores and shows it: unix seconds inside, UTC ISO-8601 text outside."""

from __future__ import annotations

import datetime as dt
import functools
import time


def now() -> float:
    return time.time()


# Memoised: a status poll shows the same two or three instants of a job thousands of times, and
# formatting one costs more than the rest of its fields together.
@functools.lru_cache(maxsize=4096)
def iso(ts: float | None) -> str | None:
    """UTC time as the seed API shows it: `2026-03-27T10:14:55` (no offset; always UTC)."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def minute_start(ts: float) -> int:
    return int(ts) - int(ts) % 60


def day_start(ts: float) -> int:
    return int(ts) - int(ts) % 86400
