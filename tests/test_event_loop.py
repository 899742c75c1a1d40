"""The event loop the daemon runs on (`event_loop`, convertd/loops.py): uvloop by default, the
standard library's when asked or when uvloop cannot be imported. Each loop runs a real FFmpeg
job (an asyncio subprocess) and stops cleanly on SIGTERM (a signal handler)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Daemon
from tests.daemon import cli_env
from tests.media import duration, ffprobe, make_audio

QUIET = {"CONVERTD_OFFICE_PREWARM": "false", "CONVERTD_DROP_ENABLED": "false"}
# `python -m convertd` with uvloop unimportable, as on an install without it (None in
# sys.modules is how Python itself marks a module that must not be imported).
WITHOUT_UVLOOP = (
    "import sys; sys.modules['uvloop'] = None; from convertd.cli import main; "
    "raise SystemExit(main())"
)


def loop_of(d: Daemon) -> str:
    """The loop the start-up line names, checked against what the process has loaded: uvloop's
    extension is mapped into it exactly when it runs on uvloop."""
    started = next(line for line in d.log().splitlines() if "convertd listening on" in line)
    named = started.rpartition(" loop)")[0].rpartition(" ")[2]
    assert d.proc is not None
    mapped = "uvloop/loop." in Path(f"/proc/{d.proc.pid}/maps").read_text()
    assert mapped == (named == "uvloop"), (named, mapped)
    return named


def mp3_and_stop(d: Daemon, tmp_path: Path) -> None:
    """A real FFmpeg job on this loop, its output opened, then SIGTERM: a clean exit 0."""
    key = d.create_key("loop", "--plan", "pro")
    tone = make_audio(tmp_path / "tone.wav", 2.0).read_bytes()
    status, result = d.convert_and_fetch(key, tone, "tone.wav", "audio", "mp3")
    assert status["status"] == "finished" and result is not None, status
    assert abs(duration(ffprobe(result.content, tmp_path, "out.mp3")) - 2.0) < 0.2
    assert d.stop(signal.SIGTERM) == 0
    assert d.log().rstrip().endswith("stopped"), d.log()[-2000:]


@pytest.mark.parametrize(
    ("setting", "expected"), [(None, "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")]
)
def test_the_daemon_runs_on_the_loop_chosen(
    tmp_path: Path, setting: str | None, expected: str
) -> None:
    env = QUIET | ({"CONVERTD_EVENT_LOOP": setting} if setting else {})
    d = Daemon(tmp_path / "data", env, workers=1).start()
    try:
        assert loop_of(d) == expected
        mp3_and_stop(d, tmp_path)
    finally:
        if d.proc is not None:
            d.kill()


def test_auto_falls_back_to_asyncio_without_uvloop(tmp_path: Path) -> None:
    d = Daemon(tmp_path / "data", QUIET, workers=1)
    d.data_dir.mkdir(parents=True)
    with d.log_path.open("ab") as log:
        d.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                WITHOUT_UVLOOP,
                "serve",
                "--data-dir",
                str(d.data_dir),
                "--port",
                str(d.port),
                "--workers",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=cli_env(QUIET),
        )
    try:
        d._wait_ready(30)
        assert loop_of(d) == "asyncio"
        mp3_and_stop(d, tmp_path)
    finally:
        if d.proc is not None:
            d.kill()


def test_uvloop_asked_for_and_missing_is_said_at_start(tmp_path: Path) -> None:
    env = cli_env(QUIET | {"CONVERTD_EVENT_LOOP": "uvloop"})
    data = str(tmp_path / "data")
    argv = [sys.executable, "-c", WITHOUT_UVLOOP, "serve", "--data-dir", data, "--port", "0"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "cannot start: event_loop is uvloop, which cannot be imported" in proc.stderr
    assert "never awaited" not in proc.stderr


def test_an_unknown_loop_is_refused(tmp_path: Path) -> None:
    env = cli_env({"CONVERTD_EVENT_LOOP": "trio"})
    argv = [sys.executable, "-m", "convertd", "serve", "--data-dir", str(tmp_path / "data")]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert proc.returncode != 0
    assert "'event_loop' must be one of auto, uvloop, asyncio" in proc.stderr, proc.stderr
