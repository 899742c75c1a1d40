"""Real daemons on free ports with real SQLite files, and the real CLI, for every test."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus"

# The loopback canary web server, for the hostile-input tests.
pytest_plugins = ["tests.canary"]

_OPENED_OUTSIDE: list[str] = []


def outside_repo(path: str) -> bool:
    """A path beside the repository (in the folder that holds the checkout), not inside it."""
    resolved = os.path.abspath(path)
    return resolved.startswith(f"{os.path.dirname(ROOT)}{os.sep}") and not (
        resolved == str(ROOT) or resolved.startswith(f"{ROOT}{os.sep}")
    )


def _audit(event: str, args: tuple[Any, ...]) -> None:
    # Every file this test process opens: one beside the checkout means the suite depends on
    # something a fresh clone does not have (as the corpus beside the checkout once was).
    if event == "open" and isinstance(args[0], str | bytes) and outside_repo(os.fsdecode(args[0])):
        _OPENED_OUTSIDE.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _OPENED_OUTSIDE:
        print(f"\ntests opened files outside the repository: {sorted(set(_OPENED_OUTSIDE))[:20]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "convertd", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env({}),
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"convertd {' '.join(args)} failed: {proc.stderr}")
    return proc


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERTD_")}
    # A config file in the developer's home must not change what the tests see.
    env["CONVERTD_CONFIG"] = os.devnull
    env.update(extra)
    return env


class Daemon:
    """`python -m convertd serve` as a child process, with helpers to talk to it."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, workers: int = 2):
        self.data_dir = data_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/v1"
        self.env = env or {}
        self.workers = workers
        self.wait_timeout = 60.0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"daemon-{self.port}.log"

    def start(self) -> Daemon:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = self._spawn(log)
        self._wait_ready()
        return self

    def _spawn(self, log: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "convertd",
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_env(self.env),
        )

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited at start:\n{self.log()}")
            try:
                if requests.get(f"{self.base}/", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.05)
        raise AssertionError(f"daemon did not answer within 30 s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self.proc = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def create_key(self, name: str = "test", *extra: str) -> str:
        out = run_cli(self.data_dir, "keys", "create", "--name", name, *extra).stdout
        return out.strip().splitlines()[-1]

    def session(self, key: str) -> requests.Session:
        s = requests.Session()
        s.headers["X-API-Key"] = key
        return s

    def convert(
        self,
        key: str,
        data: bytes,
        name: str,
        filetype: str,
        output_format: str,
        options: dict[str, Any] | None = None,
    ) -> requests.Response:
        fields: dict[str, Any] = {"filetype": filetype, "output_format": output_format}
        if options is not None:
            import json

            fields["options"] = json.dumps(options)
        return requests.post(
            f"{self.base}/convert",
            headers={"X-API-Key": key},
            files={"file": (name, data)},
            data=fields,
            timeout=30,
        )

    def wait(self, key: str, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        timeout = timeout or self.wait_timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body: dict[str, Any] = requests.get(
                f"{self.base}/status/{job_id}", headers={"X-API-Key": key}, timeout=10
            ).json()
            if body.get("status") in {"finished", "failed"}:
                return body
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not end within {timeout} s")

    def convert_and_fetch(
        self,
        key: str,
        data: bytes,
        name: str,
        filetype: str,
        output_format: str,
        options: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], requests.Response | None]:
        resp = self.convert(key, data, name, filetype, output_format, options)
        assert resp.status_code == 202, resp.text
        status = self.wait(key, resp.json()["job_id"])
        if status["status"] != "finished":
            return status, None
        out = requests.get(status["download_url"], headers={"X-API-Key": key}, timeout=30)
        assert out.status_code == 200, out.text
        return status, out


@pytest.fixture(scope="session")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("shared") / "data").start()
    yield d
    d.stop()


@pytest.fixture(scope="session")
def key(daemon: Daemon) -> str:
    return daemon.create_key("shared-pro", "--plan", "pro")


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[Any]:
    started: list[Daemon] = []

    def make(
        env: dict[str, str] | None = None, workers: int = 2, data_dir: Path | None = None
    ) -> Daemon:
        d = Daemon(data_dir or tmp_path / "data", env, workers)
        started.append(d)
        return d.start()

    yield make
    for d in started:
        if d.proc is not None:
            d.kill()


def proc_status_kib(pid: int, field: str) -> int:
    """A memory figure of a live process from /proc/<pid>/status (VmRSS, VmHWM, ...), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def tool_pids(comm: str, data_dir: Path) -> list[int]:
    """Live processes named `comm` whose command line mentions this daemon's data dir."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name = (entry / "comm").read_text().strip()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if name == comm and str(data_dir) in cmdline:
            pids.append(int(entry.name))
    return pids


def image_bytes(
    fmt: str = "PNG", size: tuple[int, int] = (64, 48), mode: str = "RGB", **save: Any
) -> bytes:
    im = Image.new(mode, size)
    # A gradient, so that resizing and encoding have real work to do.
    px = im.load()
    for x in range(size[0]):
        for y in range(size[1]):
            v = (x * 255 // max(size[0] - 1, 1), y * 255 // max(size[1] - 1, 1), 128)
            px[x, y] = (*v, 200) if mode == "RGBA" else v if mode == "RGB" else v[0]
    buf = io.BytesIO()
    im.save(buf, format=fmt, **save)
    return buf.getvalue()
