"""systemd units that verify, a low exposure score, and readiness sent once the API listens."""

from __future__ import annotations

import re
import shutil
import socket
import struct
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import ROOT
from tests.daemon import free_port

needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def unit_with_local_binary(tmp_path: Path, name: str, placeholder: str) -> Path:
    """The unit as shipped, with ExecStart pointed at this checkout's convertd."""
    binary = shutil.which("convertd") or str(ROOT / ".venv" / "bin" / "convertd")
    text = (ROOT / "systemd" / name).read_text().replace(placeholder, binary)
    target = tmp_path / name
    target.write_text(text)
    return target


@pytest.mark.parametrize(
    ("name", "placeholder"),
    [
        ("convertd.service", "/usr/local/bin/convertd"),
        ("convertd-user.service", "%h/.local/bin/convertd"),
    ],
)
def test_units_verify(tmp_path: Path, name: str, placeholder: str) -> None:
    unit = unit_with_local_binary(tmp_path, name, placeholder)
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ""


def test_system_unit_exposure_is_low() -> None:
    proc = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=true",
            str(ROOT / "systemd" / "convertd.service"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout + proc.stderr)
    assert match, proc.stdout[-500:]
    assert float(match.group(1)) <= 2.0
    readme = (ROOT / "README.md").read_text()
    assert f"exposure level {match.group(1)}" in readme  # the README quotes the real score


def test_readiness_is_sent_once_listening(make_daemon: Any, tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(60)
        d = make_daemon(env={"NOTIFY_SOCKET": str(path), "CONVERTD_OFFICE_PREWARM": "false"})
        message = sock.recv(4096).decode()
        assert message.startswith("READY=1") and f":{d.port}/v1/" in message
        # Ready means ready: the API answers.
        assert requests.get(f"{d.base}/", timeout=5).status_code == 200
        d.stop()
        assert sock.recv(4096).decode().startswith("STOPPING=1")


@pytest.fixture(scope="module")
def single_file() -> Path:
    """dist/convertd, built once for the tests that run it."""
    build = subprocess.run(
        [str(ROOT / "packaging" / "build")], capture_output=True, text=True, timeout=600
    )
    assert build.returncode == 0, build.stderr[-2000:]
    return ROOT / "dist" / "convertd"


# The first test to ask for it pays the build (packaging/build: 40 s on a quiet machine, over
# 120 s at load 10), which pytest-timeout counts against that test's own time.
BUILDS = pytest.mark.timeout(900)


@BUILDS
def test_single_file_executable_runs_without_the_venv(tmp_path: Path, single_file: Path) -> None:
    binary = single_file
    # A clean environment: system PATH only, no venv, no PYTHONPATH, a fresh HOME.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(binary), *args], capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path
        )

    assert run("--version").stdout.startswith("convertd ")
    doctor = run("doctor", "--data-dir", str(tmp_path / "data"), "--port", "0")
    assert doctor.returncode == 0 and "[ok ] ffmpeg" in doctor.stdout
    image = tmp_path / "in.png"
    from tests.conftest import image_bytes

    image.write_bytes(image_bytes("PNG", (30, 20)))
    converted = run("convert", str(image), "--to", "webp", "--data-dir", str(tmp_path / "data"))
    assert converted.returncode == 0, converted.stderr
    from PIL import Image

    with Image.open(tmp_path / "in.webp") as im:
        assert im.format == "WEBP" and im.size == (30, 20)
    # Archives are converted by the executable starting itself again as a worker.
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("docs/readme.txt", "inside the zip\n")
    converted = run("convert", str(archive), "--to", "tar", "--data-dir", str(tmp_path / "data"))
    assert converted.returncode == 0, converted.stderr
    with tarfile.open(tmp_path / "bundle.tar") as tf:
        member = tf.extractfile("docs/readme.txt")
        assert member is not None and member.read() == b"inside the zip\n"
    # The daemon serves what the package holds besides code: the web page and its scripts, and
    # the API references (each file a build must add: PyInstaller takes only Python modules).
    port = free_port()
    serve = subprocess.Popen(
        [str(binary), "serve", "--data-dir", str(tmp_path / "data"), "--port", str(port)],
        env={**env, "CONVERTD_OFFICE_PREWARM": "false", "CONVERTD_DROP_ENABLED": "false"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        origin = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert serve.poll() is None and time.monotonic() < deadline, "serve never answered"
            try:
                requests.get(f"{origin}/v1/", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        for path, wanted in (
            ("/", "Folders at a glance"),
            ("/ui/entry.js", "export class Entry"),
            ("/v1/docs", "convertd v1 API reference"),
            ("/v2/docs", "GET /v2/drops"),
        ):
            resp = requests.get(origin + path, timeout=10)
            assert resp.status_code == 200, (path, resp.text[:500])
            assert wanted in resp.text, path
        local = (ROOT / "convertd" / "api" / "v2" / "reference.md").read_text(encoding="utf-8")
        assert requests.get(f"{origin}/v2/docs", timeout=10).text == local
    finally:
        serve.terminate()
        _, stderr = serve.communicate(timeout=60)
    assert serve.returncode == 0, stderr[-2000:]
    # uvloop, a compiled extension, is inside the executable and is the loop it runs on.
    assert "workers, uvloop loop)" in stderr, stderr[-2000:]


def _notification(sock: socket.socket) -> tuple[dict[str, str], int]:
    """One datagram's assignments and the pid of its sender, as systemd learns it (from the
    kernel's SCM_CREDENTIALS, which no sender can forge)."""
    creds = struct.calcsize("3i")
    data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(creds))
    pid = next(
        struct.unpack("3i", cdata[:creds])[0]
        for level, kind, cdata in ancillary
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
    )
    fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
    return fields, pid


@BUILDS
def test_single_file_executable_under_a_notify_unit(tmp_path: Path, single_file: Path) -> None:
    """The executable runs as PyInstaller's bootloader and the daemon, its child; systemd
    starts (and names in $WATCHDOG_PID) the bootloader. The child must say READY=1 with
    MAINPID= naming itself, so systemd tracks the daemon, and ping the watchdog."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        sock.bind(str(path))
        sock.settimeout(120)
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path / "home"),
            "NOTIFY_SOCKET": str(path),
            "WATCHDOG_USEC": "1000000",
            "CONVERTD_OFFICE_PREWARM": "false",
            "CONVERTD_DROP_ENABLED": "false",
        }
        # As systemd does: $WATCHDOG_PID names the process it started (exec keeps the pid).
        command = 'export WATCHDOG_PID=$$; exec "$0" serve --data-dir "$1" --port 0'
        proc = subprocess.Popen(
            ["sh", "-c", command, str(single_file), str(tmp_path / "data")],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            ready, sender = _notification(sock)
            while ready == {"WATCHDOG": "1"}:  # pings may start before the site listens
                ready, sender = _notification(sock)
            assert ready.get("READY") == "1", ready
            assert sender != proc.pid  # the daemon is the bootloader's child...
            assert ready["MAINPID"] == str(sender)  # ...and says so
            for _ in range(3):  # and it pings the watchdog ($WATCHDOG_USEC / 2 apart)
                ping, pinger = _notification(sock)
                assert ping == {"WATCHDOG": "1"} and pinger == sender
        finally:
            proc.terminate()
            _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-2000:]
    assert "no pings" not in stderr
