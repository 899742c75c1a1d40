"""Helpers to make media with FFmpeg and inspect it with ffprobe."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, timeout=120)


def make_audio(path: Path, seconds: float = 3.0, *extra: str) -> Path:
    ffmpeg(
        "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-ac", "2", *extra, str(path)
    )
    return path


def make_video(path: Path, seconds: float = 2.0, size: str = "320x240", *extra: str) -> Path:
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"testsrc=duration={seconds}:size={size}:rate=25",
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency=330:duration={seconds}",
        "-shortest",
        *extra,
        str(path),
    )
    return path


def ffprobe(data: bytes, tmp: Path, name: str = "probe.bin") -> dict[str, Any]:
    path = tmp / name
    path.write_bytes(data)
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def streams(info: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [s for s in info["streams"] if s["codec_type"] == kind]


def duration(info: dict[str, Any]) -> float:
    return float(info["format"]["duration"])
