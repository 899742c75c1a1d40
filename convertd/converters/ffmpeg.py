"""FFmpeg and ffprobe, run the one safe way: local files only, allow-listed demuxers, no stdin.

Converters assemble what their output needs (maps, codecs, filters, muxer); everything on the
input side (the allow-lists, trimming) and the run itself (progress, errors) is here.

`-protocol_whitelist file` alone does not stop a playlist (HLS, concat) renamed `.mp4` from making
FFmpeg open other files; `-format_whitelist` refuses such demuxers before they read anything.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from convertd import clock, procs
from convertd.converters import media_info
from convertd.converters.base import Task
from convertd.converters.media_info import Probe
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


def _ffprobe_argv(path: Path, demuxers: tuple[str, ...]) -> list[str]:
    return [
        *("ffprobe", "-v", "error"),
        *input_args(path, demuxers),
        "-show_entries",
        "format=duration,format_name:stream=codec_type,codec_name,width,height,"
        "sample_rate,channels,duration,disposition",
        *("-of", "json"),
    ]


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
        return result.returncode == 0 and media_info.from_ffprobe(result.stdout).has(kind)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return False


def too_long(seconds: float, limit: float, *, at_least: bool = False) -> ConversionError:
    """The refusal of media longer than the limit, always with its length; `at_least` when the
    length is what a read got to before it stopped (just past the limit), not the whole."""
    said, allowed = clock.over_limit(seconds, limit)
    if at_least and not said.startswith("just over"):  # "just over" already says as much
        said = f"at least {said}"
    # Not "this server's": `convertd convert` runs no server (its limit is the same setting).
    return ConversionError(
        f"The input lasts {said}, longer than the limit of {allowed} (max_media_seconds)"
    )


async def _real_length(task: Task, demuxers: tuple[str, ...], info: Probe) -> float:
    """How long media whose header claims more than the limit really lasts, or its refusal. A
    header may lie either way (a fragmented MP4 claiming 40 h for 1 s): when it claims too
    much, the packets are read through, without decoding, and their length is what counts;
    when it claims too little, transcode() stops at the limit."""
    limit = task.limits.max_media_seconds
    claimed = info.duration or 0.0
    _, real = await _ffmpeg(
        [
            *input_args(task.input_path, demuxers),
            *("-map", "0", "-c", "copy", "-t", f"{limit + 1:.0f}", "-f", "null"),
        ],
        "-",
        timeout=task.limits.job_timeout_seconds,
        rate=info.frame_rate,
    )
    if clock.past_limit(real, limit):
        # Where the read got as far as the header says (or to its own cap), the header's length
        # is the one said: the read measures the same length a frame's rounding apart, and the
        # same file must always read the same ("5.04 s", never "5.1 s" one time).
        said = claimed if real >= min(claimed, limit + 1) - clock.LENGTH_GRACE else real
        raise too_long(said, limit)
    logger.info("input claims %.0f s but holds %.1f s: converting it", info.duration, real)
    return real


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


# What a converter makes of the input: its output arguments (maps, codecs, filters, muxer),
# given what the input holds, or its best guess before that is known (None). It raises a
# ConversionError for an input it cannot convert (no audio track, a codec a copy cannot hold).
OutputArgs = Callable[[Probe | None], list[str]]


class _Restart(Exception):
    """What FFmpeg said of its input changes the run (other arguments, or a length to check
    first): stop it and start again knowing the input."""

    def __init__(self, info: Probe, *, length_claimed: bool = False) -> None:
        super().__init__("restart")
        self.info = info
        self.length_claimed = length_claimed


async def transcode(
    task: Task, demuxers: tuple[str, ...], kind: str, output_args: OutputArgs, what: str
) -> Path:
    """Run FFmpeg on the task's input (trimmed as its options say) and write the task's output,
    reporting progress; returns the output.

    No ffprobe first: FFmpeg starts with the converter's guess of its arguments, and what it
    prints of its input (before it converts anything) is checked as it arrives: the length
    limit, a trim past the end, the converter's own checks, and whether the arguments still
    hold. Only when they do not (a sample rate to keep through loudnorm, a header claiming more
    than the limit) is FFmpeg stopped and started again; an input FFmpeg cannot open is not
    valid `kind` media. A run that writes no media time at all is an error: never a finished
    job with an empty file."""
    known: Probe | None = None
    real: float | None = None  # the length read through, when the header claimed too much
    while True:
        try:
            return await _transcode(task, demuxers, kind, output_args, what, known, real)
        except _Restart as restart:
            if real is not None or (known is not None and not restart.length_claimed):
                # Started knowing the input, yet it asks again: a second guess would not help.
                raise ConversionError(f"Could not convert this {what}") from None
            if restart.length_claimed:
                real = await _real_length(task, demuxers, restart.info)
            known = restart.info


async def _transcode(
    task: Task,
    demuxers: tuple[str, ...],
    kind: str,
    output_args: OutputArgs,
    what: str,
    known: Probe | None,
    real: float | None,
) -> Path:
    output = task.output_path()
    limit = task.limits.max_media_seconds
    args = output_args(known)
    dump = media_info.InputDump()
    expected: float | None = None

    def on_input(info: Probe) -> None:
        nonlocal expected
        length = real if real is not None else info.duration
        if real is None and length is not None and clock.past_limit(length, limit):
            raise _Restart(info, length_claimed=True)
        start = task.options.get("trim_start") or 0.0
        if length is not None and start >= length:
            raise ConversionError(
                f"trim_start ({start:g} s) is past the end of the input ({clock.duration(length)})"
            )
        if output_args(info) != args:
            raise _Restart(info)
        expected = expected_duration(length, task.options)

    output_rate: float | None = None  # the output's frame rate, from FFmpeg's dump of it
    padding = 0.0  # how far the output's encoders may run past the input

    async def on_stderr_line(line: str) -> None:
        nonlocal output_rate, padding
        if dump.done:  # what follows the input's dump is the output's (its streams' rates)
            output_rate = output_rate or media_info.video_rate(line)
            padding = max(padding, media_info.encoder_padding(line))
        elif (info := dump.feed(line)) is not None:
            on_input(info)

    # A backstop for a header that claims too little: never decode past the limit.
    cap = [] if task.options.get("trim_end") is not None else ["-t", f"{limit + 1:.0f}"]
    result, written = await _run(
        [*input_args(task.input_path, demuxers, task.options), *cap, *args],
        output,
        duration=lambda: expected,
        timeout=task.limits.job_timeout_seconds,
        report=task.report_progress,
        on_stderr_line=on_stderr_line,
        rate=lambda: output_rate,
    )
    if (info := dump.end()) is not None:  # FFmpeg ended before its dump did
        on_input(info)
    if not dump.done:
        raise ConversionError(f"Input is not a valid {kind} file")
    if result.returncode != 0 or not output.exists() or output.stat().st_size == 0:
        # FFmpeg's own words are for the admin; the user hears what they can act on.
        detail = procs.last_error_line(result.stderr, "no message")
        logger.warning("FFmpeg failed on a %s (exit %d): %s", what, result.returncode, detail)
        raise ConversionError(
            f"Could not convert this {what}: it is damaged, or not what its name says"
        )
    if written <= 0:
        raise ConversionError(f"The {what} output would hold nothing: no media was converted")
    if clock.past_limit(read := written - padding, limit):
        # A header that claimed too little: the output, less its encoders' padding, says how
        # much of the input was read, up to the cap.
        raise too_long(read, limit, at_least=True)
    return output


async def _run(
    args: list[str],
    output: Path,
    *,
    duration: Callable[[], float | None],
    timeout: float,
    report: Callable[[int], Awaitable[None]],
    on_stderr_line: Callable[[str], Awaitable[None]],
    rate: Callable[[], float | None],
) -> tuple[procs.Result, float]:
    """Run FFmpeg writing `output`, reporting progress against `duration()` (known once FFmpeg
    has said what its input holds): the run, and how much media the output really holds."""
    last = -1

    async def on_time(seconds: float) -> None:
        nonlocal last
        if not (total := duration()):
            return
        percent = min(99, int(seconds * 100 / total))
        if percent >= last + 5:  # one database write per 5 %, not per progress line
            last = percent
            await report(percent)

    return await _ffmpeg(
        args,
        f"file:{output}",
        timeout=timeout,
        rate=rate,
        on_time=on_time,
        on_stderr_line=on_stderr_line,
    )


async def _ffmpeg(
    args: list[str],
    target: str,
    *,
    timeout: float,
    rate: Callable[[], float | None],
    on_time: Callable[[float], Awaitable[None]] | None = None,
    on_stderr_line: Callable[[str], Awaitable[None]] | None = None,
) -> tuple[procs.Result, float]:
    """Run FFmpeg writing `target`, following its `-progress` stream: (the run, the most media
    time it reported and its video frames at `rate()`, i.e. how much the output holds, as
    media_info.measured_length says). `on_time` hears each report; with
    `on_stderr_line`, FFmpeg prints at info level what it reads (its input dump) and each line
    is handed over."""
    written = 0.0
    frames = 0

    async def on_line(line: str) -> None:
        nonlocal written, frames
        key, _, value = line.partition("=")
        if key == "frame":
            frames = max(frames, int(media_info.number(value) or 0))
        if key != "out_time_us":
            return
        seconds = (media_info.number(value) or 0) / 1_000_000
        written = max(written, seconds)
        if on_time is not None:
            await on_time(seconds)

    level = "info" if on_stderr_line else "error"
    result = await procs.run(
        [
            *("ffmpeg", "-nostdin", "-hide_banner", "-loglevel", level, "-y"),
            *args,
            *("-progress", "pipe:1", "-nostats", target),
        ],
        timeout=timeout,
        on_line=on_line,
        on_stderr_line=on_stderr_line,
    )
    return result, media_info.measured_length(written, frames, rate())
