"""The commands of several nodes (issue 18): `convertd worker`, `convertd nodes`, and what the
admin commands say when the database is PostgreSQL or cannot be reached."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from tests.conftest import Daemon, image_bytes
from tests.daemon import cli_env, run_cli
from tests.postgres import Cluster

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/convertd"


def test_an_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    for args in (("keys", "list"), ("nodes",), ("serve", "--port", "0")):
        done = run_cli(tmp_path / "data", *args, "--database", UNREACHABLE, check=False)
        assert done.returncode == 1, done
        assert f"cannot use the database at {UNREACHABLE}" in done.stderr
        assert "Traceback" not in done.stderr
    # A password never shows.
    secret = "postgresql://convertd:hunter2@127.0.0.1:1/convertd"
    done = run_cli(tmp_path / "data", "keys", "list", "--database", secret, check=False)
    assert "hunter2" not in done.stderr and "convertd:***@127.0.0.1" in done.stderr
    wrong = run_cli(tmp_path / "data", "keys", "list", "--database", "mysql://x/y", check=False)
    assert wrong.returncode == 2 and "'database' has an invalid value" in wrong.stderr


def test_a_worker_needs_the_shared_database(tmp_path: Path) -> None:
    done = run_cli(tmp_path / "data", "worker", check=False)
    assert done.returncode == 2
    assert "give it with --database" in done.stderr


def test_backup_of_a_postgresql_database_points_to_pg_dump(tmp_path: Path) -> None:
    for args in (("backup", str(tmp_path / "b.db")), ("restore", str(tmp_path / "b.db"))):
        done = run_cli(tmp_path / "data", *args, "--database", UNREACHABLE, check=False)
        assert done.returncode == 1
        assert "pg_dump" in done.stderr
    assert not (tmp_path / "b.db").exists()


def test_nodes_lists_the_daemon_on_sqlite(daemon: Daemon) -> None:
    listed = json.loads(daemon.cli("nodes", "--json").stdout)
    assert daemon.proc is not None
    (me,) = [n for n in listed if n["pid"] == daemon.proc.pid]
    assert me["role"] == "serve" and me["state"] == "alive" and me["workers"] == 2
    assert me["address"].endswith(f":{daemon.port}")
    table = daemon.cli("nodes").stdout
    assert me["id"] in table and "serve" in table


def test_a_worker_node_converts_for_a_node_without_workers(
    pg_cluster: Cluster, tmp_path: Path
) -> None:
    database = pg_cluster.new_database()
    shared = tmp_path / "shared"
    shared.mkdir()
    front = Daemon(
        tmp_path / "front" / "data", workers=0, database=database, args=("--storage", str(shared))
    ).start()
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "convertd", "worker", "--data-dir", str(tmp_path / "w"),
         "--database", database, "--storage", str(shared), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=cli_env(),
    )  # fmt: skip
    try:
        key = front.create_key("front", "--plan", "pro")
        status, out = front.convert_and_fetch(key, image_bytes(), "a.png", "image", "webp")
        assert out is not None and out.content[8:12] == b"WEBP", status
        nodes = json.loads(front.cli("nodes", "--json").stdout)
        roles = {n["pid"]: n for n in nodes}
        assert roles[worker.pid]["role"] == "worker" and roles[worker.pid]["address"] is None
        assert front.proc is not None and roles[front.proc.pid]["workers"] == 0
        (ran_on,) = front.query("SELECT node FROM jobs WHERE id = ?", (status["job_id"],))[0]
        assert ran_on == roles[worker.pid]["id"]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
        gone = json.loads(front.cli("nodes", "--all", "--json").stdout)
        assert {n["pid"]: n["state"] for n in gone}[worker.pid] == "stopped"
        assert worker.pid not in {n["pid"] for n in json.loads(front.cli("nodes", "--json").stdout)}
    finally:
        if worker.poll() is None:
            worker.kill()
        log.close()
        front.stop()
    text = (tmp_path / "worker.log").read_text()
    assert "convertd worker converting for postgresql://" in text
    assert "leads" not in text  # a worker never leads
    assert "listening on" not in text  # and serves no HTTP


def test_a_node_on_another_storage_folder_is_refused(pg_cluster: Cluster, tmp_path: Path) -> None:
    """A share that did not mount looks like an empty folder: the node says so and stays out,
    rather than failing every job it would take."""
    database = pg_cluster.new_database()
    shared, empty = tmp_path / "shared", tmp_path / "not-mounted"
    shared.mkdir()
    empty.mkdir()
    first = Daemon(tmp_path / "a" / "data", database=database, args=("--storage", str(shared)))
    first.start()
    try:
        assert (shared / ".convertd-storage").is_file()
        for storage, why in (
            (empty, "is not the one the other nodes of this database use"),
            (tmp_path / "missing", "does not exist: mount the shared folder there"),
        ):
            done = run_cli(
                tmp_path / "b" / "data", "serve", "--port", "0", "--database", database,
                "--storage", str(storage), check=False,
            )  # fmt: skip
            assert done.returncode in (1, 2), done
            assert why in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert not any(empty.iterdir())  # left as it was found: nothing written there
        assert not (tmp_path / "missing").exists()
        # A copy of the share (an old rsync of it) holds an old mark: each start marks anew.
        copy = tmp_path / "copy"
        copy.mkdir()
        shutil.copy(shared / ".convertd-storage", copy / ".convertd-storage")
        # The same folder, by another path, is welcome (and marks it anew).
        other = Daemon(
            tmp_path / "c" / "data", database=database, args=("--storage", f"{shared}/.")
        ).start()
        other.stop()
        done = run_cli(
            tmp_path / "d" / "data", "serve", "--port", "0", "--database", database,
            "--storage", str(copy), check=False,
        )  # fmt: skip
        assert done.returncode == 2 and "a copy of the share" in done.stderr, done.stderr
        # A read-only mount of the right folder: refused, and the mark on record unchanged.
        if os.geteuid() == 0:
            readonly = tmp_path / "readonly"
            readonly.mkdir()
            subprocess.run(["mount", "--bind", str(shared), str(readonly)], check=True)
            try:
                subprocess.run(["mount", "-o", "remount,ro,bind", str(readonly)], check=True)
                done = run_cli(
                    tmp_path / "e" / "data", "serve", "--port", "0", "--database", database,
                    "--storage", str(readonly), check=False,
                )  # fmt: skip
                assert done.returncode == 2, done
                assert "cannot write in the storage folder" in done.stderr, done.stderr
            finally:
                subprocess.run(["umount", "-l", str(readonly)], check=False)
            again = Daemon(
                tmp_path / "f" / "data", database=database, args=("--storage", str(shared))
            ).start()
            again.stop()
    finally:
        first.stop()


def test_the_api_says_503_while_the_database_is_away(tmp_path: Path) -> None:
    with Cluster() as server:
        node = Daemon(tmp_path / "data", database=server.new_database()).start()
        try:
            key = node.create_key("away", "--plan", "pro")
            assert node.session(key).get(f"{node.base}/keys/me", timeout=10).status_code == 200
            server.pause()
            try:
                for url in (f"{node.base}/keys/me", node.base.removesuffix("/v1") + "/v2/jobs"):
                    resp = node.session(key).get(url, timeout=30)
                    assert resp.status_code == 503, resp.text
                    assert resp.headers["Retry-After"] == "5"
                    assert "database is unavailable" in resp.text
                health = requests.get(node.base.removesuffix("/v1") + "/health", timeout=30)
                assert health.status_code == 503 and health.json()["failing"] == ["database"]
                assert health.headers["Retry-After"] == "5"
            finally:
                server.resume()
            deadline = time.monotonic() + 30
            while node.session(key).get(f"{node.base}/keys/me", timeout=10).status_code != 200:
                assert time.monotonic() < deadline, "the API never came back"
                time.sleep(0.5)
        finally:
            node.stop()


def test_a_node_started_without_the_watch_rules_keeps_the_leaders_webhooks(
    pg_cluster: Cluster, tmp_path: Path, receiver: Any
) -> None:
    database = pg_cluster.new_database()
    shared = tmp_path / "shared"
    shared.mkdir()
    first_dir = tmp_path / "a" / "data"
    run_cli(first_dir, "keys", "create", "--name", "rules", "--database", database)
    config = tmp_path / "convertd.toml"
    config.write_text(
        f'[[watch]]\nname = "scans"\nfolder = "{tmp_path / "in"}"\noutput = "{tmp_path / "out"}"\n'
        f'output_format = "webp"\nwebhook_url = "{receiver.url}"\nwebhook_key = 1\n'
    )
    leader = Daemon(
        first_dir, {"CONVERTD_CONFIG": str(config)}, database=database,
        args=("--storage", str(shared)),
    ).start()  # fmt: skip
    plain = Daemon(tmp_path / "b" / "data", database=database, args=("--storage", str(shared)))
    try:
        plain.start()
        listed = json.loads(leader.cli("webhooks", "list", "--json").stdout)
        assert [w["rule"] for w in listed] == ["scans"], listed
        # ... nor when it leads, once the node with the rules is gone.
        leader.kill()
        deadline = time.monotonic() + 30
        while "leads" not in plain.log():
            assert time.monotonic() < deadline, "the plain node never took the lead"
            time.sleep(0.2)
        time.sleep(1)  # (its webhook sender has started: the rules were written by then)
        listed = json.loads(plain.cli("webhooks", "list", "--json").stdout)
        assert [w["rule"] for w in listed] == ["scans"], listed
    finally:
        plain.stop()
        if leader.proc is not None:
            leader.stop()
