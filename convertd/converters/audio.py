"""Audio through FFmpeg: any common format in, the usual delivery formats out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convertd.converters import ffmpeg
from convertd.converters.base import Converter, Task
from convertd.converters.media_info import Probe
from convertd.converters.options import (
    TRIM_OPTIONS,
    Option,
    OptionError,
    check_bitrate,
    check_trim,
)
from convertd.errors import ConversionError

# output format -> (encoder args, muxer)
ENCODERS: dict[str, tuple[list[str], str]] = {
    "mp3": (["-c:a", "libmp3lame"], "mp3"),
    "wav": (["-c:a", "pcm_s16le"], "wav"),
    "ogg": (["-c:a", "libvorbis"], "ogg"),
    "flac": (["-c:a", "flac"], "flac"),
    "aac": (["-c:a", "aac"], "adts"),
    "m4a": (["-c:a", "aac", "-movflags", "+faststart"], "ipod"),
    "opus": (["-c:a", "libopus"], "opus"),
}
LOSSLESS = {"wav", "flac"}
# The sample rates each lossy encoder can write (the others take any rate we offer).
_MPEG_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
# The channel counts the encoders refuse to write (others write 1 to 8).
CHANNELS: dict[str, tuple[int, ...]] = {"mp3": (1, 2), "opus": (1, 2, 5, 6, 7, 8)}
SAMPLE_RATES: dict[str, tuple[int, ...]] = {
    "mp3": _MPEG_RATES,
    "opus": (8000, 12000, 16000, 24000, 48000),
    "aac": (*_MPEG_RATES, 64000, 88200, 96000),
    "m4a": (*_MPEG_RATES, 64000, 88200, 96000),
}
DEFAULT_BITRATE = {"mp3": "192k", "aac": "160k", "m4a": "160k", "opus": "128k"}
# Vorbis by quality, not bitrate: a fixed bitrate libvorbis cannot reach at a low rate or in
# mono (160k at 22.05 kHz mono) makes it refuse to start; quality 5 is ~160k stereo at 44.1 kHz.
VORBIS_QUALITY = "5"
# EBU R128 loudness normalisation, to the level streaming services use.
LOUDNORM = "loudnorm=I=-16:TP=-1.5:LRA=11"

AUDIO_OPTIONS = {
    "bitrate": Option(str, "Target bitrate for lossy formats, e.g. 192k", check=check_bitrate),
    "sample_rate": Option(int, "Sample rate in Hz", 8000, 192000),
    "channels": Option(int, "Number of channels (1 mono, 2 stereo, ...)", 1, 8),
    **TRIM_OPTIONS,
    "normalize": Option(bool, "Normalise loudness (EBU R128, -16 LUFS)", default=False),
}


def output_rate(fmt: str, source_rate: int | None) -> int | None:
    """The rate to keep for `fmt`: the source's if the encoder writes it, else the nearest it
    does (above if it can)."""
    allowed = SAMPLE_RATES.get(fmt)
    if source_rate is None or allowed is None or source_rate in allowed:
        return source_rate
    return min((r for r in allowed if r >= source_rate), default=max(allowed))


def ffmpeg_rate(fmt: str, source_rate: int) -> int | None:
    """The rate FFmpeg writes by itself, asked for none: the source's if the encoder writes
    it, else the one nearest to it (None on a tie, where its pick is its list's order)."""
    allowed = SAMPLE_RATES.get(fmt)
    if allowed is None or source_rate in allowed:
        return source_rate
    nearest = sorted(allowed, key=lambda r: abs(r - source_rate))
    tie = abs(nearest[0] - source_rate) == abs(nearest[1] - source_rate)
    return None if tie else nearest[0]


def audio_output_args(
    fmt: str, options: dict[str, Any], source_rate: int | None = None
) -> list[str]:
    """The first audio track, with its tags, as an audio output of `fmt`: encoder, bitrate,
    rate, channels, filters and muxer (also what video makes of its sound track). The rate is
    said only where FFmpeg would not write that rate by itself (loudnorm resamples to 192 kHz;
    an encoder that cannot write the source's picks the nearest, not the next above): so the
    args need no rate known in advance in the usual case, and FFmpeg starts without one."""
    keeps = source_rate is not None and not options.get("normalize")
    if keeps and output_rate(fmt, source_rate) == ffmpeg_rate(fmt, source_rate or 0):
        source_rate = None
    return ["-map", "0:a:0", "-vn", "-map_metadata", "0", *encoding_args(fmt, options, source_rate)]


def encoding_args(fmt: str, options: dict[str, Any], source_rate: int | None = None) -> list[str]:
    """Encoder, bitrate, rate, channels, filters and muxer of an audio output of `fmt`, for
    whatever audio the caller maps (a merge maps the joined sound of several files)."""
    encoder, muxer = ENCODERS[fmt]
    args = [*encoder]
    if bitrate := options.get("bitrate"):
        args += ["-b:a", bitrate] if fmt not in LOSSLESS else []
    elif fmt == "ogg":
        args += ["-q:a", VORBIS_QUALITY]
    elif fmt not in LOSSLESS:
        args += ["-b:a", DEFAULT_BITRATE[fmt]]
    # Without a rate asked for, the input's is kept: FFmpeg's loudnorm filter would otherwise
    # hand the encoder 192 kHz, and some encoders pick a rate of their own.
    rate = options.get("sample_rate") or output_rate(fmt, source_rate)
    if rate:
        args += ["-ar", str(rate)]
    if channels := options.get("channels"):
        args += ["-ac", str(channels)]
    if options.get("normalize"):
        args += ["-af", LOUDNORM]
    return [*args, "-f", muxer]


class AudioConverter(Converter):
    filetype = "audio"
    engine_name = "ffmpeg"
    input_formats = (
        *("mp3", "wav", "ogg", "flac", "aac", "m4a", "opus", "wma", "aiff", "amr", "3ga"),
        *("ac3", "eac3", "dts", "wv", "tta", "caf", "au", "mp2", "mka"),
    )
    output_formats = tuple(ENCODERS)
    options = AUDIO_OPTIONS
    tools = ("ffmpeg", "ffprobe")

    def reads(self, path: Path) -> bool:
        return ffmpeg.holds(path, ffmpeg.AUDIO_DEMUXERS, "audio")

    def validate_options(self, raw: dict[str, Any], output_format: str) -> dict[str, Any]:
        options = check_trim(super().validate_options(raw, output_format))
        for name, table in (("sample_rate", SAMPLE_RATES), ("channels", CHANNELS)):
            allowed = table.get(output_format)
            value = options.get(name)
            if value is not None and allowed is not None and value not in allowed:
                raise OptionError(
                    f"option {name!r} {value} cannot go in {output_format}; "
                    f"use one of: {', '.join(map(str, allowed))}"
                )
        return options

    async def convert(self, task: Task) -> list[Path]:
        fmt, options = task.output_format, task.options

        def output_args(info: Probe | None) -> list[str]:
            if info is not None and not info.has("audio"):
                raise ConversionError("Input has no audio to convert")
            if info is not None and not info.duration:
                raise ConversionError("Input has no audio samples (its length is zero)")
            return audio_output_args(fmt, options, info.sample_rate() if info else None)

        return [await ffmpeg.transcode(task, ffmpeg.AUDIO_DEMUXERS, "audio", output_args, "audio")]
