"""Audio through FFmpeg: any common format in, the usual delivery formats out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convertd.converters import ffmpeg
from convertd.converters.base import Converter, Task
from convertd.converters.options import TRIM_OPTIONS, Option, check_bitrate, check_trim
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
    "bitrate": Option(str, "Target bitrate for lossy formats, e.g. 192k", check=check_bitrate),
    "sample_rate": Option(int, "Sample rate in Hz", 8000, 192000),
    "channels": Option(int, "Number of channels (1 mono, 2 stereo, ...)", 1, 8),
    **TRIM_OPTIONS,
    "normalize": Option(bool, "Normalise loudness (EBU R128, -16 LUFS)"),
}


def audio_output_args(fmt: str, options: dict[str, Any]) -> list[str]:
    """The first audio track, with its tags, as an audio output of `fmt`: encoder, bitrate,
    rate, channels, filters and muxer (also what video makes of its sound track)."""
    encoder, muxer = ENCODERS[fmt]
    args = ["-map", "0:a:0", "-vn", "-map_metadata", "0", *encoder]
    if fmt not in LOSSLESS:
        args += ["-b:a", options.get("bitrate") or DEFAULT_BITRATE[fmt]]
    if rate := options.get("sample_rate"):
        args += ["-ar", str(rate)]
    if channels := options.get("channels"):
        args += ["-ac", str(channels)]
    if options.get("normalize"):
        args += ["-af", LOUDNORM]
    return [*args, "-f", muxer]


class AudioConverter(Converter):
    filetype = "audio"
    input_formats = ("mp3", "wav", "ogg", "flac", "aac", "m4a", "opus", "wma", "aiff")
    output_formats = tuple(ENCODERS)
    options = AUDIO_OPTIONS
    tools = ("ffmpeg", "ffprobe")

    def validate_options(self, raw: dict[str, Any], output_format: str) -> dict[str, Any]:
        return check_trim(super().validate_options(raw, output_format))

    async def convert(self, task: Task) -> list[Path]:
        timeout = task.limits.job_timeout_seconds
        info = await ffmpeg.probe(task.input_path, ffmpeg.AUDIO_DEMUXERS, "audio", timeout)
        if not info.has("audio"):
            raise ConversionError("Input has no audio to convert")
        if not info.duration:
            raise ConversionError("Input has no audio samples (its length is zero)")
        ffmpeg.check_duration(info, task.limits.max_media_seconds)
        args = audio_output_args(task.output_format, task.options)
        return [await ffmpeg.transcode(task, ffmpeg.AUDIO_DEMUXERS, info, args, "audio")]
