"""Audio and video through the API, checked with ffprobe: codec, duration, size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from convertd.clock import duration as said
from convertd.converters.ffmpeg import too_long
from tests.conftest import CORPUS, Daemon, tool_pids
from tests.media import duration, ffmpeg, ffprobe, make_audio, make_video, streams


def convert_and_probe(
    daemon: Daemon,
    key: str,
    tmp_path: Path,
    source: Path | bytes,
    name: str,
    filetype: str,
    fmt: str,
    options: dict[str, object] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Convert through the API and open the result with ffprobe: (status, probe)."""
    data = source if isinstance(source, bytes) else source.read_bytes()
    status, out = daemon.convert_and_fetch(key, data, name, filetype, fmt, options)
    assert out is not None, status
    return status, ffprobe(out.content, tmp_path)


AUDIO_OUT = {
    "mp3": ("mp3", "mp3"),
    "wav": ("pcm_s16le", "wav"),
    "ogg": ("vorbis", "ogg"),
    "flac": ("flac", "flac"),
    "aac": ("aac", "aac"),
    "m4a": ("aac", "mov,mp4,m4a,3gp,3g2,mj2"),
    "opus": ("opus", "ogg"),
}
AUDIO_IN = {
    # Beyond the usual ones: audio from films and from audio tools.
    "ac3": ("-c:a", "ac3"),
    "eac3": ("-c:a", "eac3"),
    "dts": ("-c:a", "dca", "-strict", "-2", "-ar", "48000"),
    "wv": ("-c:a", "wavpack"),
    "tta": ("-c:a", "tta"),
    "caf": ("-c:a", "pcm_s16le"),
    "au": ("-c:a", "pcm_s16be"),
    "mp2": ("-c:a", "mp2"),
    "mka": ("-c:a", "libvorbis"),
    "mp3": ("-c:a", "libmp3lame"),
    "wav": ("-c:a", "pcm_s16le"),
    "ogg": ("-c:a", "libvorbis"),
    "flac": ("-c:a", "flac"),
    "aac": ("-c:a", "aac", "-f", "adts"),
    "m4a": ("-c:a", "aac"),
    "opus": ("-c:a", "libopus"),
    "wma": ("-c:a", "wmav2", "-f", "asf"),
    "aiff": ("-c:a", "pcm_s16be"),
}


@pytest.fixture(scope="module")
def audio_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("audio")
    return {fmt: make_audio(tmp / f"tone.{fmt}", 3.0, *args) for fmt, args in AUDIO_IN.items()}


@pytest.mark.parametrize("src", sorted(AUDIO_IN))
def test_audio_inputs_to_mp3(
    daemon: Daemon, key: str, audio_inputs: dict[str, Path], src: str, tmp_path: Path
) -> None:
    _status, info = convert_and_probe(
        daemon, key, tmp_path, audio_inputs[src], f"t.{src}", "audio", "mp3"
    )
    assert streams(info, "audio")[0]["codec_name"] == "mp3"
    assert abs(duration(info) - 3.0) < 0.2


@pytest.mark.parametrize("dst", sorted(AUDIO_OUT))
def test_audio_outputs(
    daemon: Daemon, key: str, audio_inputs: dict[str, Path], dst: str, tmp_path: Path
) -> None:
    status, info = convert_and_probe(
        daemon, key, tmp_path, audio_inputs["wav"], "t.wav", "audio", dst
    )
    codec, container = AUDIO_OUT[dst]
    assert streams(info, "audio")[0]["codec_name"] == codec
    assert info["format"]["format_name"] == container
    assert abs(duration(info) - 3.0) < 0.2
    assert status["file_name"] == f"t.{dst}"


def test_audio_options(
    daemon: Daemon, key: str, audio_inputs: dict[str, Path], tmp_path: Path
) -> None:
    _status, info = convert_and_probe(
        daemon,
        key,
        tmp_path,
        audio_inputs["flac"],
        "t.flac",
        "audio",
        "mp3",
        {
            "bitrate": "96k",
            "sample_rate": 22050,
            "channels": 1,
            "trim_start": 0.5,
            "trim_end": 2.0,
            "normalize": True,
        },
    )
    audio = streams(info, "audio")[0]
    assert audio["sample_rate"] == "22050" and audio["channels"] == 1
    assert abs(int(audio["bit_rate"]) - 96000) < 5000
    assert abs(duration(info) - 1.5) < 0.2


@pytest.mark.parametrize(
    "options",
    [
        {"bitrate": "loud"},
        {"bitrate": "-filter_complex"},
        {"channels": 0},
        {"trim_start": 2, "trim_end": 1},
        {"sample_rate": "44100"},
        {"normalize": {"on": True}},
    ],
)
def test_bad_audio_options(
    daemon: Daemon, key: str, audio_inputs: dict[str, Path], options: dict[str, object]
) -> None:
    resp = daemon.convert(key, audio_inputs["wav"].read_bytes(), "t.wav", "audio", "mp3", options)
    assert resp.status_code == 400 and "options" in resp.json()["message"]


CORPUS_AUDIO = [
    "aac-lc.m4a",
    "aiff-pcm.aif",
    "flac-with-cover-art.flac",
    "float32-6ch-extensible.wav",
    "id3-i18n-tags.mp3",
    "opus.opus",
    "vorbis.ogg",
    "wma-v2.wma",
    "vbr-xing.mp3",
    "speech-mono.mp3",
]


@pytest.mark.parametrize("name", CORPUS_AUDIO)
def test_real_world_audio(daemon: Daemon, key: str, name: str, tmp_path: Path) -> None:
    data = (CORPUS / "audio" / name).read_bytes()
    source = ffprobe(data, tmp_path, "source" + Path(name).suffix)
    _, info = convert_and_probe(daemon, key, tmp_path, data, name, "audio", "ogg")
    assert streams(info, "audio")[0]["codec_name"] == "vorbis"
    assert streams(info, "video") == []  # cover art is not carried into audio
    assert abs(duration(info) - duration(source)) < 0.2


def test_audio_without_samples_fails_cleanly(daemon: Daemon, key: str) -> None:
    data = (CORPUS / "audio" / "empty-header-only.wav").read_bytes()
    status, out = daemon.convert_and_fetch(key, data, "empty.wav", "audio", "mp3")
    assert out is None and status["status"] == "failed"
    assert "audio" in status["error"] and "Traceback" not in status["error"]


VIDEO_IN = {
    "mp4": ("-c:v", "libx264", "-pix_fmt", "yuv420p"),
    "mov": ("-c:v", "libx264", "-pix_fmt", "yuv420p"),
    "mkv": ("-c:v", "libx264"),
    "webm": ("-c:v", "libvpx", "-c:a", "libvorbis"),
    "avi": ("-c:v", "mpeg4", "-c:a", "libmp3lame"),
    "flv": ("-c:v", "flv1", "-c:a", "libmp3lame", "-ar", "44100"),
    "wmv": ("-c:v", "wmv2", "-c:a", "wmav2", "-f", "asf"),
    "mpeg": ("-c:v", "mpeg2video", "-c:a", "mp2", "-f", "mpeg"),
}
VIDEO_OUT = {
    "mp4": ("h264", "aac"),
    "mov": ("h264", "aac"),
    "mkv": ("h264", "aac"),
    "webm": ("vp9", "opus"),
    "avi": ("mpeg4", "mp3"),
}


@pytest.fixture(scope="module")
def video_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("video")
    return {
        fmt: make_video(tmp / f"clip.{fmt}", 2.0, "320x240", *args)
        for fmt, args in VIDEO_IN.items()
    }


@pytest.mark.parametrize("src", sorted(VIDEO_IN))
def test_video_inputs_to_mp4(
    daemon: Daemon, key: str, video_inputs: dict[str, Path], src: str, tmp_path: Path
) -> None:
    _status, info = convert_and_probe(
        daemon, key, tmp_path, video_inputs[src], f"c.{src}", "video", "mp4"
    )
    video = streams(info, "video")[0]
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 320, 240)
    assert streams(info, "audio")[0]["codec_name"] == "aac"
    assert abs(duration(info) - 2.0) < 0.2


@pytest.mark.parametrize("dst", sorted(VIDEO_OUT))
def test_video_outputs(
    daemon: Daemon, key: str, video_inputs: dict[str, Path], dst: str, tmp_path: Path
) -> None:
    _status, info = convert_and_probe(
        daemon, key, tmp_path, video_inputs["mp4"], "c.mp4", "video", dst
    )
    vcodec, acodec = VIDEO_OUT[dst]
    assert streams(info, "video")[0]["codec_name"] == vcodec
    assert streams(info, "audio")[0]["codec_name"] == acodec
    assert abs(duration(info) - 2.0) < 0.2


@pytest.mark.parametrize(("dst", "codec"), [("mp3", "mp3"), ("wav", "pcm_s16le")])
def test_video_audio_track(
    daemon: Daemon, key: str, video_inputs: dict[str, Path], dst: str, codec: str, tmp_path: Path
) -> None:
    _status, info = convert_and_probe(
        daemon, key, tmp_path, video_inputs["mkv"], "c.mkv", "video", dst
    )
    assert streams(info, "video") == []
    assert streams(info, "audio")[0]["codec_name"] == codec
    assert abs(duration(info) - 2.0) < 0.2


def test_video_to_gif(daemon: Daemon, key: str, video_inputs: dict[str, Path]) -> None:
    from io import BytesIO

    from PIL import Image

    status, out = daemon.convert_and_fetch(
        key, video_inputs["mp4"].read_bytes(), "c.mp4", "video", "gif", {"width": 160, "fps": 5}
    )
    assert out is not None, status
    with Image.open(BytesIO(out.content)) as im:
        assert im.format == "GIF" and im.size == (160, 120)
        assert getattr(im, "n_frames", 1) >= 9


MUTED_LOW = {"mute": True, "quality": "low"}


def test_video_options(
    daemon: Daemon, key: str, video_inputs: dict[str, Path], tmp_path: Path
) -> None:
    _status, info = convert_and_probe(
        daemon,
        key,
        tmp_path,
        video_inputs["mp4"],
        "c.mp4",
        "video",
        "webm",
        {
            "video_codec": "vp8",
            "audio_codec": "vorbis",
            "width": 160,
            "fps": 10,
            "trim_start": 0.5,
            "trim_end": 1.5,
            "crf": 30,
        },
    )
    video = streams(info, "video")[0]
    assert (video["codec_name"], video["width"], video["height"]) == ("vp8", 160, 120)
    assert video["r_frame_rate"] == "10/1"
    assert streams(info, "audio")[0]["codec_name"] == "vorbis"
    assert abs(duration(info) - 1.0) < 0.2
    _, info = convert_and_probe(
        daemon, key, tmp_path, video_inputs["mp4"], "c.mp4", "video", "mp4", MUTED_LOW
    )
    assert streams(info, "audio") == []


@pytest.mark.parametrize(
    "options",
    [
        {"video_codec": "vp9", "audio_codec": "pcm"},
        {"video_codec": "h264"},
        {"crf": 99},
        {"crf": 20, "quality": "high"},
        {"width": 1e9},
    ],
)
def test_bad_video_options(
    daemon: Daemon, key: str, video_inputs: dict[str, Path], options: dict[str, object]
) -> None:
    resp = daemon.convert(key, video_inputs["mp4"].read_bytes(), "c.mp4", "video", "webm", options)
    assert resp.status_code == 400, resp.text


CORPUS_VIDEO = [
    "camera-rotated-180-gps.mp4",
    "h263.3gp",
    "h264-aac.flv",
    "h264-aac.mp4",
    "h264-ac3-srt-subs.mkv",
    "hevc-10bit-hdr.mp4",
    "mpeg4-mp3.avi",
    "quicktime-pcm.mov",
    "vp8-vorbis.webm",
    "vp9-alpha.webm",
    "vp9-square.webm",
    "wmv3.wmv",
]


@pytest.mark.parametrize("name", CORPUS_VIDEO)
def test_real_world_video(daemon: Daemon, key: str, name: str, tmp_path: Path) -> None:
    data = (CORPUS / "video" / name).read_bytes()
    source = ffprobe(data, tmp_path, "source" + Path(name).suffix)
    _, info = convert_and_probe(daemon, key, tmp_path, data, name, "video", "mp4", {"width": 320})
    video = streams(info, "video")[0]
    assert video["codec_name"] == "h264" and video["width"] == 320
    assert abs(duration(info) - duration(source)) < 0.3
    assert "location" not in str(info["format"].get("tags", {})).lower()


def test_corrupt_video_fails_cleanly(
    daemon: Daemon, key: str, video_inputs: dict[str, Path]
) -> None:
    data = video_inputs["mp4"].read_bytes()
    status, out = daemon.convert_and_fetch(
        key, data[:2000] + b"\0" * 5000, "broken.mp4", "video", "webm"
    )
    assert out is None and status["status"] == "failed"
    assert "video" in status["error"]
    _ok, fine = daemon.convert_and_fetch(key, data, "fine.mp4", "video", "mkv")
    assert fine is not None


def test_progress_is_reported_while_processing(make_daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = make_daemon(workers=1)
    key = d.create_key("progress", "--plan", "pro")
    clip = make_video(
        tmp_path / "long.mp4", 40.0, "640x360", "-c:v", "libx264", "-preset", "ultrafast"
    )
    job = d.convert(
        key, clip.read_bytes(), "long.mp4", "video", "webm", {"video_codec": "vp9", "crf": 10}
    ).json()
    seen = set()
    while True:
        status = requests.get(job["status_url"], headers={"X-API-Key": key}, timeout=5).json()
        if status["status"] == "processing":
            seen.add(status["progress"])
        if status["status"] in {"finished", "failed"}:
            break
    assert status["status"] == "finished"
    assert any(0 < p < 100 for p in seen), seen


def ffmpeg_pids(data_dir: Path) -> list[int]:
    return tool_pids("ffmpeg", data_dir)


def test_timeout_kills_ffmpeg(make_daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import time

    d = make_daemon(env={"CONVERTD_JOB_TIMEOUT_SECONDS": "3"}, workers=1)
    key = d.create_key("timeout", "--plan", "pro")
    clip = make_video(
        tmp_path / "long.mp4", 60.0, "1280x720", "-c:v", "libx264", "-preset", "ultrafast"
    )
    job = d.convert(
        key, clip.read_bytes(), "long.mp4", "video", "webm", {"video_codec": "vp9", "crf": 4}
    ).json()
    seen_running = False
    while True:
        status = requests.get(job["status_url"], headers={"X-API-Key": key}, timeout=5).json()
        seen_running = seen_running or bool(ffmpeg_pids(d.data_dir))
        if status["status"] in {"finished", "failed"}:
            break
        time.sleep(0.1)
    assert seen_running
    assert status["status"] == "failed" and "longer than 3 s" in status["error"]
    assert ffmpeg_pids(d.data_dir) == []
    # The work directory is gone too, and the daemon still converts.
    assert list((d.data_dir / "work").iterdir()) == []
    _, ok = d.convert_and_fetch(
        key, make_audio(tmp_path / "t.wav", 1.0).read_bytes(), "t.wav", "audio", "mp3"
    )
    assert ok is not None


@pytest.mark.parametrize("name", ["noise.mp3", "noise.flac", "noise.m4a"])
def test_corrupt_audio_fails_cleanly(daemon: Daemon, key: str, name: str) -> None:
    import os as _os

    status, out = daemon.convert_and_fetch(key, _os.urandom(20_000), name, "audio", "wav")
    assert out is None and status["status"] == "failed"
    assert "audio" in status["error"] and "Traceback" not in status["error"]


@pytest.mark.parametrize(
    ("filetype", "source", "fmt", "options"),
    [
        ("audio", "wav", "wav", {"trim_start": 5}),
        ("audio", "wav", "mp3", {"trim_start": 3.0}),
        ("audio", "flac", "m4a", {"trim_start": 60, "trim_end": 70}),
        ("video", "mp4", "mp4", {"trim_start": 2.5}),
        ("video", "mkv", "mp3", {"trim_start": 9}),
    ],
)
def test_trim_past_the_end_fails_clearly(
    daemon: Daemon,
    key: str,
    audio_inputs: dict[str, Path],
    video_inputs: dict[str, Path],
    filetype: str,
    source: str,
    fmt: str,
    options: dict[str, object],
) -> None:
    # The inputs last 3 s (audio) and 2 s (video): nothing is left after these starts. The job
    # must fail and say why, never finish with an empty or unplayable file.
    inputs = audio_inputs if filetype == "audio" else video_inputs
    data = inputs[source].read_bytes()
    status, out = daemon.convert_and_fetch(key, data, f"t.{source}", filetype, fmt, options)
    assert out is None and status["status"] == "failed", status
    assert "trim_start" in status["error"] and "past the end" in status["error"]


def test_output_with_no_media_is_a_failure(
    daemon: Daemon, key: str, audio_inputs: dict[str, Path]
) -> None:
    # An MP3 cut short after 1 s whose header (LAME's Info frame) still claims 3 s: a start at
    # 2 s passes the duration check, and FFmpeg writes a header with no samples (a 78-byte
    # WAV). That is not a result.
    data = audio_inputs["mp3"].read_bytes()
    short = data[: len(data) // 3]
    status, out = daemon.convert_and_fetch(key, short, "cut.mp3", "audio", "wav", {"trim_start": 2})
    assert out is None and status["status"] == "failed", status
    assert "no media" in status["error"]


@pytest.mark.parametrize("dst", ["flac", "m4a", "mp3", "wav", "ogg"])
def test_normalize_keeps_the_input_sample_rate(
    daemon: Daemon, key: str, audio_inputs: dict[str, Path], dst: str, tmp_path: Path
) -> None:
    # FFmpeg's loudnorm works at 192 kHz; the output keeps the input's 44.1 kHz unless
    # sample_rate asks for another.
    _status, info = convert_and_probe(
        daemon, key, tmp_path, audio_inputs["wav"], "t.wav", "audio", dst, {"normalize": True}
    )
    assert streams(info, "audio")[0]["sample_rate"] == "44100"


@pytest.mark.parametrize(
    ("dst", "options", "named"),
    [
        ("opus", {"sample_rate": 44100}, "48000"),
        ("mp3", {"sample_rate": 96000}, "48000"),
        ("mp3", {"channels": 6}, "1, 2"),
        ("opus", {"channels": 3}, "5, 6"),
    ],
)
def test_sample_rates_the_encoder_cannot_write_are_a_400(
    daemon: Daemon,
    key: str,
    audio_inputs: dict[str, Path],
    dst: str,
    options: dict[str, object],
    named: str,
) -> None:
    resp = daemon.convert(key, audio_inputs["wav"].read_bytes(), "t.wav", "audio", dst, options)
    (option,) = options
    assert resp.status_code == 400 and option in resp.json()["message"]
    assert named in resp.json()["message"]


def test_mono_low_rate_ogg_converts(
    daemon: Daemon, key: str, audio_inputs: dict[str, Path], tmp_path: Path
) -> None:
    _status, info = convert_and_probe(
        daemon,
        key,
        tmp_path,
        audio_inputs["wav"],
        "t.wav",
        "audio",
        "ogg",
        {"channels": 1, "sample_rate": 22050},
    )
    audio = streams(info, "audio")[0]
    assert (audio["channels"], audio["sample_rate"]) == (1, "22050")


def test_revoking_a_key_stops_its_jobs(make_daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # A revoked key's result can never be downloaded: its running job is stopped (FFmpeg
    # killed with its group), its queued job cancelled, and the daemon carries on.
    import sqlite3
    import time

    from tests.daemon import run_cli

    d = make_daemon(workers=1)
    key = d.create_key("leaver", "--plan", "pro")
    other = d.create_key("stayer", "--plan", "pro")
    clip = make_video(
        tmp_path / "long.mp4", 60.0, "1280x720", "-c:v", "libx264", "-preset", "ultrafast"
    )
    options = {"video_codec": "vp9", "crf": 4}
    running = d.convert(key, clip.read_bytes(), "long.mp4", "video", "webm", options).json()
    queued = d.convert(key, clip.read_bytes(), "long2.mp4", "video", "webm", options).json()
    deadline = time.monotonic() + 60
    while not ffmpeg_pids(d.data_dir):
        assert time.monotonic() < deadline, "FFmpeg never started"
        time.sleep(0.1)
    key_id = run_cli(d.data_dir, "keys", "list", "--json").stdout
    (leaver,) = [k["key_id"] for k in json.loads(key_id) if k["name"] == "leaver"]
    run_cli(d.data_dir, "keys", "revoke", str(leaver))
    deadline = time.monotonic() + 15
    while ffmpeg_pids(d.data_dir):
        assert time.monotonic() < deadline, "FFmpeg still runs for a revoked key"
        time.sleep(0.1)
    db = sqlite3.connect(d.data_dir / "convertd.db")
    try:
        rows = db.execute(
            "SELECT id, status, error FROM jobs WHERE id IN (?, ?)",
            (running["job_id"], queued["job_id"]),
        ).fetchall()
    finally:
        db.close()
    assert {(status, "revoked" in error) for _, status, error in rows} == {("failed", True)}
    assert len(rows) == 2
    _, ok = d.convert_and_fetch(
        other, make_audio(tmp_path / "t.wav", 1.0).read_bytes(), "t.wav", "audio", "mp3"
    )
    assert ok is not None  # the worker carries on


def test_a_stream_the_container_cannot_hold_is_said_plainly(
    daemon: Daemon, key: str, video_inputs: dict[str, Path]
) -> None:
    # H.264 copied into webm: FFmpeg refuses with its own text; the user hears what to do.
    status, out = daemon.convert_and_fetch(
        key, video_inputs["mp4"].read_bytes(), "c.mp4", "video", "webm", {"video_codec": "copy"}
    )
    assert out is None and status["status"] == "failed", status
    assert status["error"] == (
        "The input's video is h264, which webm cannot hold as it is; "
        "leave out video_codec: copy to re-encode it, or convert to mkv"
    )


def test_ffmpeg_text_is_never_the_users_error(
    audio_inputs: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Real FFmpeg, asked for an encoder it does not have: the user's error says what failed in
    # plain words; FFmpeg's own line goes to the log for the admin.
    import asyncio
    import logging
    from concurrent.futures import ThreadPoolExecutor

    from convertd.converters import ffmpeg
    from convertd.converters.base import Limits, Task
    from convertd.errors import ConversionError

    async def scenario() -> str:
        async def report(_: int) -> None:
            return None

        with ThreadPoolExecutor(1) as threads:
            task = Task(
                job_id="t",
                input_path=audio_inputs["wav"],
                input_name="t.wav",
                input_format="wav",
                output_format="wav",
                options={},
                work_dir=tmp_path,
                limits=Limits(max_image_pixels=10**8, job_timeout_seconds=60),
                report_progress=report,
                threads=threads,
            )
            try:
                await ffmpeg.transcode(
                    task,
                    ffmpeg.AUDIO_DEMUXERS,
                    "audio",
                    lambda _info: ["-c:a", "no_such_encoder"],
                    "audio",
                )
            except ConversionError as exc:
                return str(exc)
        raise AssertionError("FFmpeg did not fail")

    with caplog.at_level(logging.WARNING):
        error = asyncio.run(scenario())
    assert error.startswith("Could not convert this audio") and "no_such_encoder" not in error
    assert "no_such_encoder" in caplog.text


def amr_recording(seconds: float) -> bytes:
    """An AMR-NB voice recording as phones store them: the magic, then 12.2 kbit/s frames
    (Debian's FFmpeg decodes AMR but cannot encode it, so the frames are written here)."""
    import random

    rng = random.Random(7)
    frames = int(seconds * 50)  # 20 ms each
    return b"#!AMR\n" + b"".join(b"\x3c" + rng.randbytes(31) for _ in range(frames))


@pytest.mark.parametrize("name", ["memo.amr", "memo.bin"])
def test_amr_voice_recordings_convert(daemon: Daemon, key: str, name: str, tmp_path: Path) -> None:
    _status, info = convert_and_probe(
        daemon, key, tmp_path, amr_recording(4.0), name, "audio", "mp3"
    )
    assert streams(info, "audio")[0]["codec_name"] == "mp3"
    assert abs(duration(info) - 4.0) < 0.3


@pytest.mark.parametrize(
    ("filetype", "source", "name", "fmt"),
    [
        # Formats no magic number of convertd's names, under names it does not know.
        ("audio", "ac3", "voice.xyz", "mp3"),
        ("audio", "wv", "take-7", "wav"),  # no extension at all
        ("video", "flv", "clip.video", "mp4"),
        ("video", "mpeg", "clip", "webm"),
    ],
)
def test_media_is_accepted_by_what_it_holds(
    daemon: Daemon,
    key: str,
    audio_inputs: dict[str, Path],
    video_inputs: dict[str, Path],
    filetype: str,
    source: str,
    name: str,
    fmt: str,
    tmp_path: Path,
) -> None:
    inputs = audio_inputs if filetype == "audio" else video_inputs
    _status, info = convert_and_probe(daemon, key, tmp_path, inputs[source], name, filetype, fmt)
    assert streams(info, filetype)


def test_what_ffmpeg_cannot_read_is_a_400_naming_it(daemon: Daemon, key: str) -> None:
    resp = daemon.convert(key, b"just some text\n" * 100, "notes.xyz", "audio", "mp3")
    assert resp.status_code == 400 and "xyz" in resp.json()["message"], resp.text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.5, "0.5 s"),
        (30.02, "30 s"),
        (59.96, "1 min"),
        (365, "6 min 5 s"),
        (3599.6, "1 h"),
        (6 * 3600 + 120, "6 h 2 min"),
        (6 * 3600 + 20, "6 h 20 s"),  # just over a 6 h limit: never "6 h" like the limit
    ],
)
def test_durations_read_as_people_say_them(seconds: float, text: str) -> None:
    assert said(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "limit", "text"),
    [
        (30.0, 20.0, "The input lasts 30 s, longer than the limit of 20 s (max_media_seconds)"),
        # Just over: not "1 min, longer than ... 1 min" (the second stranger's 20.04 s clip;
        # under a minute, a length refused, 0.2 s past the limit, reads apart from it).
        (
            60.3,
            60.0,
            "The input lasts just over 1 min (60.30 s), longer than the limit of 1 min (max_media_seconds)",
        ),
        (
            3700.0,
            3600.0,
            "The input lasts 1 h 1 min 40 s, longer than the limit of 1 h (max_media_seconds)",
        ),
    ],
)
def test_a_refusal_never_says_the_length_equals_the_limit(
    seconds: float, limit: float, text: str
) -> None:
    assert str(too_long(seconds, limit)) == text


def test_a_six_hour_mp3_is_within_the_default_six_hour_limit(
    daemon: Daemon, key: str, tmp_path: Path
) -> None:
    """An MP3 of 6 h made with -t 21600 claims 21600.05 s (its last frame's padding) and was
    refused as "just over 6 h (21600.05 s)" against the default limit (the third stranger's
    rule). Made by copying one minute's frames over and over (0.7 s, 21.6 MB); the trim keeps
    the conversion short, and the limit is still held to the whole input."""
    minute = tmp_path / "minute.mp3"
    ffmpeg(*("-f", "lavfi", "-i", "sine=sample_rate=22050", "-t", "60", "-b:a", "8k", str(minute)))
    six = tmp_path / "six.mp3"
    ffmpeg("-stream_loop", "-1", "-i", str(minute), "-c", "copy", "-t", "21600", str(six))
    assert float(ffprobe(six.read_bytes(), tmp_path)["format"]["duration"]) > 21600
    status, info = convert_and_probe(
        daemon, key, tmp_path, six, "six.mp3", "audio", "mp3", {"trim_end": 2}
    )
    assert abs(duration(info) - 2.0) < 0.1, status


def test_a_length_over_the_limit_is_said_readably(make_daemon: Any, tmp_path: Path) -> None:
    """A 30 s clip against max_media_seconds = 20: both lengths as people read them (it said
    "The input lasts 0.0 h, longer than this server's limit of 0.0 h")."""
    d = make_daemon(
        env={"CONVERTD_MAX_MEDIA_SECONDS": "20", "CONVERTD_OFFICE_PREWARM": "false"}, workers=1
    )
    key = d.create_key("limited", "--plan", "pro")
    refusal = "The input lasts 30 s, longer than the limit of 20 s (max_media_seconds)"
    clip = make_video(tmp_path / "clip.mp4", 30.0, "64x64")
    status, out = d.convert_and_fetch(key, clip.read_bytes(), "clip.mp4", "video", "webm")
    assert out is None and status["error"] == refusal, status
    song = make_audio(tmp_path / "song.wav", 30.0)
    status, out = d.convert_and_fetch(key, song.read_bytes(), "song.wav", "audio", "mp3")
    assert out is None and status["error"] == refusal, status


def test_mpeg2_video_is_copied_into_mp4(daemon: Daemon, key: str, tmp_path: Path) -> None:
    """MP4 holds MPEG-2 video as it is (bare `ffmpeg -i clip.mkv -c:v copy -c:a aac x.mp4`
    does it); it was refused as a codec mp4 cannot hold."""
    clip = make_video(tmp_path / "clip.mkv", 1.0, "160x120", "-c:v", "mpeg2video", "-c:a", "mp2")
    status, info = convert_and_probe(
        daemon, key, tmp_path, clip, "clip.mkv", "video", "mp4", {"video_codec": "copy"}
    )
    assert [s["codec_name"] for s in streams(info, "video")] == ["mpeg2video"], status
    assert [s["codec_name"] for s in streams(info, "audio")] == ["aac"]
    assert "mp4" in info["format"]["format_name"]
    # What FFmpeg 5.1 will not write is still said plainly, not left to fail as a damaged file:
    # H.264 from MP4 (avcC) into AVI, FLAC into MP4.
    for name, fmt, options, refusal in [
        ("c.mp4", "avi", {"video_codec": "copy"}, "The input's video is h264, which avi"),
        ("c.mkv", "mp4", {"audio_codec": "copy"}, "The input's audio is flac, which mp4"),
    ]:
        source = make_video(tmp_path / name, 1.0, "64x64", *(["-c:a", "flac"] * (fmt == "mp4")))
        status, out = daemon.convert_and_fetch(
            key, source.read_bytes(), name, "video", fmt, options
        )
        assert out is None and status["error"].startswith(refusal), status


@pytest.mark.parametrize(
    ("options", "fields"),
    [
        ({"video_codec": "copy", "width": 160}, ["width"]),
        ({"video_codec": "copy", "height": 90, "fps": 10, "crf": 20}, ["height", "fps", "crf"]),
        ({"video_codec": "copy", "quality": "low"}, ["quality"]),
        ({"audio_codec": "copy", "bitrate": "64k"}, ["bitrate"]),
        # Both copies: every option of both is named (the third stranger: only fps was).
        (
            {"video_codec": "copy", "audio_codec": "copy", "fps": 10, "bitrate": "64k"},
            ["fps", "bitrate"],
        ),
    ],
)
def test_a_copy_with_options_that_need_re_encoding_is_refused_naming_them(
    daemon: Daemon, key: str, tmp_path: Path, options: dict[str, Any], fields: list[str]
) -> None:
    """video_codec: copy silently ignored width (the second stranger): a stream copied as it
    is cannot be resized, re-timed or re-compressed, so the request is refused, naming every
    option it cannot honour, on v1 (400, its shape for any bad option) and /v2 (422, each
    field in `errors`)."""
    clip = make_video(tmp_path / "c.mp4", 1.0, "320x240")
    codecs = [name for name in options if name.endswith("_codec")]
    resp = daemon.convert(key, clip.read_bytes(), "c.mp4", "video", "mkv", options)
    assert resp.status_code == 400, resp.text
    message = resp.json()["message"]
    assert all(f"option '{codec}' copy keeps the" in message for codec in codecs), message
    assert all(f"'{name}'" in message for name in fields), message
    # /v2 names each field as the client sent it: CloudConvert's audio_bitrate (whole kbps)
    # where one was sent, in `errors` and in the message alike.
    sent = dict(options)
    if "bitrate" in sent:
        sent["audio_bitrate"] = int(sent.pop("bitrate").rstrip("k"))
    task = {"operation": "convert", "input": "in", "output_format": "mkv", **sent}
    body = {"tasks": {"in": {"operation": "import/upload"}, "c": task}}
    resp = requests.post(
        f"http://127.0.0.1:{daemon.port}/v2/jobs",
        headers={"Authorization": f"Bearer {key}"},
        json=body,
        timeout=30,
    )
    assert resp.status_code == 422, resp.text
    named = [name for name in sent if name not in ("video_codec", "audio_codec")]
    assert set(resp.json()["errors"]) == {f"tasks.c.{name}" for name in (*codecs, *named)}
    if "audio_bitrate" in sent:
        assert "'audio_bitrate'" in resp.text and "'bitrate'" not in resp.text, resp.text
    # Without the copy, the same options re-encode as asked.
    for codec in codecs:
        del options[codec]
    status, out = daemon.convert_and_fetch(key, clip.read_bytes(), "c.mp4", "video", "mkv", options)
    assert out is not None, status
    if "width" in options:
        assert streams(ffprobe(out.content, tmp_path, "o.mkv"), "video")[0]["width"] == 160


def test_a_copy_into_an_output_that_is_always_encoded_is_refused(
    daemon: Daemon, key: str, tmp_path: Path
) -> None:
    """gif, mp3 and wav are always encoded: a copy asked of them was ignored without a word
    (the third stranger: mp3 with audio_codec copy and bitrate finished). It is refused."""
    clip = make_video(tmp_path / "c.mp4", 1.0, "160x120")
    for fmt, options, named in (
        ("mp3", {"audio_codec": "copy", "bitrate": "64k"}, "'audio_codec'"),
        ("wav", {"audio_codec": "copy"}, "'audio_codec'"),
        ("gif", {"video_codec": "copy", "audio_codec": "copy"}, "'video_codec' and 'audio_codec'"),
    ):
        resp = daemon.convert(key, clip.read_bytes(), "c.mp4", "video", fmt, options)
        assert resp.status_code == 400, resp.text
        them = "them" if " and " in named else "it"  # the fourth stranger: "it" for two
        assert resp.json()["message"] == (
            f"The field 'options' is invalid: option {named} copy cannot apply to {fmt}, "
            f"which is always encoded: leave {them} out."
        )
    _, info = convert_and_probe(
        daemon, key, tmp_path, clip, "c.mp4", "video", "mp3", {"bitrate": "64k"}
    )
    assert streams(info, "audio")[0]["bit_rate"] == "64000", info


def test_a_trimmed_copy_starts_at_a_keyframe_as_the_formats_say(
    daemon: Daemon, key: str, tmp_path: Path
) -> None:
    """FFmpeg cannot cut a stream copy between keyframes (the second stranger: a trim on a copy
    starts at the keyframe): convertd does not re-encode behind the user's back, and says so
    where the options are listed. A clip with keyframes at 0, 4 and 8 s, trimmed to 3-6 s."""
    clip = make_video(tmp_path / "gop.mp4", 10.0, "160x120", "-g", "100")
    options = {"video_codec": "copy", "trim_start": 3, "trim_end": 6}
    # mp4: an edit list hides the frames from the keyframe at 0 s to 3 s; 3 s are played.
    status, info = convert_and_probe(
        daemon, key, tmp_path, clip, "gop.mp4", "video", "mp4", options
    )
    assert abs(duration(info) - 3.0) < 0.2, status
    # mkv: no edit list, so the video starts at that keyframe, 3 s before the sound.
    status, info = convert_and_probe(
        daemon, key, tmp_path, clip, "gop.mp4", "video", "mkv", options
    )
    sound = streams(info, "audio")[0]
    assert abs(float(sound["start_time"]) - 3.0) < 0.1 and duration(info) > 5.5, info
    # avi has no start times: its sound would play from the keyframe, 3 s ahead of the picture.
    # (An MPEG-4 Part 2 clip: avi cannot hold this H.264 as it is.)
    part2 = make_video(tmp_path / "gop.mkv", 10.0, "160x120", "-g", "100", "-c:v", "mpeg4")
    status, out = daemon.convert_and_fetch(
        key, part2.read_bytes(), "gop.mkv", "video", "avi", options
    )
    assert out is None and "out of step" in status["error"], status
    # The way out the README gives, named in the refusal (the third stranger): muted, it copies.
    assert "set 'mute' to drop the sound" in status["error"], status
    # With no sound there is nothing to go out of step: copied (the fourth stranger's video
    # alone was refused for its sound).
    silent = make_video(
        tmp_path / "silent.mkv", 10.0, "160x120", "-g", "100", "-c:v", "mpeg4", "-an"
    )
    status, info = convert_and_probe(
        daemon, key, tmp_path, silent, "silent.mkv", "video", "avi", options
    )
    assert not streams(info, "audio") and streams(info, "video")[0]["codec_name"] == "mpeg4"
    assert duration(info) > 5.5, info  # from the keyframe at 0 s
    status, info = convert_and_probe(
        daemon, key, tmp_path, part2, "gop.mkv", "video", "avi", {**options, "mute": True}
    )
    assert not streams(info, "audio") and streams(info, "video")[0]["codec_name"] == "mpeg4"
    # Re-encoded, the cut is exact.
    del options["video_codec"]
    status, info = convert_and_probe(
        daemon, key, tmp_path, clip, "gop.mp4", "video", "mkv", options
    )
    assert abs(duration(info) - 3.0) < 0.1, info["format"]
    listed = requests.get(f"{daemon.base}/formats", headers={"X-API-Key": key}, timeout=10).json()
    said = json.dumps(listed)
    assert "with video_codec copy the video starts at the keyframe at or before trim_start" in said
    assert "copy keeps the video as it is (no width, height, fps, crf or quality" in said
