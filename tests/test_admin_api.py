"""Admin keys and what the web page needs besides the /v2 jobs: `keys create --admin`, whether a
key is an admin in /v1/keys/me and /v2/users/me, the page's address printed with a new key, and
`GET /v2/drops` (the drop folders at a glance) on a real daemon with real drop folders."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from tests.conftest import ROOT, Daemon
from tests.daemon import run_cli

CORPUS = ROOT / "tests" / "corpus"
PNG = CORPUS / "image" / "palette-trns-interlaced.png"
JPG = CORPUS / "image" / "progressive-pixel7pro.jpg"


def v2(d: Daemon) -> str:
    return d.base.removesuffix("/v1") + "/v2"


def get(d: Daemon, path: str, key: str | None, **params: str) -> requests.Response:
    headers = {"X-API-Key": key} if key else {}
    return requests.get(f"{v2(d)}{path}", headers=headers, params=params, timeout=10)


def test_admin_is_a_scope_granted_by_name_never_by_default(daemon: Daemon) -> None:
    plain = daemon.create_key("plain")
    admin = daemon.create_key("boss", "--admin")
    only = daemon.create_key("admin-only", "--scope", "admin", "--scope", "user.read")
    base = daemon.base
    me = {
        name: requests.get(f"{base}/keys/me", headers={"X-API-Key": k}, timeout=10).json()
        for name, k in (("plain", plain), ("admin", admin), ("only", only))
    }
    assert me["plain"]["admin"] is False and "admin" not in me["plain"]["scopes"]
    assert me["admin"]["admin"] is True
    assert set(me["admin"]["scopes"]) == {
        "user.read",
        "user.write",
        "task.read",
        "task.write",
        "webhook.read",
        "webhook.write",
        "admin",
    }
    assert me["only"]["admin"] is True and me["only"]["scopes"] == ["admin", "user.read"]
    users = {k: get(daemon, "/users/me", k).json()["data"]["admin"] for k in (plain, admin, only)}
    assert users == {plain: False, admin: True, only: True}
    listing = {k["name"]: k for k in json.loads(daemon.cli("keys", "list", "--json").stdout)}
    assert listing["boss"]["admin"] is True and listing["plain"]["admin"] is False
    table = daemon.cli("keys", "list").stdout
    boss_row = next(line for line in table.splitlines() if " boss " in line)
    plain_row = next(line for line in table.splitlines() if " plain " in line)
    assert "all,admin" in boss_row and "all,admin" not in plain_row


def test_keys_create_prints_the_pages_address_before_the_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    made = run_cli(data, "keys", "create", "--name", "browser", env={"CONVERTD_PORT": "9123"})
    lines = made.stdout.strip().splitlines()
    assert lines[-1].startswith("cvd_")  # still the last line, for `tail -n 1`
    assert lines[-2] == "Open http://127.0.0.1:9123/ in a browser and paste this key there:"
    config = tmp_path / "convertd.toml"
    config.write_text('public_url = "https://convert.home.lan/"\n')
    made = run_cli(data, "keys", "create", "--name", "lan", "--config", str(config))
    assert "Open https://convert.home.lan/ in a browser" in made.stdout
    assert made.stdout.strip().splitlines()[-1].startswith("cvd_")
