"""What a media file holds (its length, its streams and their codecs), as ffprobe's JSON says
it or as FFmpeg itself prints it on opening the file.

A conversion reads it from FFmpeg's own run: FFmpeg prints its input (`Input #0 ...`,
`Duration: ...`, one `Stream #0:n: Video: h264 ...` line each) before it converts anything, so
a second process (ffprobe, 70-110 ms a job) only to learn the same is not needed. Both sources
give the same figures: FFmpeg's dump and ffprobe read the same fields of the same demuxer.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any


@dataclasses.dataclass(frozen=True)
class Probe:
    duration: float | None
    format_name: str
    streams: list[dict[str, Any]]

    def has(self, codec_type: str) -> bool:
        return any(s.get("codec_type") == codec_type for s in self.streams)

    def codec(self, codec_type: str) -> str | None:
        """The first `codec_type` stream's codec, as FFmpeg names it (h264, aac, ...)."""
        for stream in self.streams:
            if stream.get("codec_type") == codec_type:
                return str(stream.get("codec_name") or "") or None
        return None

    def sample_rate(self) -> int | None:
        """The first audio stream's sample rate, if known."""
        for stream in self.streams:
            if stream.get("codec_type") == "audio":
                rate = number(stream.get("sample_rate"))
                return int(rate) if rate else None
        return None

    def frame_rate(self) -> float | None:
        """The first video stream's frames per second, if FFmpeg's dump said it."""
        for stream in self.streams:
            if stream.get("codec_type") == "video":
                return number(stream.get("fps")) or None
        return None


def number(value: Any) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if result == result and result >= 0 else None  # NaN-safe


def from_ffprobe(stdout: bytes) -> Probe:
    """ffprobe's JSON as a Probe (ValueError if it is not that JSON)."""
    data = json.loads(stdout or b"{}")
    if not isinstance(data, dict):
        raise ValueError("not ffprobe's JSON")
    fmt = data.get("format") or {}
    streams = data.get("streams") or []
    # Cover art arrives as a one-frame "video" stream: it is not video.
    streams = [s for s in streams if not (s.get("disposition") or {}).get("attached_pic")]
    duration = number(fmt.get("duration"))
    return Probe(duration=duration, format_name=str(fmt.get("format_name", "")), streams=streams)


# The dump's own lines sit two spaces in; a tag's value (which the file chooses) is printed at
# least four spaces in, so it can never pass for one of these.
_DURATION = re.compile(r"  Duration: (?:(\d+):(\d\d):(\d\d(?:\.\d+)?)|N/A)")
_STREAM = re.compile(r"  Stream #0:\d+\S*: ([A-Za-z]+): ([^\s,]+)(.*)")
_RATE = re.compile(r", (\d{1,7}) Hz")
_FPS = re.compile(r", (\d{1,6}(?:\.\d{1,3})?)(k?) fps\b")
# A hostile file can make the dump long (1,000 streams, each with tags): read this much of it.
MAX_DUMP_LINES = 20_000
MAX_STREAMS = 1_000


class InputDump:
    """Reads FFmpeg's stderr line by line (at -loglevel info) and knows the first input once
    its dump has ended: `feed` returns the Probe on that line, once, and None otherwise."""

    def __init__(self) -> None:
        self._format: str | None = None
        self._duration: float | None = None
        self._streams: list[dict[str, Any]] = []
        self._lines = 0
        self.done = False

    def feed(self, line: str) -> Probe | None:
        if self.done:
            return None
        if self._format is None:
            if line.startswith("Input #0, "):
                self._format = line[len("Input #0, ") :].split(", from ", 1)[0]
            return None
        self._lines += 1
        if not line.startswith(" ") or self._lines > MAX_DUMP_LINES:
            return self.end()
        if match := _DURATION.match(line):
            hours, minutes, seconds = match.groups()
            if hours is not None:
                self._duration = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        elif (match := _STREAM.match(line)) and len(self._streams) < MAX_STREAMS:
            kind, codec, rest = match.groups()
            if "(attached pic)" in rest:  # cover art: a one-frame "video" that is not video
                return None
            stream: dict[str, Any] = {"codec_type": kind.lower()}
            if codec != "none":
                stream["codec_name"] = codec
            if rate := _RATE.search(rest):
                stream["sample_rate"] = rate.group(1)
            if fps := video_rate(line):
                stream["fps"] = fps
            self._streams.append(stream)
        return None

    def end(self) -> Probe | None:
        """The input, if FFmpeg got as far as printing it (at the end of its output, too)."""
        if self.done or self._format is None:
            return None
        self.done = True
        return Probe(self._duration, self._format, self._streams)


def video_rate(line: str) -> float | None:
    """The frame rate a `Stream ... Video: ..., 25 fps, ...` line of FFmpeg's dump says."""
    if not (match := _FPS.search(line)) or ": Video: " not in line:
        return None
    return float(match.group(1)) * (1000 if match.group(2) else 1)


# What an encoder adds past its input's end: it fills its last frame (an MP3 adds its delay
# too), and FFmpeg's progress counts that. So a check of what FFmpeg wrote against the limit
# (the backstop for a header that claims too little) takes it off first, or the same input would
# pass as wav and be refused as mp3. The most measured over inputs of 5.000-5.070 s at 8-48 kHz
# (Debian's FFmpeg 5.1): MP3 591 samples at 8 kHz (frames of 576 there, 1152 from 32 kHz), AAC
# 960 (frames of 1024), Opus 19.5 ms (20 ms frames), Vorbis none. Video encoders (libx264,
# VP8/VP9, mpeg4) write the input's frames, counted as frames / rate: one frame covers them.
def encoder_padding(line: str) -> float:
    """How far past its input the output stream that one line of FFmpeg's `Output #0` dump
    describes may run, in seconds (0 for any other line)."""
    if not (match := _STREAM.match(line)):
        return 0.0
    kind, codec, rest = match.groups()
    rate = _RATE.search(rest)
    return padding(kind.lower(), codec, int(rate.group(1)) if rate else None, video_rate(line))


def padding(kind: str, codec: str, hz: int | None, fps: float | None) -> float:
    """How far past its input a `kind` stream that an encoder of `codec` writes may run, in
    seconds, at its sample rate or frame rate."""
    if kind == "video":
        return 1 / fps if fps else 0.0
    if kind != "audio" or not hz:
        return 0.0
    if codec == "mp3":  # its delay and its last frame: two frames of 1152 (576 under 32 kHz)
        return 2 * (1152 if hz >= 32000 else 576) / hz
    if codec == "opus":
        return 0.02  # one 20 ms frame, whatever the rate
    return 1024 / hz if codec in ("aac", "vorbis") else 0.0


def measured_length(out_time: float, frames: int, rate: float | None) -> float:
    """How long what FFmpeg wrote (or read through) lasts, from its progress report. Its
    `out_time` is where each stream's last packet ends for sound, but where the last video
    packet is decoded (its dts, before its own duration): a 6-frame video at 1 fps with B-frames
    read 3.0 s, and 126 frames at 25 fps 4.92 s. So the video counts as its frames at its rate
    (6.0 s, 5.04 s), and the longer of the two is the length."""
    return max(out_time, frames / rate if rate else 0.0)
