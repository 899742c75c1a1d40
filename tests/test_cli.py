"""The admin CLI on the same database, also while the daemon runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from convertd import __version__
from convertd.store.migrations import SCHEMA_VERSION
from tests.conftest import Daemon
from tests.daemon import run_cli


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
