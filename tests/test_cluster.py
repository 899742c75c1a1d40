"""The queue and the leader's work across nodes (issue 18), on real processes: three `convertd serve` nodes on one
PostgreSQL database and one shared storage dir take 500 mixed jobs submitted through node A.
Node B is killed with SIGKILL while it runs jobs; node C is stopped with SIGSTOP for longer than
its lease, then continued. Every job ends exactly once, with an intact result, and no job is
ever held by two nodes at once: the nodes' own log lines record each claim, each job taken back
from a lost node, and each result recorded, and the test reads the history off them.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import os
import re
import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from convertd.cluster.node import BEAT_SECONDS, LEASE_SECONDS
from tests.conftest import Daemon, image_bytes, tool_pids
from tests.media import make_audio
from tests.postgres import Cluster
from tests.test_v2_operations import scanned_page

HASHES, IMAGES, SOUNDS = 300, 160, 40  # 500 jobs
WORKERS = 2  # per node
STOPPED_FOR = LEASE_SECONDS + 10

LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ [\w.]+: (.*)$")
CLAIMED = re.compile(r"^job ([0-9a-f-]{36}) processing \(attempt (\d+), ([^/]+)/\d+\)")
TAKEN_BACK = re.compile(r"^job ([0-9a-f-]{36}): its node stopped answering; queued again")
FINISHED = re.compile(r"^job ([0-9a-f-]{36}) finished:")


@pytest.fixture(scope="module")
def cluster(pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    database = pg_cluster.new_database()
    root = tmp_path_factory.mktemp("cluster")
    shared = root / "shared"
    shared.mkdir()
    nodes = [
        Daemon(
            root / name / "data",
            workers=WORKERS,
            database=database,
            args=("--storage", str(shared)),
        )
        for name in ("a", "b", "c")
    ]
    try:
        for node in nodes:
            node.start()
        yield nodes
    finally:
        for node in nodes:
            if node.proc is not None:
                with _suppress_lookup():
                    os.kill(node.proc.pid, signal.SIGCONT)
                node.kill()


class _suppress_lookup:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is ProcessLookupError


def _node_of(node: Daemon) -> str:
    assert node.proc is not None
    rows = node.query("SELECT id FROM nodes WHERE pid = ? AND stopped_at IS NULL", (node.proc.pid,))
    assert len(rows) == 1, rows
    return str(rows[0][0])


def _held_by(node_id: str, node: Daemon, filetype: str = "%") -> int:
    rows = node.query(
        "SELECT COUNT(*) FROM jobs WHERE status = 'processing' AND node = ? AND filetype LIKE ?",
        (node_id, filetype),
    )
    return int(rows[0][0])


def _wait_until_holding(node_id: str, via: Daemon, within: float = 60) -> None:
    """Until the node runs a sound (the longest jobs: still running when the test strikes)."""
    deadline = time.monotonic() + within
    while _held_by(node_id, via, "audio") == 0:
        assert time.monotonic() < deadline, f"node {node_id} never held a job"
        time.sleep(0.02)


def _history(nodes: list[Daemon]) -> list[tuple[float, str, tuple[str, ...]]]:
    """Every claim, take-back and recorded result in the nodes' logs, in time order: (time,
    what, details). One machine, one clock: the logs of the three processes interleave."""
    events = []
    for node in nodes:
        for line in node.log().splitlines():
            m = LINE.match(line)
            if m is None:
                continue
            at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            text = m.group(2)
            if c := CLAIMED.match(text):
                events.append((at, "claimed", (c.group(1), c.group(3))))
            elif t := TAKEN_BACK.match(text):
                events.append((at, "taken back", (t.group(1),)))
            elif f := FINISHED.match(text):
                events.append((at, "finished", (f.group(1),)))
    return sorted(events)


def test_500_jobs_survive_a_killed_node_and_a_stopped_one(
    cluster: list[Daemon], tmp_path: Path
) -> None:
    a, b, c = cluster
    key = a.create_key("cluster", "--plan", "pro")
    inputs: list[tuple[str, bytes, str, str]] = []  # (name, data, filetype, output format)
    for n in range(HASHES):
        inputs.append((f"blob{n}.bin", os.urandom(1 + (n * 7919) % 200_000), "hash", "sha256"))
    for n in range(IMAGES):
        png = image_bytes("PNG", (40 + n % 50, 30 + n % 40))
        inputs.append((f"photo{n}.png", png, "image", "webp"))
    wav = make_audio(tmp_path / "tone.wav", 60.0).read_bytes()
    for n in range(SOUNDS):
        inputs.append((f"tone{n}.wav", wav, "audio", "mp3"))
    inputs.sort(key=lambda item: hashlib.md5(item[0].encode()).digest())  # mixed, reproducibly

    def submit(item: tuple[str, bytes, str, str]) -> str:
        name, data, filetype, fmt = item
        resp = a.convert(key, data, name, filetype, fmt)
        assert resp.status_code == 202, resp.text
        return str(resp.json()["job_id"])

    node_b, node_c = _node_of(b), _node_of(c)
    with ThreadPoolExecutor(max_workers=8) as pool:
        job_ids = list(pool.map(submit, inputs))

    # B dies while it holds jobs; C stalls while it holds jobs, past its lease.
    _wait_until_holding(node_b, a)
    assert b.proc is not None and c.proc is not None
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait(10)
    lost_at = {node_b: time.time()}
    killed_holding = _held_by(node_b, a)
    _wait_until_holding(node_c, a)
    os.kill(c.proc.pid, signal.SIGSTOP)
    lost_at[node_c] = time.time()
    stopped_holding = _held_by(node_c, a)
    time.sleep(STOPPED_FOR)
    os.kill(c.proc.pid, signal.SIGCONT)

    deadline = time.monotonic() + 300
    while True:
        (left,) = a.query("SELECT COUNT(*) FROM jobs WHERE status IN ('pending', 'processing')")[0]
        if left == 0:
            break
        assert time.monotonic() < deadline, f"{left} jobs never ended"
        time.sleep(0.5)

    statuses = dict(a.query("SELECT id, status FROM jobs"))
    assert len(statuses) == len(inputs)
    failed = [job_id for job_id in job_ids if statuses[job_id] != "finished"]
    assert not failed, a.query("SELECT id, error, attempts FROM jobs WHERE status != 'finished'")

    # Every result intact, fetched from node A whichever node made it.
    session = a.session(key)
    for job_id, (name, data, filetype, _fmt) in zip(job_ids, inputs, strict=True):
        status = session.get(f"{a.base}/status/{job_id}", timeout=30).json()
        out = session.get(status["download_url"], timeout=30)
        assert out.status_code == 200, (job_id, out.text)
        if filetype == "hash":
            assert hashlib.sha256(data).hexdigest() in out.text, name
        elif filetype == "image":
            with Image.open(io.BytesIO(out.content)) as im:
                assert im.format == "WEBP"
                assert im.size == Image.open(io.BytesIO(data)).size
        else:
            assert out.content[:3] == b"ID3" or out.content[:2] in (b"\xff\xfb", b"\xff\xf3")

    # The history: each job's result recorded once, whoever ran it; and a job claimed by a
    # second node only once the first was lost and its lease had run out since (the node's
    # last beat was at most BEAT_SECONDS before it was lost), so no two nodes held it at once.
    history = _history(cluster)
    recorded: dict[str, int] = defaultdict(int)
    claims: dict[str, list[tuple[float, str]]] = defaultdict(list)
    taken_back = 0
    for at, what, details in history:
        if what == "claimed":
            claims[details[0]].append((at, details[1]))
        elif what == "taken back":
            taken_back += 1
        else:
            recorded[details[0]] += 1
    assert all(recorded[job_id] == 1 for job_id in job_ids), [
        (job_id, recorded[job_id]) for job_id in job_ids if recorded[job_id] != 1
    ]
    moved = 0
    for job_id, held in claims.items():
        for (_, first), (then, second) in itertools.pairwise(held):
            if first == second:
                continue
            moved += 1
            assert first in lost_at, f"{job_id} moved from {first}, which was never lost"
            earliest = lost_at[first] + LEASE_SECONDS - BEAT_SECONDS - 1.0
            assert then >= earliest, f"{job_id}: {second} took it {lost_at[first] - then:.1f} s"
    # Every job B and C held when they were lost went to another node.
    assert moved >= killed_holding + stopped_holding >= 2, (moved, killed_holding, stopped_holding)
    assert taken_back >= killed_holding + stopped_holding
    # C, back, found its old jobs no longer its own and dropped what it was doing with them.
    assert "taken over by another node" in c.log() or "given to another node: stopping" in c.log()
    # C came back and is a node again; B is not.
    live = {row[0] for row in a.query("SELECT id FROM nodes WHERE stopped_at IS NULL")}
    assert node_c in live
    (b_seen,) = a.query("SELECT seen_at FROM nodes WHERE id = ?", (node_b,))[0]
    assert time.time() - b_seen > LEASE_SECONDS


# ----- the leader's work: the /v2 task engine across nodes -----


def _ocr_job(node: Daemon, key: str, pages: int) -> dict[str, Any]:
    """A /v2 job whose one slow step (OCR of `pages` scanned pages) runs on the leader."""
    scans = [Image.open(io.BytesIO(scanned_page())).convert("L") for _ in range(pages)]
    pdf = io.BytesIO()
    scans[0].save(pdf, "PDF", resolution=300, save_all=True, append_images=scans[1:])
    tasks = {
        "in": {"operation": "import/base64", "file": base64.b64encode(pdf.getvalue()).decode(),
               "filename": "scan.pdf"},
        "ocr": {"operation": "ocr", "input": "in", "languages": ["eng"]},
        "out": {"operation": "export/url", "input": "ocr"},
    }  # fmt: skip
    resp = requests.post(
        f"{node.base.removesuffix('/v1')}/v2/jobs",
        headers={"Authorization": f"Bearer {key}"},
        json={"tasks": tasks},
        timeout=60,
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json()["data"])


def _ocr_running(shared: Path) -> list[int]:
    return tool_pids("tesseract", shared) + tool_pids("ocrmypdf", shared)


@pytest.fixture
def two_nodes(pg_cluster: Cluster, tmp_path: Path) -> Iterator[tuple[Daemon, Daemon, Path]]:
    """A leads (it starts first), B does not; one database, one shared storage dir."""
    database = pg_cluster.new_database()
    shared = tmp_path / "shared"
    shared.mkdir()
    a, b = (
        Daemon(tmp_path / name / "data", database=database, args=("--storage", str(shared)))
        for name in ("a", "b")
    )
    try:
        a.start()
        b.start()
        assert "leads" in a.log() and "leads" not in b.log()
        yield a, b, shared
    finally:
        for node in (a, b):
            if node.proc is not None:
                with _suppress_lookup():
                    os.kill(node.proc.pid, signal.SIGCONT)
                node.kill()


def test_a_task_cancelled_on_one_node_stops_the_leaders_work_within_2_seconds(
    two_nodes: tuple[Daemon, Daemon, Path],
) -> None:
    """The OCR runs on the leader A; the cancel comes to B (its files stay: only the relay and
    A's engine can stop the tools)."""
    _a, b, shared = two_nodes
    key = b.create_key("cancel", "--plan", "pro")
    job = _ocr_job(b, key, pages=6)
    deadline = time.monotonic() + 60
    while not _ocr_running(shared):
        assert time.monotonic() < deadline, "OCR never started"
        time.sleep(0.05)
    v2 = b.base.removesuffix("/v1") + "/v2"
    auth = {"Authorization": f"Bearer {key}"}
    ocr = next(t for t in job["tasks"] if t["name"] == "ocr")
    cancelled = requests.post(f"{v2}/tasks/{ocr['id']}/cancel", headers=auth, timeout=10)
    assert cancelled.status_code == 200, cancelled.text
    cancelled_at = time.monotonic()
    while _ocr_running(shared):
        assert time.monotonic() - cancelled_at < 2.0, "OCR still running 2 s after the cancel"
        time.sleep(0.05)
    status = requests.get(f"{v2}/tasks/{ocr['id']}", headers=auth, timeout=10).json()["data"]
    assert status["status"] == "error" and status["code"] == "CANCELLED"


def test_the_next_leader_finishes_what_a_dead_leader_was_running(
    two_nodes: tuple[Daemon, Daemon, Path],
) -> None:
    a, b, shared = two_nodes
    key = b.create_key("failover", "--plan", "pro")
    job = _ocr_job(b, key, pages=2)
    deadline = time.monotonic() + 60
    while not _ocr_running(shared):
        assert time.monotonic() < deadline, "OCR never started"
        time.sleep(0.05)
    assert a.proc is not None
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(10)
    # B's sync wait answers once B, leading now, has run the OCR again.
    done = requests.get(
        f"{b.base.removesuffix('/v1')}/sync/v2/jobs/{job['id']}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    ).json()["data"]
    assert done["status"] == "finished", done
    ocr = next(t for t in done["tasks"] if t["name"] == "ocr")
    assert ocr["status"] == "finished"
    (attempts,) = b.query("SELECT attempts FROM tasks WHERE id = ?", (ocr["id"],))[0]
    assert attempts == 2  # A's attempt, cut short, and B's
    (url,) = [f["url"] for t in done["tasks"] if t["name"] == "out" for f in t["result"]["files"]]
    pdf = requests.get(url, timeout=30).content
    assert pdf.startswith(b"%PDF") and b"convertd" in _text_of(pdf)
    assert "leads" in b.log()


def _text_of(pdf: bytes) -> bytes:
    done = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True)
    return done.stdout


def test_a_leader_stopped_past_its_lock_hands_over_and_records_nothing_late(
    two_nodes: tuple[Daemon, Daemon, Path],
) -> None:
    """A leads and runs an OCR; A is stopped (SIGSTOP) longer than its lock lasts unheard, so
    B leads and runs the OCR again; A, continued, finds itself no longer the leader on record:
    whatever it finishes late is refused (the fence), and B's end is the one recorded."""
    a, b, shared = two_nodes
    key = b.create_key("stalled", "--plan", "pro")
    job = _ocr_job(b, key, pages=2)
    deadline = time.monotonic() + 60
    while not _ocr_running(shared):
        assert time.monotonic() < deadline, "OCR never started"
        time.sleep(0.05)
    assert a.proc is not None
    os.kill(a.proc.pid, signal.SIGSTOP)
    deadline = time.monotonic() + 60
    while "leads" not in b.log():
        assert time.monotonic() < deadline, "B never took the lead"
        time.sleep(0.2)
    os.kill(a.proc.pid, signal.SIGCONT)
    done = requests.get(
        f"{b.base.removesuffix('/v1')}/sync/v2/jobs/{job['id']}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    ).json()["data"]
    assert done["status"] == "finished", done
    ocr = next(t for t in done["tasks"] if t["name"] == "ocr")
    deadline = time.monotonic() + 30
    while "no longer leads" not in a.log():
        assert time.monotonic() < deadline, "A never noticed it no longer leads"
        time.sleep(0.2)
    # The end recorded is B's: A's log never says the OCR finished.
    assert f"task {ocr['id']} finished (ocr)" in b.log()
    assert f"task {ocr['id']} finished" not in a.log()
    (attempts,) = b.query("SELECT attempts FROM tasks WHERE id = ?", (ocr["id"],))[0]
    assert attempts == 2
    (url,) = [f["url"] for t in done["tasks"] if t["name"] == "out" for f in t["result"]["files"]]
    assert b"convertd" in _text_of(requests.get(url, timeout=30).content)


def test_a_database_restart_loses_no_job_and_uses_no_attempt(tmp_path: Path) -> None:
    """PostgreSQL goes away for longer than a node's lease while two nodes run a job that ends
    meanwhile, then comes back: the end is recorded once it can be, and no node takes another's
    job for the silence they all shared (each must be heard a whole lease itself first)."""
    from tests.media import make_video

    with Cluster() as server:
        database = server.new_database()
        shared = tmp_path / "shared"
        shared.mkdir()
        nodes = [
            Daemon(
                tmp_path / n / "data", workers=1, database=database, args=("--storage", str(shared))
            )
            for n in ("a", "b")
        ]
        try:
            for node in nodes:
                node.start()
            a = nodes[0]
            key = a.create_key("outage", "--plan", "pro")
            clip = make_video(tmp_path / "clip.mp4", 20.0).read_bytes()
            jobs = [
                a.convert(key, clip, f"clip{n}.mp4", "video", "webm").json()["job_id"]
                for n in range(2)
            ]
            deadline = time.monotonic() + 60
            while a.query("SELECT COUNT(*) FROM jobs WHERE status = 'processing'")[0][0] < 2:
                assert time.monotonic() < deadline, "the jobs never started"
                time.sleep(0.1)
            server.pause()
            time.sleep(LEASE_SECONDS + 5)
            server.resume()
            for job_id in jobs:
                status = a.wait(key, job_id, timeout=240)
                assert status["status"] == "finished", status
                out = requests.get(status["download_url"], headers={"X-API-Key": key}, timeout=30)
                assert out.content[:4] == b"\x1a\x45\xdf\xa3"  # Matroska/WebM
            attempts = a.query("SELECT attempts FROM jobs ORDER BY attempts DESC")
            assert attempts[0][0] == 1, attempts  # run once each: nobody took them back
            for node in nodes:
                assert "queued again" not in node.log()
        finally:
            for node in nodes:
                if node.proc is not None:
                    node.kill()
