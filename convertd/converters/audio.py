"""Audio through FFmpeg: any common format in, the usual delivery formats out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convertd.converters import media
from convertd.converters.base import Converter, Option, Task
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
DEFAULT_BITRATE = {"mp3": "192k", "ogg": "160k", "aac": "160k", "m4a": "160k", "opus": "128k"}
# EBU R128 loudness normalisation, to the level streaming services use.
LOUDNORM = "loudnorm=I=-16:TP=-1.5:LRA=11"

AUDIO_OPTIONS = {
    "bitrate": Option(str, "Target bitrate for lossy formats, e.g. 192k"),
    "sample_rate": Option(int, "Sample rate in Hz", 8000, 192000),
    "channels": Option(int, "Number of channels (1 mono, 2 stereo, ...)", 1, 8),
    "trim_start": Option(float, "Start at this many seconds into the input", 0, 86400),
    "trim_end": Option(float, "Stop at this many seconds into the input", 0, 86400),
    "normalize": Option(bool, "Normalise loudness (EBU R128, -16 LUFS)"),
}


def audio_args(fmt: str, options: dict[str, Any]) -> list[str]:
    """Encoder, bitrate, rate, channels and filters for an audio output of `fmt`."""
    encoder, muxer = ENCODERS[fmt]
    args = list(encoder)
    if fmt not in LOSSLESS:
        args += ["-b:a", options.get("bitrate") or DEFAULT_BITRATE[fmt]]
    if rate := options.get("sample_rate"):
        args += ["-ar", str(rate)]
    if channels := options.get("channels"):
        args += ["-ac", str(channels)]
    if options.get("normalize"):
        args += ["-af", LOUDNORM]
    return [*args, "-f", muxer]


def check_audio_options(options: dict[str, Any]) -> dict[str, Any]:
    if "bitrate" in options:
        options["bitrate"] = media.check_bitrate(options["bitrate"])
    media.check_trim(options)
    return options


class AudioConverter(Converter):
    filetype = "audio"
    input_formats = ("mp3", "wav", "ogg", "flac", "aac", "m4a", "opus", "wma", "aiff")
    output_formats = tuple(ENCODERS)
    options = AUDIO_OPTIONS
    tools = ("ffmpeg", "ffprobe")

    def validate_options(self, raw: dict[str, Any], output_format: str) -> dict[str, Any]:
        return check_audio_options(super().validate_options(raw, output_format))

    async def convert(self, task: Task) -> list[Path]:
        timeout = task.limits.job_timeout_seconds
        info = await media.probe(task.input_path, media.AUDIO_DEMUXERS, "audio", timeout)
        if not info.has("audio"):
            raise ConversionError("Input has no audio to convert")
        if not info.duration:
            raise ConversionError("Input has no audio samples (its length is zero)")
        media.check_duration(info, task.limits.max_media_seconds)
        out = task.output_path()
        await media.run_ffmpeg(
            [
                *media.input_args(task.input_path, media.AUDIO_DEMUXERS, task.options),
                "-map",
                "0:a:0",
                "-vn",
                "-map_metadata",
                "0",
                *audio_args(task.output_format, task.options),
            ],
            out,
            duration=media.expected_duration(info.duration, task.options),
            timeout=timeout,
            report=task.report_progress,
            what="audio",
        )
        return [out]
