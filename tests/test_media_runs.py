"""How many tool processes a media job starts: one FFmpeg run, no ffprobe, and every decision
a probe used to make (length limit, which streams exist, what a stream copy can hold) still
made, from what FFmpeg itself says of its input.

The daemon runs with a PATH whose `ffmpeg` and `ffprobe` are scripts that write one line per
call to a log and then exec the real tool: they count calls, they never stand in for the tool.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon
from tests.media import ffmpeg, ffprobe, make_audio, make_video, streams

LIMIT_SECONDS = 4


@pytest.fixture
def counted(make_daemon: Any, tmp_path: Path) -> tuple[Daemon, str, Path]:
    """A daemon whose FFmpeg and ffprobe calls are logged: (daemon, key, log)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for tool in ("ffmpeg", "ffprobe"):
        real = shutil.which(tool)
        assert real is not None
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\necho {tool} >> "{log}"\nexec "{real}" "$@"\n')
        script.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "CONVERTD_MAX_MEDIA_SECONDS": str(LIMIT_SECONDS),
    }
    d = make_daemon(env=env, workers=1)
    return d, d.create_key("counted", "--plan", "pro"), log


def run(
    counted: tuple[Daemon, str, Path],
    source: Path | bytes,
    name: str,
    filetype: str,
    fmt: str,
    options: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], bytes | None, list[str]]:
    """One job: (status, output or None, the tools it started, in order)."""
    d, key, log = counted
    log.unlink(missing_ok=True)
    data = source if isinstance(source, bytes) else source.read_bytes()
    status, out = d.convert_and_fetch(key, data, name, filetype, fmt, options)
    calls = log.read_text().split() if log.exists() else []
    return status, (out.content if out is not None else None), calls


def test_a_conversion_is_one_ffmpeg_run(counted: tuple[Daemon, str, Path], tmp_path: Path) -> None:
    clip = make_video(tmp_path / "clip.mp4", 2.0, "160x120", "-c:v", "libx264", "-ac", "2")
    for fmt, options, vcodec, acodec in (
        ("mp3", None, None, "mp3"),
        ("mp4", None, "h264", "aac"),
        ("mkv", {"video_codec": "copy", "audio_codec": "copy"}, "h264", "aac"),
    ):
        status, out, calls = run(counted, clip, "clip.mp4", "video", fmt, options)
        assert out is not None, status
        assert calls == ["ffmpeg"], (fmt, calls)
        info = ffprobe(out, tmp_path, f"out.{fmt}")
        assert abs(float(info["format"]["duration"]) - 2.0) < 0.2
        assert [s["codec_name"] for s in streams(info, "audio")] == [acodec]
        assert [s["codec_name"] for s in streams(info, "video")] == ([vcodec] if vcodec else [])

    # A rate the encoder cannot write (MP3 has no 96 kHz): FFmpeg's own pick, 48 kHz, is the
    # one convertd wants, so nothing needs saying before FFmpeg starts.
    wav = make_audio(tmp_path / "tone.wav", 2.0, "-ar", "96000")
    status, out, calls = run(counted, wav, "tone.wav", "audio", "mp3")
    assert out is not None and calls == ["ffmpeg"], (status, calls)
    assert streams(ffprobe(out, tmp_path, "out.mp3"), "audio")[0]["sample_rate"] == "48000"

    # One it would pick differently (46.5 kHz: FFmpeg's nearest is 48 kHz, as convertd's
    # "next above"; 45 kHz: 44.1 kHz nearest, 48 kHz above): the rate is then heard from FFmpeg
    # and the run started again with it.
    for rate, runs in (("46500", ["ffmpeg"]), ("45000", ["ffmpeg", "ffmpeg"])):
        wav = make_audio(tmp_path / "odd.wav", 1.0, "-ar", rate)
        status, out, calls = run(counted, wav, "odd.wav", "audio", "mp3")
        assert out is not None and calls == runs, (rate, status, calls)
        assert streams(ffprobe(out, tmp_path, "odd.mp3"), "audio")[0]["sample_rate"] == "48000"


def test_what_the_input_lacks_is_said_without_ffprobe(
    counted: tuple[Daemon, str, Path], tmp_path: Path
) -> None:
    silent = make_video(tmp_path / "silent.mp4", 1.0, "160x120", "-an")
    status, out, calls = run(counted, silent, "silent.mp4", "video", "mp3")
    assert out is None and status["error"] == "Input has no audio track to extract", status
    assert calls == ["ffmpeg"]

    # Sound with cover art (a one-frame picture stream) is not a video.
    tone = make_audio(tmp_path / "tone.wav", 1.0)
    cover = tmp_path / "cover.png"
    ffmpeg("-f", "lavfi", "-i", "color=red:size=64x64", "-frames:v", "1", str(cover))
    song = tmp_path / "song.mp4"
    ffmpeg(
        *("-i", str(tone), "-i", str(cover), "-map", "0:a", "-map", "1:v"),
        *("-c:a", "aac", "-c:v", "png", "-disposition:v", "attached_pic", str(song)),
    )
    status, out, calls = run(counted, song, "song.mp4", "video", "mp4")
    assert out is None and status["error"] == "Input has no video stream", status
    assert calls == ["ffmpeg"]

    status, out, calls = run(counted, b"not a film\n" * 50, "film.mp4", "video", "mp4")
    assert out is None and status["error"] == "Input is not a valid video file", status
    assert calls == ["ffmpeg"]

    status, out, calls = run(counted, b"not a song\n" * 50, "song.mp3", "audio", "wav")
    assert out is None and status["error"] == "Input is not a valid audio file", status
    assert calls == ["ffmpeg"]


def test_a_copy_the_container_cannot_hold_is_refused_without_ffprobe(
    counted: tuple[Daemon, str, Path], tmp_path: Path
) -> None:
    # VP8 in WebM, copied into MP4: FFmpeg 5.1's MP4 muxer refuses it.
    clip = make_video(tmp_path / "clip.webm", 1.0, "160x120", "-c:v", "libvpx", "-an")
    status, out, calls = run(counted, clip, "clip.webm", "video", "mp4", {"video_codec": "copy"})
    assert out is None and status["error"] == (
        "The input's video is vp8, which mp4 cannot hold as it is; "
        "leave out video_codec: copy to re-encode it, or convert to mkv"
    ), status
    assert calls == ["ffmpeg"]


def test_the_length_limit_holds_without_ffprobe(
    counted: tuple[Daemon, str, Path], tmp_path: Path
) -> None:
    # Over the limit: FFmpeg's first run hears the header's length and is stopped; the packets
    # are read through (a header may lie) and the job refused.
    long_clip = make_video(tmp_path / "long.mp4", 2.0 * LIMIT_SECONDS, "64x64")
    status, out, calls = run(counted, long_clip, "long.mp4", "video", "webm")
    assert out is None and "longer than the limit of" in status["error"], status
    assert calls == ["ffmpeg", "ffmpeg"]

    long_song = make_audio(tmp_path / "long.wav", 2.0 * LIMIT_SECONDS)
    status, out, calls = run(counted, long_song, "long.wav", "audio", "mp3")
    assert out is None and "longer than the limit of" in status["error"], status
    assert calls == ["ffmpeg", "ffmpeg"]

    # Within it: converted whole, by one run.
    short = make_audio(tmp_path / "short.wav", LIMIT_SECONDS - 1.0)
    status, out, calls = run(counted, short, "short.wav", "audio", "mp3")
    assert out is not None and calls == ["ffmpeg"], (status, calls)
    assert abs(float(ffprobe(out, tmp_path, "o.mp3")["format"]["duration"]) - 3.0) < 0.2


def test_a_clip_of_exactly_the_limit_is_within_it(
    counted: tuple[Daemon, str, Path], tmp_path: Path
) -> None:
    # max_media_seconds reads "at most": a clip of exactly 4.000 s is converted, by one run.
    # FFmpeg's output passes it by the encoder's last frame (4.015-4.034 s), which was refused
    # as "The input lasts longer than this server's limit", without the length.
    clip = make_video(tmp_path / "exact.mp4", float(LIMIT_SECONDS), "64x64")
    song = make_audio(tmp_path / "exact.wav", float(LIMIT_SECONDS))
    for source, name, filetype, fmt, options in (
        (clip, "exact.mp4", "video", "webm", None),
        (clip, "exact.mp4", "video", "mp4", None),
        (clip, "exact.mp4", "video", "mkv", {"video_codec": "copy", "audio_codec": "copy"}),
        (song, "exact.wav", "audio", "mp3", None),
    ):
        status, out, calls = run(counted, source, name, filetype, fmt, options)
        assert out is not None and calls == ["ffmpeg"], (fmt, status, calls)
        length = float(ffprobe(out, tmp_path, f"o.{fmt}")["format"]["duration"])
        assert abs(length - LIMIT_SECONDS) < 0.1, (fmt, length)
    # Clearly over it (0.32 s, past the padding allowance), by its header and its packets.
    over = make_video(tmp_path / "over.mp4", LIMIT_SECONDS + 0.32, "64x64")
    for fmt, options in (("webm", None), ("mkv", {"video_codec": "copy"})):
        status, out, calls = run(counted, over, "over.mp4", "video", fmt, options)
        assert out is None and status["error"] == (
            f"The input lasts {LIMIT_SECONDS + 0.3:g} s, "
            f"longer than the limit of {LIMIT_SECONDS} s (max_media_seconds)"
        ), status


def test_a_clip_of_exactly_the_limit_is_within_it_though_its_header_counts_padding(
    counted: tuple[Daemon, str, Path], tmp_path: Path
) -> None:
    # The third stranger: clips made with `-t 4` whose header counts the encoder's padding
    # (MP3 4.04 s at 48 kHz, 4.18 s at 8 kHz; VP8/Opus WebM 4.008 s; mpeg4/MP3 AVI 4.04 s)
    # were refused as "just over 4 s (4.04 s)". They are converted, and last the limit.
    lavfi = ("-f", "lavfi", "-i")
    cases = []
    for rate in ("48000", "8000"):
        mp3 = tmp_path / f"x{rate}.mp3"
        ffmpeg(*lavfi, f"sine=sample_rate={rate}", "-t", str(LIMIT_SECONDS), str(mp3))
        cases.append((mp3, "audio", "wav"))
    for name, codecs in (("w.webm", ("libvpx", "libopus")), ("m.avi", ("mpeg4", "libmp3lame"))):
        clip = tmp_path / name
        ffmpeg(
            *lavfi, "testsrc=size=64x64:rate=25", *lavfi, "sine=sample_rate=48000",
            *("-t", str(LIMIT_SECONDS), "-c:v", codecs[0], "-c:a", codecs[1], str(clip)),
        )  # fmt: skip
        cases.append((clip, "video", "mp4"))
    for source, filetype, fmt in cases:
        claimed = float(ffprobe(source.read_bytes(), tmp_path)["format"]["duration"])
        assert claimed > LIMIT_SECONDS, (source.name, claimed)  # the padding is there
        status, out, calls = run(counted, source, source.name, filetype, fmt)
        assert out is not None and calls == ["ffmpeg"], (source.name, status, calls)
        length = float(ffprobe(out, tmp_path, f"o.{fmt}")["format"]["duration"])
        assert abs(length - LIMIT_SECONDS) < 0.2, (source.name, length)


def test_whether_a_clip_passes_depends_on_the_input_not_the_output_format(
    counted: tuple[Daemon, str, Path], tmp_path: Path
) -> None:
    # The fourth stranger: the check on what FFmpeg wrote counted the output encoder's padding.
    # 5.18 s of 44.1 kHz sound passed to wav but was refused as "at least 5.2 s" to mp3 and
    # m4a; an h264/aac clip of 5.16 s passed to mp4, not to webm or avi; 5.19 s at 8 kHz to mp3
    # was refused as "at least 5.3 s". Within the grace (0.19 s) every format converts them.
    song = make_audio(tmp_path / "song.wav", LIMIT_SECONDS + 0.18, "-ar", "44100")
    low = make_audio(tmp_path / "low.wav", LIMIT_SECONDS + 0.19, "-ar", "8000", "-ac", "1")
    clip = make_video(tmp_path / "clip.mp4", LIMIT_SECONDS + 0.16, "64x64")
    cases = [(song, "audio", fmt) for fmt in ("mp3", "m4a", "ogg", "opus", "wav", "flac")]
    cases += [(low, "audio", fmt) for fmt in ("mp3", "m4a", "ogg")]
    cases += [(clip, "video", fmt) for fmt in ("mp4", "webm", "avi", "mkv")]
    for source, filetype, fmt in cases:
        status, out, calls = run(counted, source, source.name, filetype, fmt)
        assert out is not None and calls == ["ffmpeg"], (source.name, fmt, status)
        # The whole input, padded as each format pads (an 8 kHz mp3's header says 4.39 s).
        length = float(ffprobe(out, tmp_path, f"o.{fmt}")["format"]["duration"])
        assert LIMIT_SECONDS + 0.1 < length < LIMIT_SECONDS + 0.45, (source.name, fmt, length)


def test_video_alone_is_held_to_the_limit_as_sound_is(
    counted: tuple[Daemon, str, Path], tmp_path: Path
) -> None:
    # The third stranger: a video-only clip over the limit was converted whole. FFmpeg's
    # progress reports where the last video packet is decoded, not where it ends: 5 frames at
    # 1 fps with B-frames read 2 s, and 4.32 s at 25 fps read 4.2 s, both within the limit.
    slow = tmp_path / "slow.mp4"
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc=size=64x64:rate=1", "-t", str(LIMIT_SECONDS + 1)),
        *("-c:v", "libx264", "-pix_fmt", "yuv420p", str(slow)),
    )
    fast = make_video(tmp_path / "fast.mp4", LIMIT_SECONDS + 0.32, "64x64", "-an")
    for source, said in ((slow, LIMIT_SECONDS + 1), (fast, LIMIT_SECONDS + 0.3)):
        assert not streams(ffprobe(source.read_bytes(), tmp_path), "audio")
        for fmt, options in (("mp4", None), ("webm", None), ("mkv", {"video_codec": "copy"})):
            status, out, _ = run(counted, source, source.name, "video", fmt, options)
            assert out is None and status["error"] == (
                f"The input lasts {said:g} s, longer than the limit of {LIMIT_SECONDS} s (max_media_seconds)"
            ), (source.name, fmt, status)
    # Within it, video alone is converted whole.
    short = make_video(tmp_path / "short.mp4", float(LIMIT_SECONDS), "64x64", "-an")
    status, out, calls = run(counted, short, "short.mp4", "video", "webm")
    assert out is not None and calls == ["ffmpeg"], (status, calls)
    assert abs(float(ffprobe(out, tmp_path, "o.webm")["format"]["duration"]) - LIMIT_SECONDS) < 0.1


def test_the_same_length_is_always_said_the_same(
    counted: tuple[Daemon, str, Path], tmp_path: Path
) -> None:
    # The third stranger: two clips of 5.04 s by their header were refused as "lasts 5.1 s"
    # and "just over 5 s (5.04 s)": the message took the packets' measure (the sound's end,
    # 5.056 s in one) over the header's. Made with -t 4.42 and -t 4.44 (AAC at 48 kHz), both
    # hold 111 frames (4.44 s), the sound of one ending at 4.437 s, of the other at 4.459 s:
    # each is said as its header says, 4.4 s.
    for seconds in (4.42, 4.44):
        clip = make_video(tmp_path / f"v{seconds}.mp4", seconds, "64x64", "-ar", "48000")
        assert float(ffprobe(clip.read_bytes(), tmp_path)["format"]["duration"]) == 4.44
        status, out, _ = run(counted, clip, clip.name, "video", "mkv", {"video_codec": "copy"})
        assert out is None and status["error"] == (
            f"The input lasts 4.4 s, longer than the limit of {LIMIT_SECONDS} s (max_media_seconds)"
        ), (seconds, status)


def test_a_header_that_claims_too_little_is_refused_with_its_length(
    counted: tuple[Daemon, str, Path], tmp_path: Path
) -> None:
    # An MP3 without a Xing header whose first second is loud noise (320 kb/s frames) and the
    # rest silence: FFmpeg estimates its length from the first frame's rate, 3.3 s, under the
    # limit; it holds 7 s. The run stops at its cap (limit + 1 s) and says how far it read.
    liar = tmp_path / "liar.mp3"
    ffmpeg(
        *("-f", "lavfi", "-i", "anoisesrc=d=1:a=0.9", "-f", "lavfi", "-i"),
        "anullsrc=d=6:r=44100:cl=mono",
        "-filter_complex",
        "[0:a]aformat=channel_layouts=mono:sample_rates=44100[n];[n][1:a]concat=n=2:v=0:a=1",
        *("-c:a", "libmp3lame", "-q:a", "0", "-write_xing", "0", str(liar)),
    )
    assert float(ffprobe(liar.read_bytes(), tmp_path)["format"]["duration"]) < LIMIT_SECONDS
    # Said as the input read, whatever the output's encoder pads.
    for fmt in ("wav", "mp3", "m4a"):
        status, out, calls = run(counted, liar, "liar.mp3", "audio", fmt)
        assert out is None and calls == ["ffmpeg"], (fmt, status, calls)
        assert status["error"] == (
            f"The input lasts at least {LIMIT_SECONDS + 1} s, "
            f"longer than the limit of {LIMIT_SECONDS} s (max_media_seconds)"
        ), (fmt, status)


def test_loudness_normalising_keeps_the_rate_with_one_restart(
    counted: tuple[Daemon, str, Path], tmp_path: Path
) -> None:
    # loudnorm resamples to 192 kHz: the input's rate is put back, which takes the rate FFmpeg
    # reports, so that run starts again once; the output keeps 22.05 kHz.
    wav = make_audio(tmp_path / "tone.wav", 2.0, "-ar", "22050")
    status, out, calls = run(counted, wav, "tone.wav", "audio", "flac", {"normalize": True})
    assert out is not None, status
    assert calls == ["ffmpeg", "ffmpeg"]
    assert streams(ffprobe(out, tmp_path, "o.flac"), "audio")[0]["sample_rate"] == "22050"


def test_tags_cannot_pass_for_what_ffmpeg_says_of_the_input(
    counted: tuple[Daemon, str, Path], tmp_path: Path
) -> None:
    # A title whose lines read like FFmpeg's own (a 99 h length, a video stream): FFmpeg prints
    # a tag's lines further in than its own, so the song is neither too long nor a film.
    fake = "x\n  Duration: 99:00:00.00, start: 0\n  Stream #0:7: Video: h264, 1x1\nInput #0, y"
    song = make_audio(tmp_path / "tagged.mp3", 1.0, "-metadata", f"title={fake}")
    status, out, calls = run(counted, song, "tagged.mp3", "audio", "wav")
    assert out is not None and calls == ["ffmpeg"], (status, calls)
    assert abs(float(ffprobe(out, tmp_path, "o.wav")["format"]["duration"]) - 1.0) < 0.1
    sound = make_audio(tmp_path / "tagged.mkv", 1.0, "-metadata", f"title={fake}")
    status, out, calls = run(counted, sound, "tagged.mkv", "video", "mp4")
    assert out is None and status["error"] == "Input has no video stream", status
