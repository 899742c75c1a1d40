"""The invariant checks themselves must be able to fail."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import Daemon
from tests.hostile.checks import leftover_processes


def test_a_stray_process_naming_the_data_dir_is_seen(daemon: Daemon) -> None:
    stray = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", str(daemon.data_dir / "x")]
    )
    try:
        assert any(line.startswith(f"{stray.pid}:") for line in leftover_processes(daemon))
    finally:
        stray.kill()
        stray.wait()
    assert leftover_processes(daemon) == []
