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


# Encoders pad a clip's end to a whole frame and more, and a header's length (or FFmpeg's measure
# of what it wrote) counts the padding: inputs made with `-t 5` claim 5.008 s (VP8/Opus WebM),
# 5.04 s (MP3 at 32-48 kHz, alone or in AVI), up to 5.14 s at 11-22 kHz, on Debian's FFmpeg 5.1
# (MP3 at 8 kHz pads 0.14-0.2 s, past what this allows). Up to this much past the limit, a
# length is the limit itself; from 0.2 s past it, it is over. One allowance for every length
# convertd holds to max_media_seconds: a header's, a read-through's, a measured output's.
LENGTH_GRACE = 0.19


def past_limit(seconds: float, limit: float) -> bool:
    """Whether a length (a header's, a read-through's or a measure of FFmpeg's output) passes a
    limit that reads "at most": equal is within it, and so is an encoder's padding."""
    return seconds > limit + LENGTH_GRACE
