"""Video through FFmpeg: transcode between containers, make GIFs, or pull out the audio track."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from convertd.converters import ffmpeg
from convertd.converters.audio import audio_output_args
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

VIDEO_ENCODERS = {
    "h264": ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"],
    "vp8": ["-c:v", "libvpx", "-deadline", "good", "-cpu-used", "4", "-b:v", "0"],
    "vp9": [
        "-c:v",
        "libvpx-vp9",
        "-deadline",
        "good",
        "-cpu-used",
        "4",
        "-row-mt",
        "1",
        "-b:v",
        "0",
    ],
    "mpeg4": ["-c:v", "mpeg4"],
}
AUDIO_ENCODERS = {
    "aac": ["-c:a", "aac", "-b:a", "128k"],
    "mp3": ["-c:a", "libmp3lame", "-b:a", "160k"],
    "opus": ["-c:a", "libopus", "-b:a", "128k"],
    "vorbis": ["-c:a", "libvorbis", "-b:a", "128k"],
    "pcm": ["-c:a", "pcm_s16le"],
}
# container -> (muxer, default video codec, default audio codec, allowed video, allowed audio)
CONTAINERS: dict[str, tuple[str, str, str, tuple[str, ...], tuple[str, ...]]] = {
    "mp4": ("mp4", "h264", "aac", ("h264", "mpeg4", "vp9"), ("aac", "mp3", "opus")),
    "mov": ("mov", "h264", "aac", ("h264", "mpeg4"), ("aac", "mp3", "pcm")),
    "mkv": ("matroska", "h264", "aac", tuple(VIDEO_ENCODERS), tuple(AUDIO_ENCODERS)),
    "webm": ("webm", "vp9", "opus", ("vp8", "vp9"), ("opus", "vorbis")),
    "avi": ("avi", "mpeg4", "mp3", ("mpeg4", "h264"), ("mp3", "pcm")),
}
AUDIO_OUTPUTS = {"mp3", "wav"}
QUALITY_CRF = {"low": 32, "medium": 26, "high": 20}
# libvpx's CRF scale sits higher than x264's for similar quality.
VPX_CRF_OFFSET = 8

# FFmpeg cannot cut a stream copy between keyframes: a copy trimmed with -ss before -i starts
# at the keyframe at or before trim_start. MP4 and MOV get an edit list that hides the frames
# before it (players honour it); Matroska and WebM show them, the sound starting at
# trim_start. AVI has no start times: its sound would play from the keyframe, out of step, so
# that one is refused where there is sound (check_copies). Exact would mean re-encoding, which
# copy is asked not to do: said where the options are listed.
COPY_TRIM = (
    "; with video_codec copy the video starts at the keyframe at or before trim_start "
    "(mp4 and mov hide the frames before it, mkv and webm show them; refused for avi with "
    "sound unless mute)"
)

VIDEO_OPTIONS = {
    "video_codec": Option(
        str,
        "Video codec; copy keeps the video as it is (no width, height, fps, crf or quality "
        "with it; not for gif, mp3 or wav, which are always encoded)",
        choices=(*VIDEO_ENCODERS, "copy"),
    ),
    "audio_codec": Option(
        str,
        "Audio codec; copy keeps the audio as it is (no bitrate with it; not for gif, mp3 or "
        "wav, which are always encoded)",
        choices=(*AUDIO_ENCODERS, "copy"),
    ),
    "crf": Option(int, "Constant rate factor: lower is better quality (0-51)", 0, 51),
    "quality": Option(
        str, "Preset quality instead of crf", choices=tuple(QUALITY_CRF), default="medium"
    ),
    "width": Option(int, "Output width; height follows unless given", 16, 7680),
    "height": Option(int, "Output height; width follows unless given", 16, 4320),
    "fps": Option(float, "Frames per second", 1, 120),
    "trim_start": dataclasses.replace(
        TRIM_OPTIONS["trim_start"], help=TRIM_OPTIONS["trim_start"].help + COPY_TRIM
    ),
    "trim_end": TRIM_OPTIONS["trim_end"],
    "mute": Option(bool, "Drop the audio track", default=False),
    "bitrate": Option(
        str,
        "Audio bitrate (an encoded audio track, or mp3 extracted), e.g. 192k",
        check=check_bitrate,
    ),
}


def _even(n: int) -> int:
    return n - n % 2


def scale_filter(options: dict[str, Any], default_width: int | None = None) -> str | None:
    """A scale filter keeping the aspect ratio when one side is given (-2: even, for yuv420p)."""
    width, height = options.get("width"), options.get("height")
    if width is None and height is None:
        if default_width is None:
            return None
        return f"scale='min({default_width},iw)':-2:flags=lanczos"
    w = str(_even(width)) if width else "-2"
    h = str(_even(height)) if height else "-2"
    return f"scale={w}:{h}:flags=lanczos"


def video_output_args(fmt: str, options: dict[str, Any]) -> list[str]:
    """Maps, codecs, filters and muxer for a video output in the container `fmt`."""
    # 0:V is video that is not cover art (an attached picture): an input with only cover art
    # has no video, and FFmpeg stops at once rather than make a one-frame film of it.
    maps = ["-map", "0:V:0"] if options.get("mute") else ["-map", "0:V:0", "-map", "0:a:0?"]
    return [*maps, *encoding_args(fmt, options)]


def encoding_args(fmt: str, options: dict[str, Any]) -> list[str]:
    """Codecs, filters and muxer of a video output in the container `fmt`, for whatever
    streams the caller maps (a merge maps the joined picture and sound of several clips)."""
    muxer, vdefault, adefault, _, _ = CONTAINERS[fmt]
    vcodec = options.get("video_codec") or vdefault
    acodec = options.get("audio_codec") or adefault
    args: list[str] = []
    if vcodec == "copy":
        args += ["-c:v", "copy"]
    else:
        args += VIDEO_ENCODERS[vcodec]
        crf = options.get("crf")
        if crf is None:
            crf = QUALITY_CRF[options.get("quality") or "medium"]
        if vcodec in {"vp8", "vp9"}:
            args += ["-crf", str(min(63, crf + VPX_CRF_OFFSET))]
        elif vcodec == "mpeg4":
            args += ["-q:v", str(max(1, min(31, crf // 5)))]  # mpeg4 has qscale, not crf
        else:
            args += ["-crf", str(crf)]
        filters = [f for f in (scale_filter(options),) if f]
        if fps := options.get("fps"):
            filters.append(f"fps={fps:g}")
        if filters:
            args += ["-vf", ",".join(filters)]

    if options.get("mute"):
        args += ["-an"]
    elif acodec == "copy":
        args += ["-c:a", "copy"]
    else:
        args += AUDIO_ENCODERS[acodec]
        if bitrate := options.get("bitrate"):
            args += ["-b:a", bitrate]  # after the encoder's default, so it wins
    if muxer in {"mp4", "mov"}:
        args += ["-movflags", "+faststart"]
    # Drop container metadata such as a phone's GPS location; the streams are what was asked for.
    return [*args, "-map_metadata", "-1", "-sn", "-dn", "-f", muxer]


def gif_output_args(options: dict[str, Any]) -> list[str]:
    fps = options.get("fps") or 10
    scale = scale_filter(options, default_width=480)
    # One palette made for this clip, then applied: far better than the default web palette.
    graph = f"fps={fps:g},{scale},split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse"
    return ["-map", "0:V:0", "-vf", graph, "-an", "-loop", "0", "-f", "gif"]


# What each container can take as it is (video_codec / audio_codec "copy"), by FFmpeg's names:
# each pair tried with Debian 12's FFmpeg 5.1 (`-c copy` from Matroska), kept when the muxer took
# it, ffprobe read the same codec back and FFmpeg decoded it cleanly. Left out on that test: vp8,
# prores, dnxhd, theora and pcm in mp4, flac anywhere but mkv (5.1 calls flac in MP4
# experimental), opus in mov and avi, vp8/vp9/av1 in mov; h264 in avi (refused in the avcC form
# MP4 and MKV carry it in), hevc in avi (read back as rawvideo), mpeg1video in avi (read back
# with timestamps going backwards); mp2 in mp4 (read back as mp3).
COPYABLE: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "mp4": (
        frozenset({"h264", "hevc", "mpeg4", "av1", "vp9", "mpeg1video", "mpeg2video", "mjpeg"}),
        frozenset({"aac", "mp3", "opus", "vorbis", "ac3", "eac3", "alac"}),
    ),
    "mov": (
        frozenset(
            {"h264", "hevc", "mpeg4", "mpeg1video", "mpeg2video", "mjpeg", "prores", "dnxhd"}
            | {"h263", "theora", "msmpeg4v3", "flv1", "wmv2"}
        ),
        frozenset(
            {"aac", "mp3", "mp2", "alac", "ac3", "eac3", "vorbis"}
            | {"pcm_s16le", "pcm_s16be", "pcm_s24le"}
        ),
    ),
    "webm": (frozenset({"vp8", "vp9", "av1"}), frozenset({"vorbis", "opus"})),
    "avi": (
        frozenset({"mpeg4", "mpeg2video", "mjpeg", "msmpeg4v3", "h263", "flv1", "wmv2"})
        | frozenset({"vp8", "vp9", "av1", "prores", "dnxhd", "theora"}),
        frozenset({"mp3", "mp2", "aac", "ac3", "eac3", "vorbis", "pcm_s16le", "pcm_s24le"})
        | frozenset({"wmav2"}),
    ),
}


def check_copies(fmt: str, options: dict[str, Any], info: Probe) -> None:
    """A stream copied as it is must be one the container can hold: say so rather than let
    FFmpeg fail on it, or write what players refuse (known once FFmpeg has read the input).
    A trimmed copy into avi is refused where the input has sound, which would play out of step
    (the fourth stranger's video alone was refused for it)."""
    copied = options.get("video_codec") == "copy" and options.get("trim_start")
    if fmt == "avi" and copied and not options.get("mute") and info.has("audio"):
        raise ConversionError(
            "option 'video_codec' copy with 'trim_start' in avi would start the picture at the "
            "keyframe before trim_start and the sound at it, out of step (avi has no start "
            "times): leave out video_codec: copy, set 'mute' to drop the sound, or convert to "
            "mkv or mp4"
        )
    if fmt not in COPYABLE:
        return  # mkv holds anything
    for kind, option, allowed in (
        ("video", "video_codec", COPYABLE[fmt][0]),
        ("audio", "audio_codec", COPYABLE[fmt][1]),
    ):
        codec = info.codec(kind)
        if options.get(option) == "copy" and codec and codec not in allowed:
            raise ConversionError(
                f"The input's {kind} is {codec}, which {fmt} cannot hold as it is; "
                f"leave out {option}: copy to re-encode it, or convert to mkv"
            )


# What only re-encoding can do: a stream copied as it is (`copy`) keeps its size, frame rate,
# quality and bitrate, so these would be ignored without a word.
NEEDS_ENCODING = {
    "video_codec": ("width", "height", "fps", "crf", "quality"),
    "audio_codec": ("bitrate",),
}


def check_copy_conflicts(fmt: str, options: dict[str, Any]) -> None:
    """A copy that cannot be honoured as asked is refused, naming every option in the way: a
    copy into gif, mp3 or wav (always encoded), or options that need re-encoding. Options are
    quoted as convertd names them; /v2 says them back in the client's names (tasks/operations)."""
    copies = [codec for codec in NEEDS_ENCODING if options.get(codec) == "copy"]
    if copies and fmt not in CONTAINERS:
        named = " and ".join(f"'{codec}'" for codec in copies)
        raise OptionError(
            f"option {named} copy cannot apply to {fmt}, which is always encoded: "
            f"leave {'them' if len(copies) > 1 else 'it'} out"
        )
    clauses, given = [], []
    for codec in copies:
        if needs := [f"'{name}'" for name in NEEDS_ENCODING[codec] if name in options]:
            clauses.append(
                f"option '{codec}' copy keeps the {codec.split('_')[0]} as it is, so "
                f"{', '.join(needs)} cannot apply"
            )
            given += needs
    if clauses:
        raise OptionError(
            f"{'; '.join(clauses)}: leave out the copy to re-encode, or leave out "
            f"{', '.join(given)}"
        )


class VideoConverter(Converter):
    filetype = "video"
    engine_name = "ffmpeg"
    input_formats = ("mp4", "mov", "mkv", "webm", "avi", "flv", "wmv", "mpeg", "m4v", "3gp", "ts")
    output_formats = (*CONTAINERS, "gif", "mp3", "wav")
    options = VIDEO_OPTIONS
    tools = ("ffmpeg", "ffprobe")

    def reads(self, path: Path) -> bool:
        return ffmpeg.holds(path, ffmpeg.VIDEO_DEMUXERS, "video")

    def validate_options(self, raw: dict[str, Any], output_format: str) -> dict[str, Any]:
        options = check_trim(super().validate_options(raw, output_format))
        if output_format in CONTAINERS:
            _, _, _, vallowed, aallowed = CONTAINERS[output_format]
            vcodec, acodec = options.get("video_codec"), options.get("audio_codec")
            if vcodec not in (None, "copy", *vallowed):
                raise OptionError(
                    f"option 'video_codec' {vcodec!r} cannot go in {output_format}; "
                    f"use one of: {', '.join(vallowed)}"
                )
            if acodec not in (None, "copy", *aallowed):
                raise OptionError(
                    f"option 'audio_codec' {acodec!r} cannot go in {output_format}; "
                    f"use one of: {', '.join(aallowed)}"
                )
        if "crf" in options and "quality" in options:
            raise OptionError("give either 'crf' or 'quality', not both")
        check_copy_conflicts(output_format, options)
        return options

    async def convert(self, task: Task) -> list[Path]:
        fmt, options = task.output_format, task.options

        def output_args(info: Probe | None) -> list[str]:
            if fmt in AUDIO_OUTPUTS:
                if info is not None and not info.has("audio"):
                    raise ConversionError("Input has no audio track to extract")
                return audio_output_args(fmt, options, info.sample_rate() if info else None)
            if info is not None and not info.has("video"):
                raise ConversionError("Input has no video stream")
            if fmt == "gif":
                return gif_output_args(options)
            if info is not None:
                check_copies(fmt, options, info)
            return video_output_args(fmt, options)

        return [await ffmpeg.transcode(task, ffmpeg.VIDEO_DEMUXERS, "video", output_args, "video")]
