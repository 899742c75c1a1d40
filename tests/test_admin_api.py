"""Admin keys and what the web page needs besides the /v2 jobs: `keys create --admin`, whether a
key is an admin in /v1/keys/me and /v2/users/me, the page's address printed with a new key, and
`GET /v2/drops` (the drop folders at a glance) on a real daemon with real drop folders."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from convertd.api.v2.drops import Places
from convertd.drops.rules import inbox_rule
from tests.conftest import ROOT, Daemon
from tests.daemon import run_cli
from tests.test_drops import FAST, files, wait_for

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


def no_server_paths(text: str, *roots: Path) -> None:
    for root in roots:
        assert str(root) not in text, f"{root} shown in {text}"


@pytest.fixture
def folders(make_daemon: Any, tmp_path: Path) -> tuple[Daemon, Path, Path]:
    """A daemon with the embedded inbox and a rule of its own outside the drop root."""
    scans, out = tmp_path / "scans", tmp_path / "scanned"
    scans.mkdir()
    config = tmp_path / "convertd.toml"
    config.write_text(
        f'[[watch]]\nname = "scanner"\nfolder = "{scans}"\noutput = "{out}"\n'
        'output_format = "webp"\nfiletype = "image"\n'
    )
    d = make_daemon(env={**FAST, "CONVERTD_CONFIG": str(config)})
    return d, d.data_dir / "drop", scans


def test_drops_at_a_glance_for_an_admin_key(folders: tuple[Daemon, Path, Path]) -> None:
    d, root, scans = folders
    admin = d.create_key("admin", "--admin")
    inbox = root / "inbox"
    (inbox / "webp").mkdir(parents=True)
    # Converted: a real PNG and a real JPEG, one in each rule's folder.
    shutil.copyfile(PNG, inbox / "webp" / "photo.png")
    (scans / "2026").mkdir()
    shutil.copyfile(JPG, scans / "page.jpg")
    # Failed: a real PNG cut short.
    (inbox / "webp" / "broken.png").write_bytes(PNG.read_bytes()[:300])
    # Skipped: a file outside inbox/<format>/, and a symbolic link.
    shutil.copyfile(PNG, inbox / "loose.png")
    os.symlink(PNG, inbox / "webp" / "link.png")
    wait_for(lambda: files(root / "outbox") == ["photo.webp"], what="the inbox's output")
    wait_for(lambda: files(scans.parent / "scanned") == ["page.webp"], what="the rule's output")
    wait_for(lambda: "broken.png.error.json" in files(root / "failed" / "webp"), what="failure")

    def seen(status: str) -> list[dict[str, Any]]:
        resp = get(d, "/drops", admin, **{"filter[status]": status})
        assert resp.status_code == 200, resp.text
        no_server_paths(resp.text, root, scans, d.data_dir)
        return list(resp.json()["data"])

    finished = wait_for(lambda: len(s := seen("finished")) == 2 and s, what="both finished")
    by_file = {e["file"]: e for e in finished}
    assert set(by_file) == {"inbox/webp/photo.png", "page.jpg"}
    photo, page = by_file["inbox/webp/photo.png"], by_file["page.jpg"]
    assert photo["rule"] == "inbox" and page["rule"] == "scanner"
    assert photo["status"] == "finished" and photo["output"] == "outbox/photo.webp"
    assert page["output"] == "page.webp" and page["output_format"] == "webp"
    assert photo["size"] == PNG.stat().st_size and photo["message"] is None
    assert photo["created_at"] and photo["ended_at"] and isinstance(photo["id"], int)
    with Image.open(PNG) as original, Image.open(root / photo["output"]) as im:
        assert im.format == "WEBP" and im.size == original.size
    jobs = {j["job_id"]: j for j in json.loads(d.cli("jobs", "list", "--json").stdout)}
    assert jobs[photo["job_id"]]["status"] == "finished"

    failed = wait_for(lambda: seen("failed"), what="the failure on record")
    assert [e["file"] for e in failed] == ["inbox/webp/broken.png"]
    report = json.loads((root / "failed" / "webp" / "broken.png.error.json").read_text())
    assert failed[0]["message"] == report["error"] and failed[0]["job_id"] == report["job_id"]
    assert jobs[failed[0]["job_id"]]["status"] == "failed"

    skipped = {e["file"]: e["message"] for e in seen("skipped")}
    assert "inbox/<format>/" in skipped["inbox/loose.png"]
    assert "symbolic link" in skipped["inbox/webp/link.png"]

    # All at once: one list, by status, with the counts for each in `meta`.
    resp = get(d, "/drops", admin)
    body = resp.json()
    no_server_paths(resp.text, root, scans, d.data_dir)
    meta = body["meta"]
    assert meta["enabled"] is True and meta["rules"] == ["inbox", "scanner"]
    assert meta["counts"] == {
        "waiting": 0,
        "skipped": 2,
        "processing": 0,
        "finished": 2,
        "failed": 1,
    }
    assert meta["total"] == 5 and [e["status"] for e in body["data"]] == [
        "skipped",
        "skipped",
        "finished",
        "finished",
        "failed",
    ]
    # Paged as every /v2 list is, and filtered by rule.
    first = get(d, "/drops", admin, per_page="2").json()
    assert len(first["data"]) == 2 and first["meta"]["last_page"] == 3
    third = requests.get(first["links"]["last"], headers={"X-API-Key": admin}, timeout=10).json()
    assert third["data"] == body["data"][4:] and third["links"]["next"] is None
    scanner = get(d, "/drops", admin, **{"filter[rule]": "scanner"}).json()
    assert [e["file"] for e in scanner["data"]] == ["page.jpg"]


def test_a_file_still_being_written_shows_as_waiting_with_the_reason(
    folders: tuple[Daemon, Path, Path],
) -> None:
    d, root, _scans = folders
    admin = d.create_key("admin", "--admin")
    target = root / "inbox" / "webp" / "scan.png"
    target.parent.mkdir(parents=True)
    with target.open("wb") as writer:
        writer.write(PNG.read_bytes()[:1000])
        writer.flush()

        def waiting() -> list[dict[str, Any]]:
            data = get(d, "/drops", admin, **{"filter[status]": "waiting"}).json()["data"]
            return [e for e in data if "open for writing" in (e["message"] or "")]

        entry = wait_for(waiting, what="the open file listed as waiting")[0]
        assert entry["file"] == "inbox/webp/scan.png" and entry["rule"] == "inbox"
        assert entry["size"] == 1000 and entry["created_at"] and entry["job_id"] is None
        writer.write(PNG.read_bytes()[1000:])
    wait_for(lambda: files(root / "outbox") == ["scan.webp"], what="taken once closed")
    wait_for(lambda: not waiting(), what="no longer waiting")


def test_a_taken_file_whose_job_waits_shows_as_processing(make_daemon: Any) -> None:
    d = make_daemon(env=FAST, workers=0)  # no worker: the job stays queued
    admin = d.create_key("admin", "--admin")
    inbox = d.data_dir / "drop" / "inbox" / "webp"
    inbox.mkdir(parents=True)
    shutil.copyfile(PNG, inbox / "queued.png")

    def processing() -> list[dict[str, Any]]:
        answer = get(d, "/drops", admin, **{"filter[status]": "processing"}).json()
        return list(answer["data"])

    (entry,) = wait_for(processing, what="the taken file listed as processing")
    assert entry["file"] == "inbox/webp/queued.png" and entry["output"] is None
    assert entry["ended_at"] is None and entry["size"] == PNG.stat().st_size
    job = json.loads(d.cli("jobs", "show", entry["job_id"]).stdout)
    assert job["status"] == "pending"
    assert not (inbox / "queued.png").exists()  # taken: it is in the upload area now


def test_drops_is_for_admin_keys_only(daemon: Daemon) -> None:
    plain = daemon.create_key("not-admin")
    resp = get(daemon, "/drops", plain)
    assert resp.status_code == 403
    body = resp.json()
    # /v2's error body: the hint follows the message.
    assert body["code"] == "FORBIDDEN" and "not an admin key" in body["message"]
    assert body["message"].endswith("`convertd keys create --name NAME --admin`.")
    assert get(daemon, "/drops", None).status_code == 401
    admin = daemon.create_key("admin-too", "--admin")
    for params, field in (
        ({"filter[status]": "lost"}, "filter[status]"),
        ({"filter[rule]": "x" * 201}, "filter[rule]"),
        ({"per_page": "0"}, "per_page"),
    ):
        bad = get(daemon, "/drops", admin, **params)
        assert bad.status_code == 422 and field in bad.json()["errors"], bad.text
    assert get(daemon, "/drops", admin).status_code == 200


def test_drops_when_the_drop_folders_are_off(make_daemon: Any) -> None:
    d = make_daemon(env={**FAST, "CONVERTD_DROP_ENABLED": "false"})
    admin = d.create_key("admin", "--admin")
    body = get(d, "/drops", admin).json()
    assert body["data"] == [] and body["meta"]["enabled"] is False and body["meta"]["rules"] == []


def test_paths_in_messages_are_cut_to_relative_ones() -> None:
    # What the watcher and the workers say can hold paths (an OSError's file name, say); what
    # the answer shows of them is relative, or only a name.
    root, data = Path("/srv/convertd/drop"), Path("/srv/convertd")
    places = Places(root, data, [inbox_rule(root, "move")])
    cases = {
        "cannot read it: [Errno 13] Permission denied: '/srv/convertd/drop/inbox/pdf/a b.docx'": (
            "cannot read it: [Errno 13] Permission denied: 'inbox/pdf/a b.docx'"
        ),
        "no such file: /srv/convertd/uploads/tok/x.png": "no such file: uploads/tok/x.png",
        "cannot open /etc/convertd/secret.toml for reading": "cannot open secret.toml for reading",
        "put files in inbox/<format>/, e.g. inbox/pdf/": "put files in inbox/<format>/, e.g. inbox/pdf/",
        "fetching https://example.org/a/b.pdf failed": "fetching https://example.org/a/b.pdf failed",
        "page 1/2 and 3 / 4": "page 1/2 and 3 / 4",
        "the watched folder /srv/convertd/drop/inbox does not exist": (
            "the watched folder inbox does not exist"
        ),
        "not /srv/convertd/dropbox/a.png": "not dropbox/a.png",  # in the data dir
    }
    for said, shown in cases.items():
        assert places.message(said) == shown
    assert places.path(b"/srv/convertd/drop/inbox/webp/\xff.png") == "inbox/webp/\ufffd.png"
    assert places.path("/elsewhere/x/y.png") == "y.png"


def test_the_admins_folder_view_spends_no_calls(daemon: Daemon) -> None:
    """The page refreshes the folders every 10 s: on a plan of a few calls a day, that must not
    use the admin key's day up."""
    daemon.cli("plans", "set", "few", "--api", "--calls-per-day", "2")
    admin = daemon.create_key("watcher", "--admin", "--plan", "few")
    for _ in range(5):
        assert get(daemon, "/drops", admin).status_code == 200
    me = requests.get(f"{daemon.base}/keys/me", headers={"X-API-Key": admin}, timeout=5)
    assert me.status_code == 200 and me.json()["rate_limits"]["used_today"] == 1, me.text
