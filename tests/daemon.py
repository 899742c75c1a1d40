"""The real daemon and the real CLI as child processes: what the tests and the benchmarks
start convertd with (no pytest here, so bench/ can use it too)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import requests

from convertd.store.postgres_sql import numbered


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment convertd runs in: no CONVERTD_* setting of the developer's leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERTD_")}
    # A config file in the developer's home must not change what the tests see.
    env["CONVERTD_CONFIG"] = os.devnull
    env.update(extra or {})
    return env


# The PostgreSQL database a data dir's daemon uses (a test on both engines): every command
# the tests run on that data dir is given it too, as an admin would.
DATABASES: dict[Path, str] = {}


def cli_argv(data_dir: Path | None, *args: str) -> list[str]:
    """`python -m convertd ARGS [--data-dir DATA_DIR [--database URL]]`."""
    where = ["--data-dir", str(data_dir)] if data_dir is not None else []
    if data_dir is not None and data_dir in DATABASES and args[:1] != ("--help",):
        where += ["--database", DATABASES[data_dir]]
    return [sys.executable, "-m", "convertd", *args, *where]


def start_cli(data_dir: Path | None, *args: str, **popen: Any) -> subprocess.Popen[bytes]:
    """A convertd command running on, for a test that talks to it while it runs."""
    return subprocess.Popen(cli_argv(data_dir, *args), env=cli_env(), **popen)


def run_cli(
    data_dir: Path | None,
    *args: str,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """`python -m convertd ARGS [--data-dir DATA_DIR]`, to its end."""
    proc = subprocess.run(
        cli_argv(data_dir, *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(env),
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"convertd {' '.join(args)} failed: {proc.stderr}")
    return proc


def proc_status_kib(pid: int, field: str) -> int:
    """A memory figure of a live process from /proc/<pid>/status (VmRSS, VmHWM, ...), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


class Daemon:
    """`python -m convertd serve` on a free port, with its log beside its data dir."""

    def __init__(
        self,
        data_dir: Path,
        env: dict[str, str] | None = None,
        workers: int = 2,
        args: tuple[str, ...] = (),
        database: str | None = None,
    ):
        self.data_dir = data_dir
        self.database = database  # a PostgreSQL URL; None: SQLite in the data dir
        if database is not None:
            DATABASES[data_dir] = database
        self.args = args  # more `serve` flags
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/v1"
        self.env = env or {}
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"daemon-{self.port}.log"

    def start(self, ready_within: float = 30) -> Daemon:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
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
                    *(("--database", self.database) if self.database else ()),
                    *self.args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=cli_env(self.env),
            )
        self._wait_ready(ready_within)
        return self

    def _wait_ready(self, within: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited at start:\n{self.log()}")
            try:
                if requests.get(f"{self.base}/", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.05)
        raise AssertionError(f"daemon did not answer within {within:.0f} s:\n{self.log()}")

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

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """The rows of `sql` (with `?` parameters) read straight from this daemon's database,
        whichever engine it is: for a test that checks what was recorded."""
        if self.database is None:
            conn = sqlite3.connect(self.data_dir / "convertd.db")
            try:
                return [tuple(row) for row in conn.execute(sql, params).fetchall()]
            finally:
                conn.close()

        async def fetch() -> list[tuple[Any, ...]]:
            conn = await asyncpg.connect(self.database)
            try:
                return [tuple(row) for row in await conn.fetch(numbered(sql), *params)]
            finally:
                await conn.close()

        return asyncio.run(fetch())

    def cli(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """A convertd command on this daemon's data dir."""
        return run_cli(self.data_dir, *args, **kw)
