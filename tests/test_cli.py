"""The admin CLI on the same database, also while the daemon runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from convertd import __version__
from convertd.store.migrations import SCHEMA_VERSION
from tests.conftest import Daemon
from tests.daemon import cli_env, free_port, run_cli


def test_version() -> None:
    proc = run_cli(None, "--version")
    expected = f"convertd {__version__} (schema {SCHEMA_VERSION})"
    assert proc.returncode == 0 and proc.stdout.strip() == expected


def test_keys_create_prints_the_secret_once_and_stores_only_a_hash(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = run_cli(data, "keys", "create", "--name", "laptop", "--plan", "pro")
    secret = proc.stdout.strip().splitlines()[-1]
    assert secret.startswith("cvd_") and len(secret) >= 40 and " " not in secret
    assert secret not in proc.stderr
    assert proc.stdout.count(secret) == 1
    for path in data.iterdir():
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
            assert secret[12:].encode() not in path.read_bytes(), path
    listing = run_cli(data, "keys", "list").stdout
    assert "laptop" in listing and secret not in listing and secret[:12] in listing
    entries = json.loads(run_cli(data, "keys", "list", "--json").stdout)
    assert entries[0]["name"] == "laptop" and entries[0]["plan"] == "pro"
    assert secret not in json.dumps(entries)


def test_keys_work_with_a_running_daemon(daemon: Daemon) -> None:
    secret = daemon.create_key("hot", "--restrict", "domain", "--allow", "*.Example.org")
    resp = requests.get(
        f"{daemon.base}/keys/me",
        headers={"X-API-Key": secret, "Origin": "https://a.example.org"},
        timeout=5,
    )
    assert resp.status_code == 200
    assert resp.json()["allowed_domains"] == ["example.org"]


def test_plans_list_and_set(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shipped = {p["name"]: p for p in json.loads(run_cli(data, "plans", "list", "--json").stdout)}
    assert shipped["free"]["api_access"] is False
    assert (shipped["basic"]["calls_per_day"], shipped["basic"]["calls_per_minute"]) == (2000, 60)
    assert shipped["pro"]["calls_per_day"] is None and shipped["pro"]["api_access"] is True
    out = run_cli(data, "plans", "set", "basic", "--calls-per-minute", "unlimited").stdout
    assert "unlimited calls/minute" in out
    run_cli(data, "plans", "set", "free", "--api")
    run_cli(data, "plans", "set", "team", "--api", "--calls-per-day", "50")
    plans = {p["name"]: p for p in json.loads(run_cli(data, "plans", "list", "--json").stdout)}
    assert plans["basic"]["calls_per_minute"] is None and plans["basic"]["calls_per_day"] == 2000
    assert plans["free"]["api_access"] is True
    assert plans["team"] == {
        "name": "team",
        "api_access": True,
        "calls_per_day": 50,
        "calls_per_minute": None,
    }
    table = run_cli(data, "plans", "list").stdout
    assert "team" in table and "unlimited" in table
    bad = run_cli(data, "plans", "set", "basic", "--calls-per-day", "lots", check=False)
    assert bad.returncode == 2 and "unlimited" in bad.stderr


def test_revoke_unknown_key_is_an_error(tmp_path: Path) -> None:
    proc = run_cli(tmp_path / "data", "keys", "revoke", "99", check=False)
    assert proc.returncode == 2 and "no key with id 99" in proc.stderr


def test_keys_set_says_what_it_cannot_do(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run_cli(data, "keys", "create", "--name", "first", "--restrict", "ip", "--allow", "10.0.0.1")
    for args, said in (
        (["99", "--plan", "pro"], "no key with id 99"),
        (["1", "--plan", "gold"], "no plan named 'gold'"),
        (["1"], "nothing to change"),
        (["1", "--restrict", "all", "--allow", "10.0.0.2"], "--allow needs --restrict ip"),
        (["1", "--restrict", "domain"], "needs at least one --allow"),
        (["1", "--allow", "not an address"], "not an address"),
    ):
        proc = run_cli(data, "keys", "set", *args, check=False)
        assert proc.returncode == 2 and said in proc.stderr, (args, proc.stderr)
    # --allow alone replaces the list of the restriction the key has; --admin adds a scope.
    run_cli(data, "keys", "set", "1", "--allow", "10.0.0.2", "--allow", "10.1.0.0/16", "--admin")
    (entry,) = json.loads(run_cli(data, "keys", "list", "--json").stdout)
    assert entry["restriction_type"] == "ip"
    assert entry["allowed_ips"] == ["10.0.0.2", "10.1.0.0/16"]
    assert entry["admin"] is True and entry["plan"] == "basic"
    # Several values after one flag, as the README's synopsis has them (a stranger's
    # `--allow 1.2.3.4 5.6.7.8` was "unrecognized arguments"), in create and set alike.
    run_cli(data, "keys", "set", "1", "--allow", "10.0.0.3", "10.0.0.4", "--scope", "task.read")
    (entry,) = json.loads(run_cli(data, "keys", "list", "--json").stdout)
    assert entry["allowed_ips"] == ["10.0.0.3", "10.0.0.4"] and entry["scopes"] == ["task.read"]
    run_cli(
        data,
        "keys",
        "create",
        "--name",
        "two",
        "--restrict",
        "ip",
        "--allow",
        "10.0.0.5",
        "10.0.0.6",
        "--allow",
        "10.0.0.7",
        "--scope",
        "task.read",
        "task.write",
    )
    second = json.loads(run_cli(data, "keys", "list", "--json").stdout)[1]
    assert second["allowed_ips"] == ["10.0.0.5", "10.0.0.6", "10.0.0.7"]
    assert second["scopes"] == ["task.read", "task.write"]
    # A change to what the key already is: said so, and nothing written (the stranger's
    # `keys set 1 --plan free`, already on free, printed "Changed").
    before = run_cli(data, "keys", "list", "--json").stdout
    same = run_cli(data, "keys", "set", "1", "--plan", "basic")
    assert same.stdout == "Nothing changed: key 1 is already on plan basic.\n"
    same = run_cli(data, "keys", "set", "1", "--allow", "10.0.0.3", "10.0.0.4", "--name", "first")
    assert same.stdout.startswith("Nothing changed: key 1 is already named 'first', restricted")
    assert run_cli(data, "keys", "list", "--json").stdout == before
    # The same values or scopes in another order are the same set (the fourth stranger's
    # reordered --allow printed "Changed"); a value given twice is kept once.
    same = run_cli(data, "keys", "set", "1", "--allow", "10.0.0.4", "10.0.0.3")
    assert same.stdout.startswith("Nothing changed: key 1 is already restricted"), same.stdout
    same = run_cli(data, "keys", "set", "2", "--scope", "task.write", "task.read")
    assert same.stdout == "Nothing changed: key 2 already has the scopes task.read task.write.\n"
    assert run_cli(data, "keys", "list", "--json").stdout == before
    run_cli(data, "keys", "set", "2", "--allow", "10.0.0.9", "10.0.0.9", "10.0.0.5", "10.0.0.9")
    second = json.loads(run_cli(data, "keys", "list", "--json").stdout)[1]
    assert second["allowed_ips"] == ["10.0.0.9", "10.0.0.5"]
    nothing = run_cli(data, "keys", "set", "1", check=False)
    assert "--name" in nothing.stderr
    run_cli(data, "keys", "revoke", "1")
    revoked = run_cli(data, "keys", "set", "1", "--plan", "pro", check=False)
    assert revoked.returncode == 2 and "key 1 is revoked" in revoked.stderr


def test_shared_options_go_before_or_after_the_command(tmp_path: Path) -> None:
    """`convertd --data-dir X keys list` as well as `convertd keys list --data-dir X`, for an
    admin command and for serve; after the command wins when both are given."""
    data = tmp_path / "data"
    python = [sys.executable, "-m", "convertd"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*python, *args], capture_output=True, text=True, timeout=60, env=cli_env()
        )

    made = run("--data-dir", str(data), "keys", "create", "--name", "before")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip().splitlines()[-1]
    after = run("keys", "list", "--json", "--data-dir", str(data))
    assert [k["name"] for k in json.loads(after.stdout)] == ["before"]
    both = run(
        "--data-dir", str(tmp_path / "elsewhere"), "keys", "list", "--json", "--data-dir", str(data)
    )
    assert [k["name"] for k in json.loads(both.stdout)] == ["before"]
    assert not (tmp_path / "elsewhere").exists()
    # At the group's level too (a stranger's `convertd keys --data-dir D list`: invalid choice).
    for group, action in (("keys", "list"), ("plans", "list"), ("jobs", "list")):
        between = run(group, "--data-dir", str(data), action, "--json")
        assert between.returncode == 0, (group, between.stderr)
    between = run("keys", "--data-dir", str(data), "list", "--json")
    assert [k["name"] for k in json.loads(between.stdout)] == ["before"]
    port = free_port()
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [*python, "--data-dir", str(data), "serve", "--port", str(port), "--workers", "1"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=cli_env(),
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                resp = requests.get(
                    f"http://127.0.0.1:{port}/v1/keys/me", headers={"X-API-Key": secret}, timeout=5
                )
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.1)
        assert resp.status_code == 200 and resp.json()["name"] == "before"  # the same data dir
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_jobs_list_and_show(daemon: Daemon, key: str) -> None:
    status, _ = daemon.convert_and_fetch(key, b"data", "d.txt", "hash", "sha1")
    listing = json.loads(run_cli(daemon.data_dir, "jobs", "list", "--json").stdout)
    assert status["job_id"] in [j["job_id"] for j in listing]
    shown = json.loads(run_cli(daemon.data_dir, "jobs", "show", status["job_id"]).stdout)
    assert shown["status"] == "finished" and shown["result_name"] == "d.sha1"
    missing = run_cli(daemon.data_dir, "jobs", "show", "nope", check=False)
    assert missing.returncode == 1


def test_second_daemon_on_the_same_data_dir_refuses_to_start(daemon: Daemon) -> None:
    proc = daemon.cli("serve", "--port", "0", check=False)
    assert proc.returncode == 1 and "already serving" in proc.stderr


def test_invalid_config_is_reported_with_the_setting(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('port = "eighty"\n')
    proc = run_cli(tmp_path / "d", "serve", "--config", str(config), check=False)
    assert proc.returncode == 2 and "'port'" in proc.stderr
    config.write_text("colour = 1\n")
    proc = run_cli(tmp_path / "d", "plans", "list", "--config", str(config), check=False)
    assert proc.returncode == 2 and "unknown setting 'colour'" in proc.stderr


def test_config_file_and_environment_precedence(tmp_path: Path) -> None:
    from convertd.config import load_config

    config = tmp_path / "c.toml"
    config.write_text("[server]\nport = 9001\nworkers = 3\nretention_seconds = 60\n")
    resolved = load_config(
        config_path=config,
        env={"CONVERTD_WORKERS": "5"},
        overrides={"data_dir": tmp_path, "port": None},
    )
    assert (resolved.port, resolved.workers, resolved.retention_seconds) == (9001, 5, 60)
    resolved = load_config(
        config_path=config,
        env={"CONVERTD_WORKERS": "5"},
        overrides={"data_dir": tmp_path, "workers": 1},
    )
    assert resolved.workers == 1


def test_serve_logs_requests_without_secrets(daemon: Daemon, key: Any) -> None:
    requests.get(f"{daemon.base}/keys/me", params={"api_key": key}, timeout=5)
    log = daemon.log()
    assert "GET /v1/keys/me 200" in log
    assert key not in log and key[12:] not in log


@pytest.mark.parametrize(
    "command",
    [
        "serve",
        "keys create",
        "keys list",
        "keys revoke",
        "keys set",
        "plans list",
        "plans set",
        "jobs list",
        "jobs show",
        "doctor",
        "formats",
        "drops",
        "convert",
    ],
)
def test_every_command_has_help_with_an_example(command: str) -> None:
    proc = run_cli(None, *command.split(), "--help")
    assert "example" in proc.stdout


@pytest.mark.parametrize("command", [["jobs", "list"], ["drops"], ["keys", "list"], ["formats"]])
def test_output_into_a_closed_pipe_is_quiet(daemon: Daemon, command: list[str]) -> None:
    # `convertd jobs list | head`: the reader went away before convertd wrote. No traceback.
    from subprocess import PIPE

    from tests.daemon import start_cli

    proc = start_cli(daemon.data_dir, *command, stdout=PIPE, stderr=PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err, err
