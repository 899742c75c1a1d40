"""Time as convertd stores and shows it: unix seconds inside, UTC ISO-8601 text outside."""

from __future__ import annotations

import datetime as dt
import time


def now() -> float:
    return time.time()


def iso(ts: float | None) -> str | None:
    """UTC time as the seed API shows it: `2026-03-27T10:14:55` (no offset; always UTC)."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def minute_start(ts: float) -> int:
    return int(ts) - int(ts) % 60


def day_start(ts: float) -> int:
    return int(ts) - int(ts) % 86400
