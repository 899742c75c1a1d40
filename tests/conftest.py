"""Real daemons on free ports with real SQLite files, and the real CLI, for every test."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from tests.daemon import DATABASES
from tests.daemon import Daemon as DaemonProcess
from tests.postgres import Cluster
from tests.webhook_receiver import receiver  # noqa: F401 (a fixture for every test module)

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus"

# The loopback canary web server, for the hostile-input tests.
pytest_plugins = ["tests.canary", "tests.file_server"]

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


class Daemon(DaemonProcess):
    """The daemon, with what tests do to it over HTTP."""

    wait_timeout = 60.0

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


# The API suite runs on both engines (issue 18): in these modules every test that starts a
# daemon runs once on SQLite and once on a PostgreSQL database of its own, unless it is marked
# `sqlite_only` (it reads the SQLite file itself, or tests what only SQLite has).
ENGINES = ("sqlite", "postgresql")
BOTH_ENGINES = {
    "test_api",
    "test_admin_api",
    "test_auth",
    "test_events",
    "test_outside_ends",
    "test_quotas",
    "test_read_cache",
    "test_seed_example",
    "test_small_jobs",
    "test_uploads",
    "test_v2_api",
    "test_v2_edges",
    "test_v2_sdk",
    "test_v2_semantics",
    "test_webhooks",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sqlite_only: runs on SQLite only, in a module whose tests run on both engines"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine" not in metafunc.fixturenames:
        return
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    both = module in BOTH_ENGINES and metafunc.definition.get_closest_marker("sqlite_only") is None
    metafunc.parametrize("engine", ENGINES if both else ENGINES[:1], indirect=True, scope="session")


@pytest.fixture(scope="session")
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def database_of(engine: str, request: pytest.FixtureRequest) -> str | None:
    """A fresh PostgreSQL database's URL for a daemon on PostgreSQL; None for SQLite."""
    if engine == "sqlite":
        return None
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    return cluster.new_database()


@pytest.fixture(scope="session")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, engine: str, request: pytest.FixtureRequest
) -> Iterator[Daemon]:
    d = Daemon(
        tmp_path_factory.mktemp(f"shared-{engine}") / "data", database=database_of(engine, request)
    ).start()
    yield d
    d.stop()


@pytest.fixture(scope="session")
def key(daemon: Daemon) -> str:
    return daemon.create_key("shared-pro", "--plan", "pro")


# The /v2 tests share one daemon that may fetch from loopback (the local file server stands in
# for the internet), with a short sync wait so that a test of its limit is quick.
V2_ENV = {"CONVERTD_IMPORT_URL_ALLOW": "127.0.0.1/32", "CONVERTD_SYNC_WAIT_SECONDS": "20"}


@pytest.fixture(scope="session")
def v2_daemon(
    tmp_path_factory: pytest.TempPathFactory, engine: str, request: pytest.FixtureRequest
) -> Iterator[Daemon]:
    d = Daemon(
        tmp_path_factory.mktemp(f"v2-{engine}") / "data",
        V2_ENV,
        database=database_of(engine, request),
    ).start()
    yield d
    d.stop()


@pytest.fixture(scope="session")
def v2_key(v2_daemon: Daemon) -> str:
    return v2_daemon.create_key("v2-pro", "--plan", "pro")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One throwaway PostgreSQL server for the session; each test makes its own database in
    it (pg_cluster.new_database())."""
    cluster = Cluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def make_daemon(tmp_path: Path, engine: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    started: list[Daemon] = []
    if (database := database_of(engine, request)) is not None:
        # Known before the daemon starts: a test may set up its data dir with the CLI first.
        DATABASES[tmp_path / "data"] = database

    def make(
        env: dict[str, str] | None = None, workers: int = 2, data_dir: Path | None = None
    ) -> Daemon:
        data_dir = data_dir or tmp_path / "data"
        # A daemon started again on the same data dir finds the same database.
        database = DATABASES.get(data_dir) or database_of(engine, request)
        d = Daemon(data_dir, env, workers, database=database)
        started.append(d)
        return d.start()

    yield make
    for d in started:
        if d.proc is not None:
            d.kill()


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


@contextlib.contextmanager
def small_disk(tmp_path: Path, megabytes: int) -> Iterator[Path]:
    """A tmpfs of `megabytes` to fill up: a real full disk (mounting needs root, which CI has)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    size = f"size={megabytes}m"
    subprocess.run(["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
