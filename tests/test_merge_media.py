"""/v2 merge of audio and video, through the API, with real FFmpeg: what comes out is probed
(length, codecs, streams), listened to (which tone plays when), and the refusals read."""

from __future__ import annotations

import array
import itertools
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import V2_ENV, Daemon
from tests.media import duration, ffmpeg, ffprobe, make_video, streams
from tests.test_v2_api import job_of, named, wait_job
from tests.test_v2_operations import b64, blank_pdf, exported, refused_fields

RATE = 16000  # what a window is decoded at to be listened to


def tone(path: Path, frequency: int, seconds: float, *extra: str) -> Path:
    ffmpeg("-f", "lavfi", "-i", f"sine=frequency={frequency}:duration={seconds}", *extra, str(path))
    return path


def merged(d: Daemon, k: str, files: list[Path], **params: Any) -> dict[str, Any]:
    """A job importing `files` (in order), merging them ("m") and exporting that ("out"), ended."""
    names = [f"in{n}" for n in range(len(files))]
    tasks: dict[str, Any] = {
        n: b64(f.name, f.read_bytes()) for n, f in zip(names, files, strict=True)
    }
    tasks["m"] = {"operation": "merge", "input": names, **params}
    tasks["out"] = {"operation": "export/url", "input": "m"}
    return wait_job(d, k, job_of(d, k, tasks)["id"])


def result(job: dict[str, Any], tmp: Path) -> tuple[Path, dict[str, Any]]:
    """The merge's one file, written to `tmp`, and what ffprobe says of it."""
    assert job["status"] == "finished", named(job, "m")
    name = named(job, "m")["result"]["files"][0]["filename"]
    path = tmp / f"out-{name}"
    path.write_bytes(exported(job))
    return path, ffprobe(path.read_bytes(), tmp, f"probe-{name}")


def samples(path: Path, at: float, seconds: float = 0.4) -> array.array[int]:
    raw = subprocess.run(
        [
            *("ffmpeg", "-nostdin", "-v", "error", "-i", str(path)),
            # Seeking after -i decodes from the start: exact, where a seek in the file lands on
            # an mp3 frame that decodes to silence.
            *("-ss", f"{at}", "-t", f"{seconds}", "-map", "0:a:0", "-ac", "1", "-ar", str(RATE)),
            *("-f", "s16le", "-"),
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    return array.array("h", raw)


def pitch(path: Path, at: float) -> float:
    """The frequency of the tone heard `at` seconds in, by counting zero crossings."""
    window = samples(path, at)
    crossings = sum(1 for a, b in itertools.pairwise(window) if (a < 0) != (b < 0))
    return crossings / 2 / (len(window) / RATE)


def failed(job: dict[str, Any]) -> dict[str, Any]:
    m = named(job, "m")
    assert m["status"] == "error" and m["code"] == "INVALID_INPUT", m
    return m


def test_audio_alike_is_joined_by_stream_copy_in_the_order_given(
    v2_daemon: Daemon, v2_key: str, tmp_path: Path
) -> None:
    # 96k is not what convertd encodes mp3 at (192k): the bitrate says nothing was re-encoded.
    # The second name has a quote and spaces: the concat list must quote it right.
    first = tone(tmp_path / "a.mp3", 440, 2, "-ac", "2", "-b:a", "96k")
    second = tone(tmp_path / "b's tune.mp3", 880, 3, "-ac", "2", "-b:a", "96k")
    out, info = result(merged(v2_daemon, v2_key, [first, second]), tmp_path)
    assert out.name == "out-a.mp3"  # the first input's stem, in its format
    [sound] = streams(info, "audio")
    assert streams(info, "video") == []
    assert sound["codec_name"] == "mp3" and sound["channels"] == 2
    assert abs(int(sound["bit_rate"]) - 96000) < 2000, sound["bit_rate"]
    assert abs(duration(info) - 5.0) < 0.3, duration(info)
    assert abs(pitch(out, 0.5) - 440) < 25
    assert abs(pitch(out, 4.0) - 880) < 25


def test_audio_that_differs_is_re_encoded_to_the_output_format(
    v2_daemon: Daemon, v2_key: str, tmp_path: Path
) -> None:
    files = [
        tone(tmp_path / "low.wav", 300, 1, "-ac", "1"),
        tone(tmp_path / "mid.flac", 600, 2, "-ac", "2", "-ar", "48000"),
        tone(tmp_path / "high.ogg", 1200, 1.5, "-ac", "2"),
    ]
    job = merged(v2_daemon, v2_key, files, output_format="mp3", filename="mix.wav")
    out, info = result(job, tmp_path)
    assert out.name == "out-mix.mp3"  # the name asked for, with the output's extension
    [sound] = streams(info, "audio")
    assert (sound["codec_name"], sound["sample_rate"]) == ("mp3", "44100")  # the first's rate
    assert abs(int(sound["bit_rate"]) - 192000) < 8000, sound["bit_rate"]  # audio.py's default
    assert abs(duration(info) - 4.5) < 0.3, duration(info)
    assert [round(pitch(out, at) / 100) for at in (0.3, 1.8, 3.8)] == [3, 6, 12]


def test_the_sound_of_videos_joined_into_an_audio_format(
    v2_daemon: Daemon, v2_key: str, tmp_path: Path
) -> None:
    clips = [make_video(tmp_path / "a.mp4", 1.0), make_video(tmp_path / "b.mp4", 2.0)]
    out, info = result(merged(v2_daemon, v2_key, clips, output_format="m4a"), tmp_path)
    assert out.name == "out-a.m4a"
    assert streams(info, "video") == []
    assert [s["codec_name"] for s in streams(info, "audio")] == ["aac"]
    assert abs(duration(info) - 3.0) < 0.3, duration(info)


def test_video_clips_alike_are_joined_by_stream_copy(
    v2_daemon: Daemon, v2_key: str, tmp_path: Path
) -> None:
    # yuv444p and mp3 sound: a re-encode would make yuv420p and aac, so these prove the copy.
    extra = ("-c:v", "libx264", "-pix_fmt", "yuv444p", "-c:a", "libmp3lame")
    clips = [
        make_video(tmp_path / "one.mp4", 2.0, "320x240", *extra),
        make_video(tmp_path / "two.mp4", 1.0, "320x240", *extra),
    ]
    out, info = result(merged(v2_daemon, v2_key, clips), tmp_path)
    assert out.name == "out-one.mp4"
    [picture] = streams(info, "video")
    [sound] = streams(info, "audio")
    assert (picture["codec_name"], picture["pix_fmt"]) == ("h264", "yuv444p")
    assert (picture["width"], picture["height"]) == (320, 240)
    assert sound["codec_name"] == "mp3"
    assert abs(duration(info) - 3.0) < 0.3, duration(info)


def test_video_clips_that_differ_are_re_encoded_to_the_first_ones_size(
    v2_daemon: Daemon, v2_key: str, tmp_path: Path
) -> None:
    clips = [
        make_video(tmp_path / "big.mp4", 2.0, "320x240"),
        make_video(tmp_path / "small.mkv", 1.0, "160x90", "-c:v", "mpeg4", "-c:a", "flac"),
        make_video(tmp_path / "mute.mp4", 1.0, "320x240", "-an"),  # silence is made for it
    ]
    out, info = result(merged(v2_daemon, v2_key, clips, output_format="mkv"), tmp_path)
    assert out.name == "out-big.mkv"
    [picture] = streams(info, "video")
    [sound] = streams(info, "audio")
    assert (picture["codec_name"], picture["width"], picture["height"]) == ("h264", 320, 240)
    assert picture["pix_fmt"] == "yuv420p" and sound["codec_name"] == "aac"
    assert abs(duration(info) - 4.0) < 0.3, duration(info)
    assert abs(pitch(out, 0.5) - 330) < 25  # the first clip's tone
    assert max(map(abs, samples(out, 3.3, 0.5))) < 50, "the last clip is silent"


def test_merge_refuses_what_does_not_go_together(
    v2_daemon: Daemon, v2_key: str, tmp_path: Path
) -> None:
    d, k = v2_daemon, v2_key
    for fmt in ("avi", "xyz"):
        assert "tasks.op.output_format" in refused_fields(d, k, "merge", output_format=fmt)
    song = tone(tmp_path / "song.mp3", 440, 1)
    clip = make_video(tmp_path / "clip.mp4", 1.0)
    page = tmp_path / "page.pdf"
    page.write_bytes(blank_pdf((100, 100)))
    mixed = failed(merged(d, k, [page, song]))
    assert "page.pdf is a PDF" in mixed["message"] and "song.mp3" in mixed["message"]
    assert "page.pdf" in failed(merged(d, k, [song, page], output_format="mp3"))["message"]
    assert "song.mp3" in failed(merged(d, k, [song], output_format="pdf"))["message"]
    both = failed(merged(d, k, [song, clip]))["message"]
    assert "audio with audio" in both and "output_format" in both
    assert "no picture" in failed(merged(d, k, [clip, song], output_format="mp4"))["message"]
    fake = tmp_path / "fake.mp3"
    fake.write_bytes(b"ID3 but then nothing an mp3 holds " * 20)
    unreadable = failed(merged(d, k, [song, fake]))["message"]
    assert "fake.mp3 is not audio or video" in unreadable
    # A concat playlist named like audio: never read as a list of other files.
    playlist = tmp_path / "list.mp3"
    playlist.write_text(f"ffconcat version 1.0\nfile '{song}'\nfile '{song}'\n")
    assert "list.mp3 is not audio or video" in failed(merged(d, k, [song, playlist]))["message"]


def test_merged_media_is_bounded_by_max_media_seconds(make_daemon: Any, tmp_path: Path) -> None:
    d = make_daemon(env={**V2_ENV, "CONVERTD_MAX_MEDIA_SECONDS": "3"})
    k = d.create_key("strict", "--plan", "pro")
    parts = [tone(tmp_path / f"{n}.wav", 440, 2) for n in range(2)]
    m = failed(merged(d, k, parts))
    assert m["message"].startswith(
        "The inputs last 4 s together, longer than the limit of 3 s for media (max_media_seconds)"
    ), m
    assert named(merged(d, k, parts[:1]), "m")["status"] == "finished"
    # Exactly the limit is within it: three 1 s tones as one MP3 of 3 s (the encoder writes a
    # few ms more, which was refused as "3 s together, longer than ... 3 s").
    thirds = [tone(tmp_path / f"third{n}.wav", 440, 1) for n in range(3)]
    _, info = result(merged(d, k, thirds, output_format="mp3"), tmp_path)
    assert abs(float(info["format"]["duration"]) - 3) < 0.1, info["format"]
    # Within the grace (3.18 s), whatever the output's encoder pads: an MP3 of it says 3.23 s,
    # which was refused as "The inputs last 3.2 s together" where wav passed (the
    # fourth stranger's case for conversions).
    halves = [tone(tmp_path / f"half{n}.wav", 440, 1.59) for n in range(2)]
    for fmt in ("mp3", "m4a", "wav"):
        _, info = result(merged(d, k, halves, output_format=fmt), tmp_path)
        assert 3.1 < float(info["format"]["duration"]) < 3.3, (fmt, info["format"])
