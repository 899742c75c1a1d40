"""Logs and systemd on real daemons: JSON lines carry the request, job and key name (never the
key); under systemd the lines go to the journal's native socket with JOB_ID as a field, and the
watchdog is pinged while the database answers. journald itself is not run here: a real unix
datagram socket stands in for the journal's and for the notify socket, and reads what the
daemon sends exactly as systemd would."""

from __future__ import annotations

import json
import socket
import sqlite3
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from convertd import logs
from tests.conftest import Daemon, image_bytes

QUIET = {"CONVERTD_OFFICE_PREWARM": "false", "CONVERTD_DROP_ENABLED": "false"}


class Datagrams:
    """A bound unix datagram socket (a short path: sun_path holds 108 bytes) read by a thread
    of its own, so that the daemon is never held up by a full queue."""

    def __init__(self) -> None:
        import tempfile

        self.where = Path(tempfile.mkdtemp(prefix="cd-sock-"))
        self.path = str(self.where / "s")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.got: list[bytes] = []
        self.arrived = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            with self.arrived:
                self.got.append(data)
                self.arrived.notify_all()

    def wait_for(self, wanted: Any, after: int = 0, within: float = 30) -> int:
        """The index of the first datagram from `after` on that satisfies `wanted`."""
        deadline = time.monotonic() + within
        with self.arrived:
            while True:
                for i in range(after, len(self.got)):
                    if wanted(self.got[i]):
                        return i
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"nothing wanted arrived in {within} s: {self.got[-5:]}")
                self.arrived.wait(left)

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()
        Path(self.path).unlink(missing_ok=True)
        self.where.rmdir()


@pytest.fixture
def datagrams() -> Iterator[Datagrams]:
    received = Datagrams()
    try:
        yield received
    finally:
        received.close()


def journal_fields(datagram: bytes) -> dict[str, str]:
    """Parse the journal's native protocol: KEY=value lines, or KEY, a 64-bit little-endian
    length and the value (for values with newlines)."""
    fields: dict[str, str] = {}
    rest = datagram
    while rest:
        line, _, after = rest.partition(b"\n")
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode()
            rest = after
        else:
            (size,) = struct.unpack("<Q", after[:8])
            fields[line.decode()] = after[8 : 8 + size].decode()
            rest = after[8 + size + 1 :]
    return fields


def convert_png(d: Daemon, key: str, request_id: str) -> str:
    resp = requests.post(
        f"{d.base}/convert",
        headers={"X-API-Key": key, "X-Request-Id": request_id},
        files={"file": ("a.png", image_bytes())},
        data={"filetype": "image", "output_format": "webp"},
        timeout=30,
    )
    assert resp.status_code == 202, resp.text
    assert resp.headers["X-Request-Id"] == request_id
    job_id: str = resp.json()["job_id"]
    assert d.wait(key, job_id)["status"] == "finished"
    return job_id


def test_json_logs_carry_request_job_and_key_name(tmp_path: Path) -> None:
    d = Daemon(tmp_path / "data", QUIET, workers=1, args=("--log-format", "json")).start()
    try:
        key = d.create_key("log-reader")
        job_id = convert_png(d, key, "req-convert-1")
        missing = requests.get(
            f"http://127.0.0.1:{d.port}/v1/status/nope",
            headers={"X-API-Key": key, "X-Request-Id": "req-missing-2"},
            timeout=10,
        )
        assert missing.status_code == 404
        requests.get(f"{d.base}/keys/me", params={"api_key": key}, timeout=10)
        link = requests.get(f"{d.base}/status/{job_id}", headers={"X-API-Key": key}, timeout=10)
        result = requests.get(
            link.json()["download_url"], headers={"X-Request-Id": "req-download-3"}, timeout=10
        )
        assert result.status_code == 200
    finally:
        d.stop()
    lines = [line for line in d.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for r in records:
        assert {"time", "level", "logger", "message"} <= set(r), r
        assert r["time"].endswith("Z")
    assert key not in d.log(), "the key itself is never logged"

    access = [r for r in records if r["logger"] == "convertd.access"]
    posted = next(r for r in access if r.get("request_id") == "req-convert-1")
    assert "POST /v1/convert 202" in posted["message"]
    assert posted["key_name"] == "log-reader" and isinstance(posted["key_id"], int)
    # The request and the job it made are one search apart, either way.
    assert posted["job_id"] == job_id
    pending = next(r for r in records if "pending" in r["message"])
    assert pending["job_id"] == job_id and pending["request_id"] == "req-convert-1", pending
    # A download's line counts the bytes of the file sent (sendfile() bypasses aiohttp's count).
    fetched = next(r for r in access if r.get("request_id") == "req-download-3")
    assert f" 200 {len(result.content)}B " in fetched["message"], fetched
    assert fetched["job_id"] == job_id
    # The job's lines name it: queued, claimed and finished.
    about_job = [r for r in records if r.get("job_id") == job_id]
    assert any("processing" in r["message"] for r in about_job), about_job
    assert any("finished" in r["message"] for r in about_job), about_job
    # The error body's own line carries the request's id, as the access line does.
    error_lines = [r for r in records if r.get("request_id") == "req-missing-2"]
    assert any(r["message"].startswith("answered 404") for r in error_lines), error_lines
    assert any(r["logger"] == "convertd.access" for r in error_lines)
    # Lines outside any request carry none.
    started = next(r for r in records if "listening on" in r["message"])
    assert "request_id" not in started and "job_id" not in started


def test_under_systemd_lines_go_to_the_journal_with_job_id(
    tmp_path: Path, datagrams: Datagrams
) -> None:
    d = Daemon(tmp_path / "data", QUIET, workers=1)
    # stderr is the log file: $JOURNAL_STREAM names its device and inode, as systemd's does.
    d.log_path.touch()
    st = d.log_path.stat()
    d.env = {
        **QUIET,
        "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}",
        "CONVERTD_JOURNAL_SOCKET": datagrams.path,
    }
    d.start()
    try:
        key = d.create_key("journal-reader")
        job_id = convert_png(d, key, "req-journal-1")
        datagrams.wait_for(lambda g: b"finished" in g and job_id.encode() in g)
    finally:
        d.stop()
    datagrams.wait_for(lambda g: b"MESSAGE=stopped" in g)
    entries = [journal_fields(g) for g in datagrams.got]
    for e in entries:
        assert e["SYSLOG_IDENTIFIER"] == "convertd" and e["PRIORITY"].isdigit()
        assert key not in "".join(e.values())
    finished = [e for e in entries if e.get("JOB_ID") == job_id and "finished" in e["MESSAGE"]]
    assert finished, entries[-5:]
    assert finished[0]["LOGGER"] == "convertd.store.jobs" and finished[0]["PRIORITY"] == "6"
    posted = [e for e in entries if e.get("REQUEST_ID") == "req-journal-1"]
    assert any("POST /v1/convert 202" in e["MESSAGE"] for e in posted), posted
    assert all(e["KEY_NAME"] == "journal-reader" for e in posted if "access" in e["LOGGER"])
    # The access line's record is made by hand (no stack walk): it still names its source.
    access = [e for e in posted if e["LOGGER"] == "convertd.access"]
    assert access and all(
        e["CODE_FILE"].endswith("convertd/server.py")
        and e["CODE_FUNC"] == "log"
        and int(e["CODE_LINE"]) > 1
        for e in access
    ), access
    # They went to the journal, not to stderr.
    assert "finished" not in d.log() and "listening on" not in d.log()


def test_a_stderr_that_is_not_the_journal_is_told_apart(tmp_path: Path) -> None:
    f = tmp_path / "err"
    with f.open("w") as stream:
        st = f.stat()
        assert logs.stderr_is_journal(f"{st.st_dev}:{st.st_ino}", stream)
        assert not logs.stderr_is_journal(f"{st.st_dev}:{st.st_ino + 1}", stream)
        assert not logs.stderr_is_journal("not-a-stream", stream)
        assert not logs.stderr_is_journal(None, stream)


def test_watchdog_pings_while_the_database_answers(tmp_path: Path, datagrams: Datagrams) -> None:
    # WATCHDOG_USEC of 1 s: a ping every 0.5 s.
    env = {**QUIET, "NOTIFY_SOCKET": datagrams.path, "WATCHDOG_USEC": "1000000"}
    d = Daemon(tmp_path / "data", env, workers=1).start()
    ping = b"WATCHDOG=1".__eq__
    try:
        ready = datagrams.wait_for(lambda g: g.startswith(b"READY=1"))
        datagrams.wait_for(ping, datagrams.wait_for(ping, ready) + 1)  # two after READY

        # Another process holds the database's write lock: the daemon cannot write, so it
        # stops pinging (systemd would restart it after WatchdogSec).
        holder = sqlite3.connect(d.data_dir / "convertd.db", isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            time.sleep(1.5)  # a ping already on its way arrives
            quiet_from = len(datagrams.got)
            time.sleep(3.0)  # six intervals
            assert b"WATCHDOG=1" not in datagrams.got[quiet_from:]
            # /health names the database; /health/live still answers.
            live = requests.get(f"http://127.0.0.1:{d.port}/health/live", timeout=10)
            assert live.status_code == 200
            body = requests.get(f"http://127.0.0.1:{d.port}/health", timeout=30).json()
            assert "database" in body["failing"], body
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        datagrams.wait_for(ping, quiet_from)  # pinging again
    finally:
        d.stop()
    assert "no ping, the database does not answer" in d.log()
    assert "the database answers again" in d.log()


def test_no_watchdog_for_another_process(tmp_path: Path, datagrams: Datagrams) -> None:
    """$WATCHDOG_PID names the process systemd watches; a child that inherited it stays quiet."""
    env = {
        **QUIET,
        "NOTIFY_SOCKET": datagrams.path,
        "WATCHDOG_USEC": "1000000",
        "WATCHDOG_PID": "1",
    }
    d = Daemon(tmp_path / "data", env, workers=1).start()
    try:
        datagrams.wait_for(lambda g: g.startswith(b"READY=1"))
        time.sleep(2.0)  # four intervals
    finally:
        d.stop()
    assert b"WATCHDOG=1" not in datagrams.got and datagrams.got
    # Said once, not left to guess.
    assert "$WATCHDOG_PID is 1, not this process" in d.log()


def test_a_json_line_holds_a_traceback_and_the_context() -> None:
    import logging

    record = logging.LogRecord("convertd.x", logging.ERROR, __file__, 1, "boom %s", ("here",), None)
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    token = logs.job_id.set("job-7")
    try:
        assert logs.ContextFilter().filter(record)
    finally:
        logs.job_id.reset(token)
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line
    body = json.loads(line)
    assert body["message"] == "boom here" and body["level"] == "ERROR"
    assert body["job_id"] == "job-7" and "request_id" not in body
    assert "Traceback" in body["exception"] and "bad\nvalue" in body["exception"]
    text = logs.TextFormatter().format(record)
    assert text.splitlines()[0].endswith("boom here [job_id=job-7]")


def test_drop_lines_name_their_job(tmp_path: Path) -> None:
    env = {"CONVERTD_DROP_SETTLE_SECONDS": "0.6", "CONVERTD_OFFICE_PREWARM": "false"}
    d = Daemon(tmp_path / "data", env, workers=1, args=("--log-format", "json")).start()
    try:
        inbox = d.data_dir / "drop" / "inbox" / "webp"
        inbox.mkdir(parents=True, exist_ok=True)
        (inbox / "photo.png").write_bytes(image_bytes())
        deadline = time.monotonic() + 60
        while "drop finished" not in d.log():
            assert time.monotonic() < deadline, d.log()[-2000:]
            time.sleep(0.1)
    finally:
        d.stop()
    records = [json.loads(line) for line in d.log().splitlines() if line.strip()]
    taken = next(r for r in records if r["message"].startswith("drop taken"))
    finished = next(r for r in records if r["message"].startswith("drop finished"))
    assert taken["job_id"] == finished["job_id"] and taken["job_id"] in taken["message"]
    about_job = [r["message"] for r in records if r.get("job_id") == taken["job_id"]]
    assert any(m.endswith("finished") or " finished" in m for m in about_job), about_job


FORGED = "\n2026-01-01 00:00:00,000 ERROR convertd: FAKE"


@pytest.mark.parametrize(
    "name",
    ["evil" + FORGED, "bell\x07", "esc\x1b[31mred", "rtl\u202eoverride", "x" * 101],
)
def test_a_key_name_that_could_forge_a_line_is_refused(tmp_path: Path, name: str) -> None:
    from tests.daemon import run_cli

    made = run_cli(tmp_path / "data", "keys", "create", "--name", name, check=False)
    assert made.returncode != 0 and "--name" in made.stderr, made.stderr
    assert "cvd_" not in made.stdout
    assert run_cli(tmp_path / "data", "keys", "create", "--name", "y" * 100).returncode == 0


def test_a_text_line_stays_one_line_whatever_it_quotes() -> None:
    import logging
    import sys

    record = logging.LogRecord(
        "convertd.x",
        logging.WARNING,
        __file__,
        1,
        "key %s said %s",
        ("evil" + FORGED, "a\rb"),
        None,
    )
    try:
        raise ValueError("bad" + FORGED)
    except ValueError:
        record.exc_info = sys.exc_info()
    record.key_name = "old\nname"  # a name stored before names were checked
    text = logs.TextFormatter().format(record)
    first, *rest = text.split("\n")
    assert "evil\\n2026-01-01" in first and "a\\rb" in first and "key_name=old\\nname" in first
    assert rest and all(line.startswith("  ") for line in rest), text  # the traceback, indented
    assert "\r" not in text and "\x1b" not in text
    # Nothing but the first line starts with a time.
    assert sum(line.startswith("20") for line in text.split("\n")) == 1


def test_a_text_lines_time_is_loggings_own_across_seconds() -> None:
    """The text formatter formats the time to the second once a second: each line's time is
    still exactly what logging's own formatter writes, a new second's included."""
    import logging

    ours, theirs = logs.TextFormatter(), logging.Formatter(logs.TEXT_FORMAT)
    start = 1_780_000_000.0
    for offset in (0.0, 0.001, 0.999, 1.0, 1.5, 1.9995, 2.0004, 61.25, 3600.5, 3600.5):
        record = logging.LogRecord("convertd.x", logging.INFO, __file__, 1, "m", None, None)
        record.created = start + offset
        record.msecs = int((record.created - int(record.created)) * 1000) + 0.0
        assert ours.formatTime(record) == theirs.formatTime(record), offset


def test_the_tools_convertd_runs_do_not_inherit_systemds_sockets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Under NotifyAccess=all any process of the service may notify systemd: the settings are
    read once, then taken out of the environment every converter inherits."""
    import os
    import subprocess

    from convertd.config import load_config

    monkeypatch.setenv("CONVERTD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    config = load_config()
    assert config.notify_socket == "/run/systemd/notify" and config.watchdog_usec == 30_000_000
    inherited = subprocess.run(["env"], capture_output=True, text=True, check=True).stdout
    assert not any(
        line.startswith(("NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID="))
        for line in inherited.splitlines()
    ), inherited


def test_the_start_up_lines_count_one_worker_in_the_singular(make_daemon: Any) -> None:
    """The fourth stranger read "1 workers" in the start-up lines."""
    lines = make_daemon(workers=1).log()
    assert "worker pool started with 1 worker\n" in lines, lines
    assert ", 1 worker, " in next(x for x in lines.splitlines() if "listening on" in x)
    assert "1 workers" not in lines
