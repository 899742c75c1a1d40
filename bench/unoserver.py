"""unoserver, the side people deploy instead of convertd for documents: its PyPI package, run
against the same LibreOffice (Debian's soffice) as convertd's warm pool.

unoserver must run under a Python that imports `uno` (Debian's /usr/bin/python3 with
python3-uno), not the bench's own: the bench makes, once, a virtualenv from that interpreter
with its system packages visible and pip-installs unoserver there, in a cache folder of its own.
Nothing is downloaded but the package from the registry.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import xmlrpc.client
from pathlib import Path

from tests.daemon import free_port

VERSION = "3.7"
UNO_PYTHON = "/usr/bin/python3"
CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "convertd-bench"
    / f"unoserver-{VERSION}"
)


def unoserver_venv() -> Path | None:
    """The virtualenv with unoserver (made on first use), or None, with the reason printed."""
    ready = CACHE / "ready"
    if ready.exists():
        return CACHE
    uno = subprocess.run([UNO_PYTHON, "-c", "import uno"], capture_output=True, check=False)
    if uno.returncode != 0:
        print(f"unoserver: skipped, {UNO_PYTHON} cannot import uno", flush=True)
        return None
    try:
        subprocess.run(
            [UNO_PYTHON, "-m", "venv", "--system-site-packages", "--clear", str(CACHE)],
            capture_output=True,
            check=True,
            timeout=300,
        )
        subprocess.run(
            [str(CACHE / "bin" / "pip"), "install", "-q", f"unoserver=={VERSION}"],
            capture_output=True,
            check=True,
            timeout=600,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        print(f"unoserver: skipped, could not install it: {exc}", flush=True)
        return None
    ready.touch()
    return CACHE


class UnoServer:
    """One `unoserver` (an XML-RPC server with its own soffice and profile) on loopback."""

    def __init__(self, venv: Path, work: Path) -> None:
        self.venv = venv
        self.port = free_port()
        self.profile = work / f"unoserver-profile-{self.port}"
        self.log = work / f"unoserver-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_within: float = 120) -> UnoServer:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(self.venv / "bin" / "unoserver"),
                    "--interface",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--uno-port",
                    str(free_port()),
                    "--user-installation",
                    str(self.profile),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its soffice in its group, stopped with it
            )
        deadline = time.monotonic() + ready_within
        while True:
            try:
                with self._proxy() as proxy:
                    proxy.info()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = self.log.read_text()[-2000:]
                    raise RuntimeError(f"unoserver did not start: {tail}") from None
                time.sleep(0.2)

    def _proxy(self) -> xmlrpc.client.ServerProxy:
        return xmlrpc.client.ServerProxy(f"http://127.0.0.1:{self.port}", allow_none=True)

    def convert(self, src: Path, out: Path, fmt: str = "pdf") -> None:
        """What unoserver's own client (UnoClient.convert, local paths) sends: info(), then
        convert() with its default arguments."""
        with self._proxy() as proxy:
            proxy.info()
            proxy.convert(str(src), None, str(out), fmt, None, [], True, None, None)

    def unoconvert(self, src: Path, out: Path) -> None:
        """The same through `unoconvert`, the command-line client a script would call."""
        subprocess.run(
            [
                str(self.venv / "bin" / "unoconvert"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                str(src),
                str(out),
            ],
            capture_output=True,
            check=True,
            timeout=300,
        )

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None
