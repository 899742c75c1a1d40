"""One daemon for the hostile cases, with a short job timeout so that "bounded" is checked,
and the invariants of tests/hostile/checks.py asserted after every test."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.conftest import Daemon, image_bytes
from tests.hostile.checks import healthy, rss_mib, wait_for_no_leftovers

JOB_TIMEOUT = 20
# The daemon's own resident memory may end a case this much above where the package started
# (after warm-up); more means a hostile input left memory behind.
MEMORY_SLACK_MIB = 25


@pytest.fixture(scope="package")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(
        tmp_path_factory.mktemp("hostile") / "data",
        {"CONVERTD_JOB_TIMEOUT_SECONDS": str(JOB_TIMEOUT)},
    )
    # Every job, hostile or not, ends within the job timeout plus two seconds of bookkeeping.
    d.wait_timeout = JOB_TIMEOUT + 2
    yield d.start()
    d.stop()


@pytest.fixture(scope="package")
def key(daemon: Daemon) -> str:
    return daemon.create_key("hostile", "--plan", "pro")


@pytest.fixture(scope="package")
def baseline_mib(daemon: Daemon, key: str) -> float:
    """The daemon's memory once each in-process converter has run: the first use of each
    imports modules and plugins and starts threads, which it rightly keeps."""
    _status, pdf = daemon.convert_and_fetch(key, image_bytes("JPEG"), "warm.jpg", "image", "pdf")
    assert pdf is not None, _status
    for data, name, filetype, fmt in [
        (image_bytes(), "warm.png", "image", "webp"),
        (pdf.content, "warm.pdf", "pdf", "txt"),
        (pdf.content, "warm.pdf", "pdf", "png"),
        (pdf.content, "warm.pdf", "pdf", "pdf"),
    ]:
        _status, out = daemon.convert_and_fetch(key, data, name, filetype, fmt)
        assert out is not None, _status
    healthy(daemon, key)
    time.sleep(3)  # the heap is handed back once the workers idle (convertd/memory.py)
    assert daemon.proc is not None
    return rss_mib(daemon.proc.pid)


@pytest.fixture(autouse=True)
def invariants(daemon: Daemon, key: str, baseline_mib: float) -> Iterator[None]:
    yield
    healthy(daemon, key)
    assert wait_for_no_leftovers(daemon) == []
    assert daemon.proc is not None
    # The daemon hands memory back a moment after its last job (convertd/memory.py).
    deadline = time.monotonic() + 5
    while (rss := rss_mib(daemon.proc.pid)) >= baseline_mib + MEMORY_SLACK_MIB:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the daemon holds {rss:.0f} MiB after this case, {baseline_mib:.0f} MiB at the start"
            )
        time.sleep(0.2)
