"""FFmpeg and ffprobe, run the one safe way: local files only, allow-listed demuxers, no stdin.

Converters assemble what their output needs (maps, codecs, filters, muxer); everything on the
input side (the allow-lists, trimming) and the run itself (progress, errors) is here.

`-protocol_whitelist file` alone does not stop a playlist (HLS, concat) renamed `.mp4` from making
FFmpeg open other files; `-format_whitelist` refuses such demuxers before they read anything.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from convertd import procs
from convertd.converters.base import Task
from convertd.errors import ConversionError

logger = logging.getLogger(__name__)

# Demuxers convertd lets FFmpeg use. Playlist and list demuxers (hls, concat, dash, image2,
# ffmetadata, ...) are deliberately absent.
# Single-stream audio demuxers besides the usual: amr is phones' voice recordings (a .3ga is
# AMR in 3GP, read by mov); ac3, eac3 and dts come from films; wv, tta, caf and au from audio
# tools; mp2 is read by mp3.
AUDIO_DEMUXERS = (
    *("mp3", "wav", "ogg", "flac", "aac", "mov", "asf", "aiff", "matroska", "w64", "amr"),
    *("ac3", "eac3", "dts", "wv", "tta", "caf", "au"),
)
PROBE_BY_CONTENT_SECONDS = 15.0
VIDEO_DEMUXERS = ("mov", "matroska", "avi", "flv", "asf", "mpeg", "mpegts", "h263")


def input_args(
    path: Path, demuxers: tuple[str, ...], options: dict[str, Any] | None = None
) -> list[str]:
    """Input flags; with options, trimming is applied (seek before -i, length after it)."""
    before, after = trim_args(options or {})
    return [
        *before,
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        ",".join(demuxers),
        "-i",
        f"file:{path}",
        *after,
    ]


@dataclasses.dataclass(frozen=True)
class Probe:
    duration: float | None
    format_name: str
    streams: list[dict[str, Any]]

    def has(self, codec_type: str) -> bool:
        return any(s.get("codec_type") == codec_type for s in self.streams)

    def codec(self, codec_type: str) -> str | None:
        """The first `codec_type` stream's codec, as ffprobe names it (h264, aac, ...)."""
        for stream in self.streams:
            if stream.get("codec_type") == codec_type:
                return str(stream.get("codec_name") or "") or None
        return None

    def sample_rate(self) -> int | None:
        """The first audio stream's sample rate, if ffprobe says."""
        for stream in self.streams:
            if stream.get("codec_type") == "audio":
                rate = _float(stream.get("sample_rate"))
                return int(rate) if rate else None
        return None


def _ffprobe_argv(path: Path, demuxers: tuple[str, ...]) -> list[str]:
    return [
        *("ffprobe", "-v", "error"),
        *input_args(path, demuxers),
        "-show_entries",
        "format=duration,format_name:stream=codec_type,codec_name,width,height,"
        "sample_rate,channels,duration,disposition",
        *("-of", "json"),
    ]


def _parse_probe(stdout: bytes) -> Probe:
    """ffprobe's JSON as a Probe (ValueError if it is not that JSON)."""
    data = json.loads(stdout or b"{}")
    if not isinstance(data, dict):
        raise ValueError("not ffprobe's JSON")
    fmt = data.get("format") or {}
    streams = data.get("streams") or []
    # Cover art arrives as a one-frame "video" stream: it is not video.
    streams = [s for s in streams if not (s.get("disposition") or {}).get("attached_pic")]
    duration = _float(fmt.get("duration"))
    return Probe(duration=duration, format_name=str(fmt.get("format_name", "")), streams=streams)


def holds(path: Path, demuxers: tuple[str, ...], kind: str) -> bool:
    """Whether ffprobe, through the same allow-list, finds a `kind` stream in the file: for a
    file whose name says nothing convertd knows. Blocking (run it in a thread)."""
    try:
        result = subprocess.run(
            procs.tied_to_parent(procs.niced(_ffprobe_argv(path, demuxers))),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_BY_CONTENT_SECONDS,
            start_new_session=True,
            check=False,
        )
        return result.returncode == 0 and _parse_probe(result.stdout).has(kind)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return False


async def probe(path: Path, demuxers: tuple[str, ...], kind: str, timeout: float) -> Probe:
    """What ffprobe sees in the file, or a ConversionError saying it is not valid `kind` media."""
    result = await procs.run(
        _ffprobe_argv(path, demuxers), timeout=min(timeout, 60), capture_stdout=True
    )
    if result.returncode != 0:
        raise ConversionError(f"Input is not a valid {kind} file")
    try:
        return _parse_probe(result.stdout)
    except ValueError:
        raise ConversionError(f"Input is not a valid {kind} file") from None


def _too_long(seconds: float, limit: float) -> ConversionError:
    return ConversionError(
        f"The input lasts {seconds / 3600:.1f} h, longer than this server's limit of "
        f"{limit / 3600:.1f} h"
    )


async def check_duration(task: Task, demuxers: tuple[str, ...], info: Probe) -> Probe:
    """Refuse media longer than the limit, by what it really holds. A header may lie either way
    (a fragmented MP4 claiming 40 h for 1 s): when it claims too much, the packets are read
    through, without decoding, and their length is what counts; when it claims too little,
    transcode() stops at the limit."""
    limit = task.limits.max_media_seconds
    if info.duration is None or info.duration <= limit:
        return info
    _, real = await _ffmpeg(
        [
            *input_args(task.input_path, demuxers),
            *("-map", "0", "-c", "copy", "-t", f"{limit + 1:.0f}", "-f", "null"),
        ],
        "-",
        timeout=task.limits.job_timeout_seconds,
    )
    if real > limit:
        raise _too_long(real, limit)
    logger.info("input claims %.0f s but holds %.1f s: converting it", info.duration, real)
    return dataclasses.replace(info, duration=real)


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and number >= 0 else None  # NaN-safe


def trim_args(options: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(input args, output args) for trimming. Seeking on the input is fast, and exact when
    transcoding; the length then goes on the output, whose clock starts at the seek point."""
    start, end = options.get("trim_start"), options.get("trim_end")
    before = ["-ss", f"{start:.3f}"] if start else []
    after = ["-t", f"{end - (start or 0):.3f}"] if end is not None else []
    return before, after


def expected_duration(source: float | None, options: dict[str, Any]) -> float | None:
    if source is None:
        return None
    start = options.get("trim_start") or 0.0
    end = min(options.get("trim_end") or source, source)
    return max(end - start, 0.0)


async def transcode(
    task: Task, demuxers: tuple[str, ...], info: Probe, output_args: list[str], what: str
) -> Path:
    """Run FFmpeg on the task's input (trimmed as its options say) with `output_args` (maps,
    codecs, filters, muxer: what the converter assembled for its output) and write the task's
    output, reporting progress; returns the output. A trim that starts past the end, or a run
    that writes no media time at all, is an error: never a finished job with an empty file."""
    start = task.options.get("trim_start") or 0.0
    if info.duration is not None and start >= info.duration:
        raise ConversionError(
            f"trim_start ({start:g} s) is past the end of the input ({info.duration:.3g} s)"
        )
    output = task.output_path()
    limit = task.limits.max_media_seconds
    # A backstop for a header that claims too little: never decode past the limit.
    cap = [] if task.options.get("trim_end") is not None else ["-t", f"{limit + 1:.0f}"]
    written = await _run(
        [*input_args(task.input_path, demuxers, task.options), *cap, *output_args],
        output,
        duration=expected_duration(info.duration, task.options),
        timeout=task.limits.job_timeout_seconds,
        report=task.report_progress,
        what=what,
    )
    if written > limit:
        raise _too_long(written, limit)
    return output


async def _run(
    args: list[str],
    output: Path,
    *,
    duration: float | None,
    timeout: float,
    report: Callable[[int], Awaitable[None]],
    what: str,
) -> float:
    """Run FFmpeg writing `output`, reporting progress; returns how much media the output
    really holds."""
    last = -1

    async def on_time(seconds: float) -> None:
        nonlocal last
        if not duration:
            return
        percent = min(99, int(seconds * 100 / duration))
        if percent >= last + 5:  # one database write per 5 %, not per progress line
            last = percent
            await report(percent)

    result, written = await _ffmpeg(args, f"file:{output}", timeout=timeout, on_time=on_time)
    if result.returncode != 0 or not output.exists() or output.stat().st_size == 0:
        # FFmpeg's own words are for the admin; the user hears what they can act on.
        detail = procs.last_error_line(result.stderr, "no message")
        logger.warning("FFmpeg failed on a %s (exit %d): %s", what, result.returncode, detail)
        raise ConversionError(
            f"Could not convert this {what}: it is damaged, or not what its name says"
        )
    if written <= 0:
        raise ConversionError(f"The {what} output would hold nothing: no media was converted")
    return written


async def _ffmpeg(
    args: list[str],
    target: str,
    *,
    timeout: float,
    on_time: Callable[[float], Awaitable[None]] | None = None,
) -> tuple[procs.Result, float]:
    """Run FFmpeg writing `target`, following its `-progress` stream: (the run, the most media
    time it reported, i.e. how much the output holds). `on_time` hears each report."""
    written = 0.0

    async def on_line(line: str) -> None:
        nonlocal written
        key, _, value = line.partition("=")
        if key != "out_time_us":
            return
        seconds = (_float(value) or 0) / 1_000_000
        written = max(written, seconds)
        if on_time is not None:
            await on_time(seconds)

    result = await procs.run(
        [
            *("ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"),
            *args,
            *("-progress", "pipe:1", "-nostats", target),
        ],
        timeout=timeout,
        on_line=on_line,
    )
    return result, written
