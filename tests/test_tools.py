"""What happens when tools are missing: doctor says so, formats shrink, requests get a 503."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.daemon import run_cli


def bare_path(tmp_path: Path) -> str:
    """A PATH with none of the converters' tools on it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("setpriv",):
        os.symlink(f"/usr/bin/{tool}", bin_dir / tool)
    return str(bin_dir)


def test_doctor_reports_everything_here(tmp_path: Path) -> None:
    proc = run_cli(tmp_path / "data", "doctor", "--json", "--port", "0")
    checks = {c["name"]: c for c in json.loads(proc.stdout)}
    for name in (
        "ffmpeg",
        "ffprobe",
        "pdftoppm",
        "LibreOffice",
        "LibreOffice UNO",
        "data dir",
        "database",
        "port",
    ):
        assert checks[name]["ok"], checks[name]


def test_doctor_and_formats_without_tools(tmp_path: Path) -> None:
    env = {"PATH": bare_path(tmp_path)}
    proc = run_cli(tmp_path / "d", "doctor", "--port", "0", env=env)
    assert proc.returncode == 0  # optional tools: warnings, not failures
    assert "[warn] ffmpeg" in proc.stdout and "apt-get install -y ffmpeg" in proc.stdout
    assert "[warn] LibreOffice" in proc.stdout
    proc = run_cli(tmp_path / "d", "formats", "--json", env=env)
    assert set(json.loads(proc.stdout)) == {"image", "archive", "hash"}


def test_daemon_without_ffmpeg_answers_503(make_daemon: Any, tmp_path: Path) -> None:
    d = make_daemon(env={"PATH": bare_path(tmp_path)})
    key = d.create_key("no-tools", "--plan", "pro")
    formats = d.session(key).get(f"{d.base}/formats", timeout=5).json()["filetypes"]
    assert "audio" not in formats and "document" not in formats and "image" in formats
    resp = d.convert(key, b"ID3fake", "a.mp3", "audio", "wav")
    assert resp.status_code == 503
    body = resp.json()
    assert "ffmpeg" in body["message"] and "doctor" in body["hint"]


def test_doctor_passes_while_the_daemon_runs(daemon: Any) -> None:
    # The port is in use because convertd itself serves it: a systemd install checks this way.
    proc = run_cli(daemon.data_dir, "doctor", "--port", str(daemon.port), "--json", check=False)
    checks = {c["name"]: c for c in json.loads(proc.stdout)}
    assert checks["port"]["ok"] and "served by convertd" in checks["port"]["detail"], checks["port"]
    assert proc.returncode == 0, proc.stdout


def test_doctor_still_fails_when_another_program_holds_the_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        proc = run_cli(tmp_path / "d", "doctor", "--port", str(port), "--json", check=False)
    checks = {c["name"]: c for c in json.loads(proc.stdout)}
    assert not checks["port"]["ok"] and "in use" in checks["port"]["detail"]
    assert proc.returncode == 1
