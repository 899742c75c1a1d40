"""A throwaway PostgreSQL server for the tests and the benchmarks (no pytest here, so bench/ can
use it too): `initdb` in a temp dir, listening on 127.0.0.1 on a free port, trust auth, no
fsync. Databases in it are made with new_database(); stop() removes it all.

Debian installs the server's programs in /usr/lib/postgresql/<major>/bin, not on PATH (which
may hold pg_wrapper's scripts instead); the newest there is used. initdb refuses to run as
root, so as root (CI) the server runs as the `postgres` system user that Debian's package makes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from types import TracebackType

from tests.daemon import free_port

DEBIAN_BINARIES = Path("/usr/lib/postgresql")
SUPERUSER = "postgres"
SYSTEM_USER = "postgres"  # who runs the server when we are root
# Throwaway settings: speed over durability, and room for ~10 daemons with a pool each.
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "max_connections": "300",
}


class PostgresMissing(RuntimeError):
    pass


def binaries() -> Path:
    """The newest PostgreSQL server's bin directory."""
    found: list[tuple[int, Path]] = []
    if DEBIAN_BINARIES.is_dir():
        for version in DEBIAN_BINARIES.iterdir():
            if version.name.isdigit() and (version / "bin" / "initdb").is_file():
                found.append((int(version.name), version / "bin"))
    if found:
        return max(found)[1]
    initdb = shutil.which("initdb")
    if initdb and (Path(initdb).resolve().parent / "pg_ctl").is_file():
        return Path(initdb).resolve().parent
    raise PostgresMissing("PostgreSQL is not installed: run ./packaging/setup")


class Cluster:
    """One PostgreSQL server in a temp dir of its own."""

    def __init__(self) -> None:
        self.bin: Path | None = None
        self.dir: Path | None = None
        self.port = 0
        self._as_root = os.geteuid() == 0

    @property
    def data(self) -> Path:
        assert self.dir is not None, "the cluster is not started"
        return self.dir / "data"

    def start(self) -> Cluster:
        self.bin = binaries()
        self.dir = Path(tempfile.mkdtemp(prefix="convertd-pg-"))
        try:
            if self._as_root:
                shutil.chown(self.dir, SYSTEM_USER, SYSTEM_USER)
            self._server(
                "initdb", "--pgdata", str(self.data), "--username", SUPERUSER,
                "--auth", "trust", "--encoding", "UTF8", "--no-locale", "--no-sync",
            )  # fmt: skip
            self.port = free_port()
            self._start_server()
        except BaseException:
            self._remove()
            raise
        return self

    def _start_server(self) -> None:
        assert self.dir is not None
        # The socket in the cluster's dir: no other server's /run/postgresql is touched.
        settings = {**SETTINGS, "port": str(self.port), "unix_socket_directories": str(self.dir)}
        options = " ".join(f"-c {name}={value}" for name, value in settings.items())
        log = self.dir / "server.log"
        try:
            self._server(
                "pg_ctl", "start", "--pgdata", str(self.data), "--log", str(log),
                "--wait", "--timeout", "60", "--options", options,
            )  # fmt: skip
        except RuntimeError as exc:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{exc}\nserver log:\n{tail}") from None

    def pause(self) -> None:
        """Stop the server (fast: connections are cut), keeping its files: `resume()` starts
        it again on the same port, as a database server restarting does."""
        self._server("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", "fast")

    def resume(self) -> None:
        self._start_server()

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self, name: str | None = None) -> str:
        """A fresh, empty database's URL."""
        name = name or f"convertd_{uuid.uuid4().hex[:12]}"
        self._client("createdb", name)
        return self.url(name)

    def psql(self, database: str, sql: str) -> str:
        """What psql prints for `sql` (unaligned, tuples only): for checks by hand or in bench."""
        return self._client("psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql, database)

    def stop(self) -> None:
        """Stop the server (fast: connections are cut) and remove its files."""
        if self.dir is None:
            return
        try:
            if (self.data / "postmaster.pid").exists():
                self._server("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", "fast")
        finally:
            self._remove()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _remove(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _server(self, program: str, *args: str) -> None:
        """Run one of the server's programs, as the system user when we are root."""
        assert self.bin is not None
        argv = [str(self.bin / program), *args]
        if self._as_root:
            argv = ["runuser", "-u", SYSTEM_USER, "--", *argv]
        # In the cluster's dir: the postgres user may not be allowed into ours.
        done = subprocess.run(
            argv, cwd=self.dir, capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr.strip()}")

    def _client(self, program: str, *args: str) -> str:
        assert self.bin is not None, "the cluster is not started"
        argv = [str(self.bin / program), "-h", "127.0.0.1", "-p", str(self.port)]
        done = subprocess.run(
            [*argv, "-U", SUPERUSER, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
        )
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout
