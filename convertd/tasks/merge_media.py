"""The merge operation for audio and video: files joined, in the order given, into one.

Each input is probed first (ffprobe, through the same demuxer allow-list as conversions).
When they all hold the same streams (audio: codec, sample rate, channels; video: codec, size,
pixel format, frame rate, and the same sound) and the output container takes those codecs as
they are, FFmpeg's concat demuxer joins them by stream copy: nothing is re-encoded. Otherwise
each is decoded and the concat filter joins them, re-encoded as a conversion to that format
would be (converters/audio.py's and converters/video.py's codec choices); video is scaled and
padded to the first clip's size and frame rate, and a clip without sound gets silence
(anullsrc) when the others have some.

The concat demuxer reads a list of files and would open whatever it names: the list is
written here, naming the inputs' absolute paths (the daemon's own), quoted by the demuxer's
rules, as file: URLs under `-protocol_whitelist file`; each entry carries the demuxer
allow-list, so a listed file can never be a playlist itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from convertd import clock
from convertd.converters import audio, media_info, video
from convertd.converters.base import canonical_format
from convertd.converters.ffmpeg import AUDIO_DEMUXERS, VIDEO_DEMUXERS, input_args
from convertd.files import extension_of
from convertd.tasks.operations import TaskFailed
from convertd.tasks.parameters import MERGE_AUDIO, MERGE_VIDEO
from convertd.tasks.tools import ffprobe, run_tool

DEMUXERS = tuple(dict.fromkeys((*VIDEO_DEMUXERS, *AUDIO_DEMUXERS)))
# The concat filter has every input open at once (and its graph grows with them): files that
# cannot be stream-copied are joined this many at most.
MAX_REENCODED = 200
# What each audio output takes as it is, by ffprobe's codec names.
AUDIO_COPYABLE: dict[str, frozenset[str]] = {
    "mp3": frozenset({"mp3"}),
    "wav": frozenset({"pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_u8"}),
    "flac": frozenset({"flac"}),
    "ogg": frozenset({"vorbis", "opus"}),
    "opus": frozenset({"opus"}),
    "m4a": frozenset({"aac", "alac"}),
    "aac": frozenset({"aac"}),
}
# The audio output a file of this codec defaults to when its name says no format merge writes
# (an .mp4 of sound only, a .wma): the one that takes it as it is, else lossless.
AUDIO_HOME = {"mp3": "mp3", "aac": "m4a", "alac": "m4a", "vorbis": "ogg", "opus": "opus"}
# Sound in a video merge that re-encodes: one rate and layout every encoder takes.
VIDEO_SOUND = "aresample=48000,aformat=channel_layouts=stereo"
SILENCE = "anullsrc=r=48000:cl=stereo"


@dataclasses.dataclass(frozen=True)
class Clip:
    path: Path
    duration: float
    video: dict[str, Any] | None  # the first video stream, as ffprobe describes it
    audio: dict[str, Any] | None  # the first audio stream

    def picture(self) -> tuple[Any, ...] | None:
        v = self.video
        keys = ("codec_name", "width", "height", "pix_fmt", "avg_frame_rate")
        return None if v is None else tuple(v.get(k) for k in keys)

    def frame_rate(self) -> float | None:
        """Its video's frames per second, if ffprobe knows them ("25/1"; "0/0" if not)."""
        frames, _, per = str((self.video or {}).get("avg_frame_rate")).partition("/")
        n, d = media_info.number(frames), media_info.number(per)
        return n / d if n and d else None

    def sample_rate(self) -> int | None:
        return int(media_info.number((self.audio or {}).get("sample_rate")) or 0) or None

    def padding(self) -> float:
        """How far its encoders may have written past their input (media_info.padding)."""
        v, a = self.video, self.audio
        fps, hz = self.frame_rate(), self.sample_rate()
        picture = media_info.padding("video", str(v.get("codec_name")), None, fps) if v else 0.0
        sound = media_info.padding("audio", str(a.get("codec_name")), hz, None) if a else 0.0
        return max(picture, sound)

    def sound(self) -> tuple[Any, ...] | None:
        a = self.audio
        keys = ("codec_name", "sample_rate", "channels")
        return None if a is None else tuple(a.get(k) for k in keys)


async def probe(path: Path, timeout: float) -> Clip:
    what = (
        "-show_entries",
        "format=duration:stream=codec_type,codec_name,width,height,pix_fmt,avg_frame_rate,"
        "sample_rate,channels:stream_disposition=attached_pic",
    )
    data = await ffprobe(path, DEMUXERS, what, timeout)
    if data is None or not data.get("streams"):
        raise TaskFailed("INVALID_INPUT", f"{path.name} is not audio or video FFmpeg can read")
    # Cover art arrives as a one-frame "video" stream: it is not video.
    streams = [s for s in data["streams"] if not (s.get("disposition") or {}).get("attached_pic")]
    first = {
        kind: next((s for s in streams if s.get("codec_type") == kind), None)
        for kind in ("video", "audio")
    }
    try:
        duration = max(float((data.get("format") or {}).get("duration", 0)), 0.0)
    except (TypeError, ValueError):
        duration = 0.0
    return Clip(path, duration, first["video"], first["audio"])


def _kind_and_format(clips: list[Clip], fmt: str | None) -> tuple[str, str]:
    """("audio" or "video", the output format): the one asked for, else the first input's."""
    if fmt is not None:
        kind = "audio" if fmt in MERGE_AUDIO else "video"
    else:
        kinds = {c.path.name: "video" if c.video else "audio" for c in clips}
        if len(set(kinds.values())) > 1:
            a = next(n for n, k in kinds.items() if k == "audio")
            v = next(n for n, k in kinds.items() if k == "video")
            raise TaskFailed(
                "INVALID_INPUT",
                f"merge joins audio with audio and video with video; {a} is audio and {v} is "
                "video. Give output_format: an audio format joins their sound.",
            )
        kind = kinds[clips[0].path.name]
    for clip in clips:
        if (clip.audio if kind == "audio" else clip.video) is None:
            what = "no sound" if kind == "audio" else "no picture: merge it into an audio format"
            raise TaskFailed("INVALID_INPUT", f"{clip.path.name} has {what}")
    if fmt is None:
        ext = canonical_format(extension_of(clips[0].path.name))
        if kind == "audio":
            codec = str((clips[0].audio or {}).get("codec_name"))
            home = "wav" if codec.startswith("pcm_") else AUDIO_HOME.get(codec, "flac")
            fmt = ext if ext in MERGE_AUDIO else home
        else:
            fmt = ext if ext in MERGE_VIDEO else "mkv"  # Matroska holds any codec as it is
    return kind, fmt


def _copyable(kind: str, fmt: str, clips: list[Clip]) -> bool:
    """Whether stream copy joins these clips into `fmt`: the same streams throughout, of
    codecs the container takes as they are."""
    sound = {c.sound() for c in clips}
    if len(sound) != 1:
        return False
    codec = next(iter(sound))
    if kind == "audio":
        return codec is not None and codec[0] in AUDIO_COPYABLE[fmt]
    picture = {c.picture() for c in clips}
    if len(picture) != 1:
        return False
    if fmt not in video.COPYABLE:
        return True  # mkv holds anything
    vcodecs, acodecs = video.COPYABLE[fmt]
    vcodec = (clips[0].video or {}).get("codec_name")
    return vcodec in vcodecs and (codec is None or codec[0] in acodecs)


def quoted(path: Path) -> str:
    """A path in the concat demuxer's list: single-quoted, a quote as '\\'' (closed, escaped,
    reopened); a file: URL, so no part of it reads as another protocol."""
    text = f"file:{path}"
    if "\n" in text or "\r" in text:
        raise TaskFailed("INVALID_INPUT", "a file name holds a line break")
    return "'" + text.replace("'", "'\\''") + "'"


def _concat_list(clips: list[Clip], listing: Path) -> None:
    lines = ["ffconcat version 1.0"]
    for clip in clips:
        # The allow-list for the listed file itself: the list's own (concat) is inherited.
        lines += [f"file {quoted(clip.path)}", f"option format_whitelist {','.join(DEMUXERS)}"]
    listing.write_text("\n".join(lines) + "\n", "utf-8")


def _copy_args(kind: str, fmt: str, listing: Path) -> list[str]:
    inputs = ["-protocol_whitelist", "file", "-format_whitelist", "concat"]
    inputs += ["-f", "concat", "-safe", "0", "-i", f"file:{listing}"]
    if kind == "audio":
        maps = ["-map", "0:a:0", "-vn", "-c:a", "copy", "-f", audio.ENCODERS[fmt][1]]
        return [*inputs, *maps, *(["-movflags", "+faststart"] if fmt == "m4a" else [])]
    muxer = video.CONTAINERS[fmt][0]
    maps = ["-map", "0:v:0", "-map", "0:a:0?", "-c", "copy", "-sn", "-dn", "-f", muxer]
    return [*inputs, *maps, *(["-movflags", "+faststart"] if muxer in {"mp4", "mov"} else [])]


def _filter_args(kind: str, fmt: str, clips: list[Clip]) -> tuple[list[str], str]:
    """(FFmpeg's inputs and outputs, the concat filter graph) to decode and re-encode."""
    inputs = [arg for clip in clips for arg in input_args(clip.path, DEMUXERS)]
    n = len(clips)
    if kind == "audio":
        graph = "".join(f"[{i}:a:0]" for i in range(n)) + f"concat=n={n}:v=0:a=1[a]"
        sample_rate = clips[0].sample_rate()
        return [*inputs, "-map", "[a]", *audio.encoding_args(fmt, {}, sample_rate)], graph
    first = clips[0].video or {}
    # Even sides, as yuv420p needs; the first clip's frame rate, if ffprobe knows it.
    width, height = (int(first.get(side) or 0) // 2 * 2 for side in ("width", "height"))
    if not width or not height:
        raise TaskFailed("INVALID_INPUT", f"{clips[0].path.name} has a picture of no size")
    fps = f",fps={first['avg_frame_rate']}" if clips[0].frame_rate() else ""
    sound = any(c.audio for c in clips)
    parts, pads = [], []
    for i, clip in enumerate(clips):
        parts.append(
            f"[{i}:v:0]scale={width}:{height}:force_original_aspect_ratio=decrease,"
            f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1{fps},format=yuv420p[v{i}]"
        )
        pads.append(f"[v{i}]")
        if sound:
            silence = f"{SILENCE},atrim=0:{clip.duration:.3f}"
            parts.append(f"[{i}:a:0]{VIDEO_SOUND}[a{i}]" if clip.audio else f"{silence}[a{i}]")
            pads.append(f"[a{i}]")
    parts.append("".join(pads) + f"concat=n={n}:v=1:a={int(sound)}[v]" + ("[a]" if sound else ""))
    maps = ["-map", "[v]", *(["-map", "[a]"] if sound else [])]
    return [*inputs, *maps, *video.encoding_args(fmt, {"mute": not sound})], ";".join(parts)


def _too_long(seconds: float, limit: float) -> TaskFailed:
    said, allowed = clock.over_limit(seconds, limit)
    return TaskFailed(
        "INVALID_INPUT",
        f"The inputs last {said} together, longer than the limit of {allowed} for media "
        "(max_media_seconds)",
    )


async def merge_media(
    paths: list[Path], staging: Path, fmt: str | None, timeout: float, max_seconds: float
) -> Path:
    """The inputs' audio or video, in order, as one file in `staging` (a hidden name the
    caller renames); returns it."""
    clips = [await probe(path, timeout) for path in paths]
    kind, fmt = _kind_and_format(clips, fmt)
    total = sum(c.duration for c in clips)
    if clock.past_limit(total, max_seconds):
        raise _too_long(total, max_seconds)
    copy = _copyable(kind, fmt, clips)
    if not copy and len(clips) > MAX_REENCODED:
        raise TaskFailed(
            "INVALID_INPUT",
            f"These {len(clips)} files differ in codec or format, so they are re-encoded, and "
            f"at most {MAX_REENCODED} are re-encoded together: convert them to one format "
            "first (files alike are joined as they are), or merge them in parts",
        )
    out = staging / f".merged.{fmt}"
    script = staging / ".merge-graph.txt"
    listing = staging / ".merge-list.txt"
    if copy:
        await asyncio.to_thread(_concat_list, clips, listing)
        args = _copy_args(kind, fmt, listing)
    else:
        args, graph = _filter_args(kind, fmt, clips)
        # A file, not an argument: a graph of hundreds of inputs outgrows a command line.
        await asyncio.to_thread(script.write_text, graph, "utf-8")
        args = ["-filter_complex_script", f"file:{script}", *args]
    argv = [
        *("ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y"),
        *args,
        # Tags are not carried over: they describe one file, not the whole.
        *("-map_metadata", "-1", "-map_chapters", "-1"),
        # A backstop for headers that claim too little: never write past the limit.
        *("-t", f"{max_seconds + 1:.0f}"),
        f"file:{out}",
    ]
    try:
        await run_tool(
            argv,
            timeout=timeout,
            name="ffmpeg",
            problem=f"The {kind} could not be merged",
            made=out,
            default="FFmpeg could not read one of the files",
        )
    finally:
        for hidden in (script, listing):
            await asyncio.to_thread(hidden.unlink, missing_ok=True)
    merged = await probe(out, timeout)
    # Re-encoded, the output runs past its inputs by its encoder's padding (an MP3 of 5.18 s of
    # sound says 5.23 s): not the inputs' length, so not held to the limit.
    written = merged.duration - (0.0 if copy else merged.padding())
    if clock.past_limit(written, max_seconds):
        await asyncio.to_thread(out.unlink, missing_ok=True)
        raise _too_long(written, max_seconds)
    return out
