"""Several nodes on one PostgreSQL database and one shared storage dir (issue 18), as real
processes: drop folders watched by two nodes, webhooks sent by whichever node leads (and by the
next when it is killed), waits and event streams on a node that converts nothing, and a cancel
through one node killing the tool another node runs."""

from __future__ import annotations

import base64
import collections
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import Daemon, tool_pids
from tests.media import make_video
from tests.postgres import Cluster
from tests.test_drops import FAST, files, wait_for, write_config
from tests.test_events import EventReader
from tests.test_queue import SLOW, slow_image
from tests.test_v2_api import call, job_of
from tests.webhook_receiver import Receiver


class Nodes:
    """Daemons started on one database and one shared storage dir, stopped at the end."""

    def __init__(self, database: str, root: Path) -> None:
        self.database = database
        self.root = root
        self.shared = root / "shared"
        self.shared.mkdir(parents=True, exist_ok=True)
        self.started: list[Daemon] = []

    def start(self, env: dict[str, str] | None = None, workers: int = 2) -> Daemon:
        data_dir = self.root / f"node{len(self.started)}" / "data"
        node = Daemon(
            data_dir, env, workers, args=("--storage", str(self.shared)), database=self.database
        )
        self.started.append(node)
        return node.start()

    def stop(self) -> None:
        for node in self.started:
            if node.proc is not None:
                node.kill()


@pytest.fixture
def nodes(pg_cluster: Cluster, tmp_path: Path) -> Iterator[Nodes]:
    started = Nodes(pg_cluster.new_database(), tmp_path)
    try:
        yield started
    finally:
        started.stop()


def leader_of(nodes: list[Daemon], timeout: float = 30) -> Daemon:
    """The one live node whose log says it leads (there is exactly one)."""

    def leading() -> list[Daemon]:
        return [n for n in nodes if n.proc is not None and " leads: " in n.log()]

    found = wait_for(leading, timeout=timeout, what="a leading node")
    assert len(found) == 1, [n.log_path for n in found]
    return found[0]  # type: ignore[no-any-return]


# --- Drop folders ---------------------------------------------------------------------------

DROPS = 300


def test_two_nodes_watching_one_folder_deliver_each_file_once(nodes: Nodes, tmp_path: Path) -> None:
    """Both nodes run the same [[watch]] rule on the same shared inbox, but only the leading
    node watches (cluster/leader.py): the other converts. Killing the leader mid-way hands the
    folder to the other node, which finishes what was taken and takes the rest, each once."""
    inbox, out = nodes.shared / "inbox", nodes.shared / "out"
    inbox.mkdir()
    config = write_config(
        tmp_path / "drops.toml",
        f"""
[[watch]]
name = "shared"
folder = "{inbox}"
output = "{out}"
output_format = "md5"
filetype = "hash"
originals = "delete"
""",
    )
    env = {**FAST, "CONVERTD_CONFIG": str(config)}
    first = nodes.start(env, workers=1)
    second = nodes.start(env, workers=1)
    leader = leader_of([first, second])
    other = second if leader is first else first
    assert "watching drop folders" in leader.log()
    assert "watching drop folders" not in other.log(), "only the leader watches"

    before = DROPS - 50
    for n in range(before):
        (inbox / f"f{n:03d}.txt").write_text(f"file {n}\n")
    wait_for(lambda: len(files(out)) >= 20, what="the first results")
    leader.kill()  # its lock goes with its connection: the other node leads at its next check
    assert len(files(out)) < before, "killed mid-way"
    assert leader_of([other]) is other
    for n in range(before, DROPS):  # found by the new leader's own watch
        (inbox / f"f{n:03d}.txt").write_text(f"file {n}\n")

    wait_for(lambda: len(files(out)) >= DROPS, timeout=90, what=f"{DROPS} results")
    time.sleep(3)  # a second delivery of any of them would show by now
    expected = sorted(f"f{n:03d}.md5" for n in range(DROPS))
    assert files(out) == expected, "each file delivered once, under its own name"
    for n in (0, DROPS // 2 - 1, DROPS - 1):
        digest = (out / f"f{n:03d}.md5").read_text().strip()
        assert digest == hashlib.md5(f"file {n}\n".encode()).hexdigest()
    assert files(inbox) == []
    rows = other.query("SELECT display_name, status FROM drops")
    assert len(rows) == DROPS, "each file taken once"
    assert collections.Counter(status for _, status in rows) == {"done": DROPS}
    assert sorted(name for name, _ in rows) == sorted(f"f{n:03d}.txt" for n in range(DROPS))


def test_a_drop_converted_by_another_node_is_delivered_when_it_ends(
    nodes: Nodes, tmp_path: Path
) -> None:
    """The leader watches and converts nothing: the other node's end, heard through the relay,
    delivers the result, not the watcher's 10 s safety net (DELIVERY_SAFETY_NET_SECONDS)."""
    inbox, out = nodes.shared / "inbox", nodes.shared / "out"
    inbox.mkdir()
    config = write_config(
        tmp_path / "drops.toml",
        f'[[watch]]\nname = "shared"\nfolder = "{inbox}"\noutput = "{out}"\n'
        'output_format = "md5"\nfiletype = "hash"\noriginals = "delete"\n',
    )
    env = {**FAST, "CONVERTD_CONFIG": str(config)}
    watching = nodes.start(env, workers=0)
    nodes.start(env, workers=1)
    assert leader_of(nodes.started) is watching
    for n in range(3):  # in turn: each after the last delivery, when the safety net just ran
        dropped = time.monotonic()
        (inbox / f"one{n}.txt").write_text(f"one {n}\n")
        wait_for(lambda n=n: f"one{n}.md5" in files(out), timeout=30, what="the result")
        took = time.monotonic() - dropped
        # ~1.5 s: settle 0.6 s, a worker's look (1 s), delivery; ~10 s without the relay's word.
        assert took < 6, f"delivered {took:.1f} s after it was dropped"


# --- Webhooks -------------------------------------------------------------------------------

# Enough tries over ~30 s that a delivery outlives a leader's death and its successor's check.
PATIENT_RETRIES = {"CONVERTD_WEBHOOK_RETRY_SECONDS": "1,1,2,2,3,3,5,5,5,5"}


def submit_with_callback(node: Daemon, key: str, receiver: Receiver) -> str:
    resp = requests.post(
        f"{node.base}/convert",
        headers={"X-API-Key": key},
        files={"file": ("a.txt", f"text for {node.port} {time.monotonic()}".encode())},
        data={"filetype": "hash", "output_format": "sha256", "callback": receiver.url},
        timeout=30,
    )
    assert resp.status_code == 202, resp.text
    return str(resp.json()["job_id"])


def deliveries_per_job(receiver: Receiver) -> collections.Counter[str]:
    return collections.Counter(
        r.json["job"]["job_id"] for r in receiver.received if r.event == "job.finished"
    )


def test_each_webhook_is_sent_once_and_survives_the_leaders_death(
    nodes: Nodes, receiver: Receiver
) -> None:
    three = [nodes.start(PATIENT_RETRIES, workers=1) for _ in range(3)]
    key = three[0].create_key("hooks", "--plan", "pro")
    jobs = [submit_with_callback(three[n % 3], key, receiver) for n in range(12)]
    wait_for(lambda: set(deliveries_per_job(receiver)) >= set(jobs), what="12 deliveries")
    time.sleep(3)  # a second sender would have sent them again by now
    assert deliveries_per_job(receiver) == dict.fromkeys(jobs, 1)

    # Deliveries pending (the receiver is down) when the leading node is killed.
    receiver.down()
    receiver.received.clear()
    leader = leader_of(three)
    survivors = [n for n in three if n is not leader]
    pending = [submit_with_callback(three[n % 3], key, receiver) for n in range(6)]
    for job_id in pending:
        assert survivors[0].wait(key, job_id)["status"] == "finished"
    wait_for(
        lambda: (
            leader.query(
                "SELECT count(*) FROM deliveries WHERE attempts >= 1 AND status = 'pending'"
            )[0][0]
            >= len(pending)
        ),
        what="deliveries tried and pending",
    )
    leader.kill()
    new_leader = leader_of(survivors)
    receiver.up()
    wait_for(lambda: set(deliveries_per_job(receiver)) >= set(pending), what="late deliveries")
    time.sleep(3)
    assert deliveries_per_job(receiver) == dict.fromkeys(pending, 1), "none lost, none twice"
    assert new_leader.proc is not None


# --- Waits, event streams and cancels on a node that converts nothing ------------------------


@pytest.fixture(scope="module")
def pair(
    pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Daemon, Daemon, str]]:
    """Node A, started first (so it leads), with no workers: what is submitted to it is
    converted by node B. And a key."""
    started = Nodes(pg_cluster.new_database(), tmp_path_factory.mktemp("cluster-pair"))
    try:
        a = started.start(workers=0)
        b = started.start(workers=1)
        yield a, b, a.create_key("pair", "--plan", "pro")
    finally:
        started.stop()


def test_a_wait_and_an_event_stream_on_a_hear_of_the_end_on_b(
    pair: tuple[Daemon, Daemon, str],
) -> None:
    a, b, key = pair
    stream = EventReader(f"{a.base}/events", key)
    try:
        job = a.convert(key, slow_image(), "noise.png", "image", "webp", SLOW).json()
        assert stream.wait_for("job.created")["job"]["job_id"] == job["job_id"]
        started = time.monotonic()
        status = requests.get(
            f"{job['status_url']}?wait=60", headers={"X-API-Key": key}, timeout=70
        ).json()
        assert status["status"] == "finished", status
        assert time.monotonic() - started < 55, "woken by the end, not by the wait's timeout"
        finished = stream.wait_for("job.finished", timeout=30)
        assert finished["job"]["job_id"] == job["job_id"]
        assert finished["job"]["download_url"] == job["download_url"]
    finally:
        stream.close()
    assert b.proc is not None
    ran_on = a.query(
        "SELECT n.pid FROM jobs j JOIN nodes n ON n.id = j.node WHERE j.id = ?", (job["job_id"],)
    )
    assert ran_on == [(b.proc.pid,)], "B converted it"
    assert requests.get(status["download_url"], timeout=30).status_code == 200


def test_cancelling_through_a_kills_the_tool_running_on_b_within_2_seconds(
    pair: tuple[Daemon, Daemon, str], tmp_path: Path
) -> None:
    a, b, key = pair
    clip = make_video(
        tmp_path / "long.mp4", 60.0, "1280x720", "-c:v", "libx264", "-preset", "ultrafast"
    )
    job = job_of(
        a,
        key,
        {
            "in": {
                "operation": "import/base64",
                "file": base64.b64encode(clip.read_bytes()).decode(),
                "filename": "long.mp4",
            },
            "c": {
                "operation": "convert",
                "input": "in",
                "output_format": "webm",
                "video_codec": "vp9",
                "crf": 4,
            },
        },
    )
    shared = b.args[1]  # the tool's command line names the shared storage it reads from
    deadline = time.monotonic() + 60
    while not (running := tool_pids("ffmpeg", Path(shared))):
        assert time.monotonic() < deadline, "ffmpeg never started"
        time.sleep(0.05)
    # Encoding, with its input open: deleting the job's files could no longer stop it.
    time.sleep(2)
    assert tool_pids("ffmpeg", Path(shared)) == running
    assert call(a, key, "DELETE", f"/v2/jobs/{job['id']}").status_code == 204
    deleted_at = time.monotonic()
    while tool_pids("ffmpeg", Path(shared)):
        assert time.monotonic() - deleted_at < 2.0, "ffmpeg still running 2 s after DELETE"
        time.sleep(0.05)
    assert call(a, key, "GET", f"/v2/jobs/{job['id']}").status_code == 404
    assert "cancelled: stopping it" in b.log(), "B's worker was told, not its tool starved"
