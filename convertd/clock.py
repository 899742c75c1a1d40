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


def duration(seconds: float) -> str:
    """A length of time as people say it, for messages: "30 s", "20.4 s", "6 min 5 s", "6 h 2
    min". Tenths only under a minute; above it, every unit down to the second, so that a length
    just over a limit never reads the same as the limit ("6 h 20 s" against "6 h")."""
    if round(seconds, 1) < 60:
        return f"{round(seconds, 1):g} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    parts = ((hours, "h"), (minutes, "min"), (secs, "s"))
    return " ".join(f"{n} {unit}" for n, unit in parts if n)


def over_limit(seconds: float, limit: float) -> tuple[str, str]:
    """A length refused for passing a limit, and the limit, as `duration` says them; one just
    over it (20.04 s against 20 s) to the hundredth, never "20 s, longer than 20 s"."""
    said, allowed = duration(seconds), duration(limit)
    if said == allowed:
        said = f"just over {allowed} ({seconds:.2f} s)"
    return said, allowed


# A length measured from FFmpeg's output (the last timestamp it wrote) passes the input's own
# by the encoder's last frame and priming: 0-96 ms on Debian's FFmpeg 5.1 for inputs of exactly
# 20.000 s (AAC at 8 kHz the most; Opus in WebM 34 ms, MP3 11 ms). Up to this much past the
# limit, such a measure is the limit itself: a clip of exactly the limit was refused by it.
MEASURE_SLACK = 0.25


def measured_past(seconds: float, limit: float) -> bool:
    """Whether a length measured from FFmpeg's output (not a header's) passes a limit that
    reads "at most": equal is within it, and so is the encoder's overshoot."""
    return seconds > limit + MEASURE_SLACK
