"""The three ways to send a key, 401/403 cases, restrictions, and ownership between keys."""

from __future__ import annotations

import requests

from tests.conftest import Daemon, image_bytes
from tests.daemon import run_cli
from tests.test_api import assert_error_body


def test_three_auth_methods_are_equivalent(daemon: Daemon, key: str) -> None:
    url = f"{daemon.base}/keys/me"
    by_header = requests.get(url, headers={"X-API-Key": key}, timeout=5)
    by_bearer = requests.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=5)
    by_query = requests.get(url, params={"api_key": key}, timeout=5)
    for resp in (by_header, by_bearer, by_query):
        assert resp.status_code == 200, resp.text
        assert resp.json()["name"] == "shared-pro"


def test_missing_and_wrong_keys_are_401(daemon: Daemon, key: str) -> None:
    url = f"{daemon.base}/formats"
    assert_error_body(requests.get(url, timeout=5), 401)
    assert_error_body(requests.get(url, headers={"X-API-Key": key + "x"}, timeout=5), 401)
    assert_error_body(requests.get(url, headers={"X-API-Key": "cvd_short"}, timeout=5), 401)
    assert_error_body(requests.get(url, headers={"Authorization": f"Basic {key}"}, timeout=5), 401)
    # Every endpoint but the info ones needs a key, before it reads anything else.
    for method, path in [
        ("post", "/upload"),
        ("post", "/convert"),
        ("get", "/keys/me"),
        ("get", "/status/x"),
        ("get", "/download/x"),
    ]:
        assert_error_body(requests.request(method, daemon.base + path, timeout=5), 401)


def test_revoked_key_stops_working_while_the_daemon_runs(daemon: Daemon) -> None:
    secret = daemon.create_key("to-revoke")
    me = requests.get(f"{daemon.base}/keys/me", headers={"X-API-Key": secret}, timeout=5).json()
    out = run_cli(daemon.data_dir, "keys", "revoke", str(me["key_id"])).stdout
    assert "Revoked" in out
    resp = requests.get(f"{daemon.base}/keys/me", headers={"X-API-Key": secret}, timeout=5)
    assert_error_body(resp, 401)
    again = run_cli(daemon.data_dir, "keys", "revoke", str(me["key_id"]), check=False)
    assert again.returncode != 0 and "already revoked" in again.stderr


def test_plan_without_api_access_is_403_with_upgrade_hint(daemon: Daemon) -> None:
    secret = daemon.create_key("freeloader", "--plan", "free")
    body = assert_error_body(
        requests.get(f"{daemon.base}/formats", headers={"X-API-Key": secret}, timeout=5), 403
    )
    assert "free" in body["message"] and "pgrade" in body["hint"]


def test_ip_restriction(daemon: Daemon) -> None:
    allowed = daemon.create_key(
        "lan", "--restrict", "ip", "--allow", "127.0.0.0/8", "--allow", "::1"
    )
    denied = daemon.create_key("remote", "--restrict", "ip", "--allow", "203.0.113.5")
    ok = requests.get(f"{daemon.base}/keys/me", headers={"X-API-Key": allowed}, timeout=5)
    assert ok.status_code == 200
    assert ok.json()["restriction_type"] == "ip"
    assert ok.json()["allowed_ips"] == ["127.0.0.0/8", "::1"]
    resp = requests.get(f"{daemon.base}/keys/me", headers={"X-API-Key": denied}, timeout=5)
    body = assert_error_body(resp, 403)
    assert "127.0.0.1" in body["message"]
    # Without trust_proxy, a forged X-Forwarded-For changes nothing.
    resp = requests.get(
        f"{daemon.base}/keys/me",
        headers={"X-API-Key": denied, "X-Forwarded-For": "203.0.113.5"},
        timeout=5,
    )
    assert_error_body(resp, 403)


def test_domain_restriction(daemon: Daemon) -> None:
    secret = daemon.create_key("site", "--restrict", "domain", "--allow", "example.com")
    url = f"{daemon.base}/keys/me"

    def call(**headers: str) -> int:
        return requests.get(url, headers={"X-API-Key": secret, **headers}, timeout=5).status_code

    assert call(Origin="https://example.com") == 200
    assert call(Origin="https://app.example.com:8443") == 200
    assert call(Referer="https://www.example.com/page?x=1") == 200
    assert call(Origin="https://evil-example.com") == 403
    assert call(Origin="https://example.com.evil.net") == 403
    # Origin wins over Referer.
    assert call(Origin="https://evil.net", Referer="https://example.com/") == 403
    assert call() == 403


def test_bad_restriction_values_are_refused_by_the_cli(daemon: Daemon) -> None:
    for args in (
        ["--restrict", "ip", "--allow", "not-an-ip"],
        ["--restrict", "domain", "--allow", "exa mple.com"],
        ["--restrict", "ip"],
        ["--allow", "1.2.3.4"],
        ["--plan", "platinum"],
    ):
        proc = run_cli(daemon.data_dir, "keys", "create", "--name", "bad", *args, check=False)
        assert proc.returncode != 0, args
        assert proc.stdout == ""


def test_jobs_and_uploads_belong_to_their_key(daemon: Daemon, key: str) -> None:
    other = daemon.create_key("other", "--plan", "pro")
    up = requests.post(
        f"{daemon.base}/upload",
        headers={"X-API-Key": key},
        files={"file": ("mine.png", image_bytes())},
        timeout=5,
    ).json()
    file_path = up["files"][0]["file_path"]
    stolen = requests.post(
        f"{daemon.base}/convert",
        headers={"X-API-Key": other},
        data={"file_path": file_path, "filetype": "image", "output_format": "png"},
        timeout=5,
    )
    assert_error_body(stolen, 404)

    status, out = daemon.convert_and_fetch(key, image_bytes(), "mine.png", "image", "png")
    assert out is not None
    for url in (
        f"{daemon.base}/status/{status['job_id']}",
        f"{daemon.base}/download/{status['job_id']}",  # by key: the job must be the key's
    ):
        assert_error_body(requests.get(url, headers={"X-API-Key": other}, timeout=5), 404)
        assert requests.get(url, headers={"X-API-Key": key}, timeout=5).status_code == 200


def test_path_traversal_in_file_path_never_reads_outside(daemon: Daemon, key: str) -> None:
    secret_file = daemon.data_dir.parent / "secret.png"
    secret_file.write_bytes(image_bytes())
    attempts = [
        "../secret.png",
        "../../secret.png",
        str(secret_file),
        "/etc/passwd",
        "0123456789abcdef/../../secret.png",
        "0123456789abcdef/..",
        "..%2f..%2fsecret.png",
        "uploads/../convertd.db",
        "0123456789abcdef/\x00.png",
    ]
    for file_path in attempts:
        resp = requests.post(
            f"{daemon.base}/convert",
            headers={"X-API-Key": key},
            data={"file_path": file_path, "filetype": "hash", "output_format": "md5"},
            timeout=5,
        )
        assert resp.status_code in (400, 404), (file_path, resp.text)
        assert_error_body(resp, resp.status_code)


def test_upload_names_are_made_safe(daemon: Daemon, key: str) -> None:
    names = [
        "../../etc/cron.d/x.png",
        "-i.png",
        "--convert-to.png",
        "a\nb.png",
        "\u202egnp.exe",
        "x" * 4000 + ".png",
    ]
    resp = requests.post(
        f"{daemon.base}/upload",
        headers={"X-API-Key": key},
        files=[("file", (n, b"data")) for n in names],
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    for entry in resp.json()["files"]:
        name = entry["file_name"]
        assert "/" not in name and "\n" not in name and "\u202e" not in name
        assert not name.startswith("-") and len(name.encode()) <= 180
        token, stored = entry["file_path"].split("/")
        assert (daemon.data_dir / "uploads" / token / stored).read_bytes() == b"data"


def test_trusted_proxy_headers(make_daemon) -> None:  # type: ignore[no-untyped-def]
    d = make_daemon(env={"CONVERTD_TRUST_PROXY": "true"})
    secret = d.create_key("proxied", "--restrict", "ip", "--allow", "198.51.100.7")
    headers = {
        "X-API-Key": secret,
        "X-Forwarded-For": "198.51.100.7, 10.0.0.1",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "convert.example.net",
    }
    resp = requests.post(
        f"{d.base}/convert",
        headers=headers,
        files={"file": ("a.txt", b"a")},
        data={"filetype": "hash", "output_format": "md5"},
        timeout=5,
    )
    assert resp.status_code == 202, resp.text
    assert resp.json()["status_url"].startswith("https://convert.example.net/v1/status/")
    headers["X-Forwarded-For"] = "203.0.113.9"
    assert requests.get(f"{d.base}/keys/me", headers=headers, timeout=5).status_code == 403
