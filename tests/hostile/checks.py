"""What must hold after every hostile case: the daemon answers, nothing it started is left
running, and its memory is back near where it was."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from tests.conftest import Daemon
from tests.daemon import proc_status_kib

# Long-lived members of the warm pools (LibreOffice; Chromium and the Playwright driver that
# talks to it); anything else still running is a leftover.
POOL_MEMBERS = ("office/helper.py", "soffice.bin", "chromium", "playwright/driver")


def healthy(d: Daemon, key: str) -> None:
    assert d.proc is not None and d.proc.poll() is None, "the daemon is gone"
    _, out = d.convert_and_fetch(key, b"still alive", "ok.txt", "hash", "md5")
    assert out is not None and out.text.strip() == hashlib.md5(b"still alive").hexdigest()


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def leftover_processes(d: Daemon) -> list[str]:
    """Processes started for jobs that are still alive: the daemon's descendants, and anything
    whose command line names its data dir (children orphaned to init), minus the office pool."""
    assert d.proc is not None
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == d.proc.pid:
            continue
        pid = int(entry.name)
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ancestor, descends = pid, False
            while ancestor > 1 and not descends:
                ancestor = _parent(ancestor)
                descends = ancestor == d.proc.pid
        except (OSError, ValueError, IndexError):
            continue  # gone while we looked
        if (descends or str(d.data_dir) in cmdline) and not any(
            member in cmdline for member in POOL_MEMBERS
        ):
            found.append(f"{pid}: {cmdline[:200]}")
    return found


def wait_for_no_leftovers(d: Daemon, grace: float = 3.0) -> list[str]:
    deadline = time.monotonic() + grace
    while (left := leftover_processes(d)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def rss_mib(pid: int) -> float:
    return proc_status_kib(pid, "VmRSS") / 1024
