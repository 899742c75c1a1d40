"""The /v2 API over plain HTTP: validation, errors, scopes, ownership, paging, quotas,
cancellation, waiting, discovery and the network policy of import/url."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import requests

from tests.conftest import CORPUS, Daemon, tool_pids
from tests.file_server import FileServer
from tests.media import make_video


def root(d: Daemon) -> str:
    return d.base.removesuffix("/v1")


def call(d: Daemon, key: str, method: str, path: str, **kw: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}", **kw.pop("headers", {})}
    return requests.request(method, f"{root(d)}{path}", headers=headers, timeout=30, **kw)


def job_of(d: Daemon, key: str, tasks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    resp = call(d, key, "POST", "/v2/jobs", json={"tasks": tasks, **extra})
    assert resp.status_code == 201, resp.text
    return resp.json()["data"]  # type: ignore[no-any-return]


def wait_job(d: Daemon, key: str, job_id: str) -> dict[str, Any]:
    resp = call(d, key, "GET", f"/sync/v2/jobs/{job_id}")
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]  # type: ignore[no-any-return]


def wait_task(d: Daemon, key: str, task_id: str) -> dict[str, Any]:
    resp = call(d, key, "GET", f"/sync/v2/tasks/{task_id}")
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]  # type: ignore[no-any-return]


def named(job: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in job["tasks"] if t["name"] == name)


def test_validation_errors_are_422_in_cloudconverts_shape(v2_daemon: Daemon, v2_key: str) -> None:
    d, k = v2_daemon, v2_key
    cases = [
        ({}, "tasks"),
        ({"tasks": {}}, "tasks"),
        ({"tasks": {"a": {"operation": "explode"}}}, "tasks.a.operation"),
        ({"tasks": {"a": {"operation": "import/url"}}}, "tasks.a.url"),
        ({"tasks": {"a": {"operation": "import/url", "url": "ftp://x/y"}}}, "tasks.a.url"),
        ({"tasks": {"a": {"operation": "import/url", "url": "file:///etc/passwd"}}}, "tasks.a.url"),
        (
            {"tasks": {"a": {"operation": "convert", "input": "nope", "output_format": "pdf"}}},
            "tasks.a.input",
        ),
        (
            {
                "tasks": {
                    "a": {"operation": "convert", "input": "b", "output_format": "png"},
                    "b": {"operation": "convert", "input": "a", "output_format": "png"},
                }
            },
            "tasks",
        ),
        ({"tasks": {"a": {"operation": "import/upload", "colour": "red"}}}, "tasks.a.colour"),
        ({"tasks": {"a": {"operation": "import/upload"}}, "tag": 5}, "tag"),
        (
            {"tasks": {"a": {"operation": "import/upload", "ignore_error": "yes"}}},
            "tasks.a.ignore_error",
        ),
        (
            {
                "tasks": {
                    "i": {"operation": "import/upload"},
                    "a": {"operation": "export/url", "input": "i", "inline": 1},
                }
            },
            "tasks.a.inline",
        ),
    ]
    for body, field in cases:
        resp = call(d, k, "POST", "/v2/jobs", json=body)
        assert resp.status_code == 422, (body, resp.text)
        error = resp.json()
        assert error["code"] == "INVALID_DATA" and error["message"], error
        assert field in error["errors"] or field == "tasks.a.input" or field == "tasks", (
            body,
            error,
        )
    malformed = call(
        d, k, "POST", "/v2/jobs", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400 and malformed.json()["code"] == "BAD_REQUEST"
    # Nothing was created by any of them.
    assert call(d, k, "GET", "/v2/jobs?filter[tag]=5").json()["data"] == []


def test_unknown_convert_options_name_the_known_ones(v2_daemon: Daemon, v2_key: str) -> None:
    body = {
        "tasks": {
            "in": {"operation": "import/upload"},
            "c": {
                "operation": "convert",
                "input": "in",
                "input_format": "png",
                "output_format": "jpg",
                "sharpness": 3,
            },
        }
    }
    resp = call(v2_daemon, v2_key, "POST", "/v2/jobs", json=body)
    assert resp.status_code == 422
    problem = resp.json()["errors"]["tasks.c.sharpness"][0]
    for known in ("quality", "width", "height", "fit", "strip"):
        assert known in problem, problem
    bad_value = call(
        v2_daemon,
        v2_key,
        "POST",
        "/v2/convert",
        json={"input": "x", "output_format": "jpg", "quality": 500},
    )
    assert bad_value.status_code == 422  # the input is not a task of this key either


def test_operations_not_done_yet_are_422_not_404(v2_daemon: Daemon, v2_key: str) -> None:
    for operation in ("import/s3", "export/s3"):
        resp = call(v2_daemon, v2_key, "POST", f"/v2/{operation}", json={})
        assert resp.status_code == 422, operation
        assert "not available in convertd yet" in resp.json()["message"]
        in_job = call(
            v2_daemon, v2_key, "POST", "/v2/jobs", json={"tasks": {"x": {"operation": operation}}}
        )
        assert in_job.status_code == 422 and "not available" in in_job.json()["message"]


def test_scopes_are_enforced_on_v2_and_v1(v2_daemon: Daemon) -> None:
    reader = v2_daemon.create_key("reader", "--plan", "pro", "--scope", "task.read")
    listing = v2_daemon.cli("keys", "list", "--json")
    shown = {k["name"]: k["scopes"] for k in __import__("json").loads(listing.stdout)}
    assert shown["reader"] == ["task.read"]
    assert len(shown["v2-pro"]) == 6
    assert call(v2_daemon, reader, "GET", "/v2/jobs").status_code == 200
    denied = call(v2_daemon, reader, "POST", "/v2/import/upload", json={})
    assert denied.status_code == 403 and denied.json()["code"] == "FORBIDDEN"
    assert "task.write" in denied.json()["message"]
    assert call(v2_daemon, reader, "GET", "/v2/users/me").status_code == 403
    v1 = requests.post(
        f"{v2_daemon.base}/upload",
        headers={"X-API-Key": reader},
        files={"file": ("a.txt", b"x")},
        timeout=10,
    )
    assert v1.status_code == 403 and v1.json()["error"] == "Forbidden"  # v1 keeps its body
    bad = v2_daemon.cli("keys", "create", "--name", "x", "--scope", "root", check=False)
    assert bad.returncode != 0


def test_other_keys_jobs_and_tasks_are_not_found(v2_daemon: Daemon, v2_key: str) -> None:
    other = v2_daemon.create_key("other", "--plan", "pro")
    job = job_of(v2_daemon, v2_key, {"up": {"operation": "import/upload"}})
    task_id = job["tasks"][0]["id"]
    for method, path in [
        ("GET", f"/v2/jobs/{job['id']}"),
        ("DELETE", f"/v2/jobs/{job['id']}"),
        ("GET", f"/sync/v2/jobs/{job['id']}"),
        ("GET", f"/v2/tasks/{task_id}"),
        ("POST", f"/v2/tasks/{task_id}/cancel"),
        ("DELETE", f"/v2/tasks/{task_id}"),
    ]:
        resp = call(v2_daemon, other, method, path)
        assert resp.status_code == 404 and resp.json()["code"] == "NOT_FOUND", (method, path)
    assert (
        call(v2_daemon, other, "GET", f"/v2/tasks?filter[job_id]={job['id']}").json()["data"] == []
    )
    stolen = call(v2_daemon, other, "POST", "/v2/export/url", json={"input": task_id})
    assert stolen.status_code == 422
    assert call(v2_daemon, v2_key, "GET", f"/v2/jobs/{job['id']}").status_code == 200


def test_paging_links_and_meta(v2_daemon: Daemon) -> None:
    k = v2_daemon.create_key("pager", "--plan", "pro")
    ids = [
        job_of(v2_daemon, k, {"u": {"operation": "import/upload"}}, tag="paged")["id"]
        for _ in range(5)
    ]
    first = call(v2_daemon, k, "GET", "/v2/jobs?filter[tag]=paged&per_page=2").json()
    assert [j["id"] for j in first["data"]] == ids[::-1][:2]
    assert first["meta"]["current_page"] == 1 and first["meta"]["per_page"] == 2
    assert first["meta"]["from"] == 1 and first["meta"]["to"] == 2
    assert first["links"]["prev"] is None and "page=2" in first["links"]["next"]
    assert "filter%5Btag%5D=paged" in first["links"]["next"]
    third = requests.get(
        first["links"]["last"], headers={"Authorization": f"Bearer {k}"}, timeout=10
    ).json()
    assert [j["id"] for j in third["data"]] == ids[:1] and third["links"]["next"] is None
    assert "tasks" not in first["data"][0]
    with_tasks = call(v2_daemon, k, "GET", "/v2/jobs?include=tasks&per_page=1").json()
    assert len(with_tasks["data"][0]["tasks"]) == 1
    for bad in ("per_page=0", "per_page=5000", "page=x", "filter[status]=done"):
        assert call(v2_daemon, k, "GET", f"/v2/jobs?{bad}").status_code == 422, bad
    waiting = call(
        v2_daemon, k, "GET", "/v2/tasks?filter[status]=waiting&filter[operation]=import/upload"
    )
    assert len(waiting.json()["data"]) == 5


def test_quota_counts_calls_and_sends_rate_limit_headers(v2_daemon: Daemon) -> None:
    v2_daemon.cli("plans", "set", "tiny", "--api", "--calls-per-minute", "3")
    k = v2_daemon.create_key("tiny", "--plan", "tiny")
    first = call(
        v2_daemon, k, "POST", "/v2/jobs", json={"tasks": {"u": {"operation": "import/upload"}}}
    )
    assert first.status_code == 201
    assert (
        first.headers["X-RateLimit-Limit"] == "3" and first.headers["X-RateLimit-Remaining"] == "2"
    )
    assert call(v2_daemon, k, "GET", "/v2/jobs").headers["X-RateLimit-Remaining"] == "1"
    assert call(v2_daemon, k, "GET", "/v2/users/me").status_code == 200
    refused = call(v2_daemon, k, "GET", "/v2/jobs")
    assert refused.status_code == 429 and refused.json()["code"] == "TOO_MANY_REQUESTS"
    assert int(refused.headers["Retry-After"]) >= 1
    # The keyless upload form is not a call of the key's.
    task = first.json()["data"]["tasks"][0]
    form = task["result"]["form"]
    up = requests.post(
        form["url"], data=form["parameters"], files={"file": ("a.txt", b"hi")}, timeout=10
    )
    assert up.status_code == 201


def test_users_me_and_formats(v2_daemon: Daemon, v2_key: str) -> None:
    me = call(v2_daemon, v2_key, "GET", "/v2/users/me").json()["data"]
    assert me["username"] == "v2-pro" and me["credits"] == 2**31 - 1  # pro: unlimited
    assert me["links"]["self"].endswith("/v2/users/me")
    assert call(v2_daemon, v2_key, "GET", "/v2/users/me").json()["data"]["id"] == me["id"]
    index = requests.get(f"{root(v2_daemon)}/v2/", timeout=10).json()
    assert (
        index["api_version"] == "v2"
        and {"method": "POST", "path": "/v2/jobs"}.items()
        <= {
            **next(
                e for e in index["endpoints"] if e["path"] == "/v2/jobs" and e["method"] == "POST"
            )
        }.items()
    )
    assert set(me["scopes"]) >= {"task.read", "task.write", "user.read"}
    formats = requests.get(
        f"{root(v2_daemon)}/v2/convert/formats?filter[input_format]=docx&filter[output_format]=pdf&include=options",
        timeout=10,
    ).json()["data"]
    assert formats and formats[0]["engine"] == "libreoffice"
    assert {o["name"] for o in formats[0]["options"]} >= {"pages"}
    images = requests.get(
        f"{root(v2_daemon)}/v2/convert/formats?filter[input_format]=png", timeout=10
    ).json()
    outputs = {f["output_format"] for f in images["data"]}
    assert {"jpg", "webp", "pdf", "sha256"} <= outputs
    jpg = next(
        f
        for f in requests.get(
            f"{root(v2_daemon)}/v2/convert/formats?filter[input_format]=png&filter[output_format]=jpg&include=options",
            timeout=10,
        ).json()["data"]
    )
    fit = next(o for o in jpg["options"] if o["name"] == "fit")
    assert fit["type"] == "enum" and "cover" in fit["possible_values"]
    assert any(o["name"] == "strip" for o in jpg["options"])


def test_sync_wait_wakes_on_the_change_and_has_a_maximum(v2_daemon: Daemon, v2_key: str) -> None:
    job = job_of(v2_daemon, v2_key, {"u": {"operation": "import/upload"}})
    task = job["tasks"][0]
    import threading

    result: dict[str, Any] = {}

    def waiter() -> None:
        started = time.monotonic()
        result["job"] = wait_job(v2_daemon, v2_key, job["id"])
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(1.0)
    assert "job" not in result  # still waiting for the upload
    form = task["result"]["form"]
    up = requests.post(
        form["url"], data=form["parameters"], files={"file": ("a.txt", b"hi")}, timeout=10
    )
    assert up.status_code == 201
    thread.join(10)
    assert result["job"]["status"] == "finished"
    # A job that never ends answers at the documented maximum (20 s in this daemon) as it is.
    stuck = job_of(v2_daemon, v2_key, {"u": {"operation": "import/upload"}})
    started = time.monotonic()
    assert wait_job(v2_daemon, v2_key, stuck["id"])["status"] == "waiting"
    assert time.monotonic() - started >= 19


def test_signed_links_are_refused_when_tampered(v2_daemon: Daemon, v2_key: str) -> None:
    job = job_of(
        v2_daemon,
        v2_key,
        {
            "r": {"operation": "import/raw", "file": "secret", "filename": "s.txt"},
            "e": {"operation": "export/url", "input": "r"},
        },
    )
    done = wait_job(v2_daemon, v2_key, job["id"])
    url = named(done, "e")["result"]["files"][0]["url"]
    assert requests.get(url, timeout=10).content == b"secret"
    for tampered in (
        url.replace("signature=", "signature=0"),
        url.replace("expires=", "expires=9"),
        url.replace("/s.txt", "/t.txt"),
        url.split("?")[0],
    ):
        resp = requests.get(tampered, timeout=10)
        assert resp.status_code in (403, 404) and resp.json()["code"] in ("FORBIDDEN", "NOT_FOUND")
    form_task = job_of(v2_daemon, v2_key, {"u": {"operation": "import/upload"}})["tasks"][0]
    form = form_task["result"]["form"]
    forged = requests.post(
        form["url"].replace("signature=", "signature=f"), files={"file": ("a", b"x")}, timeout=10
    )
    assert forged.status_code == 403
    # Deleting the export task invalidates its links.
    assert (
        call(v2_daemon, v2_key, "DELETE", f"/v2/tasks/{named(done, 'e')['id']}").status_code == 204
    )
    assert requests.get(url, timeout=10).status_code == 404


def test_delete_kills_a_running_conversion_within_2_seconds(
    make_daemon: Any, tmp_path: Path, file_server: FileServer
) -> None:
    d = make_daemon(env={"CONVERTD_IMPORT_URL_ALLOW": "127.0.0.1/32"}, workers=1)
    k = d.create_key("killer", "--plan", "pro")
    clip = make_video(
        tmp_path / "long.mp4", 60.0, "1280x720", "-c:v", "libx264", "-preset", "ultrafast"
    )
    job = job_of(
        d,
        k,
        {
            "in": {
                "operation": "import/base64",
                "file": __import__("base64").b64encode(clip.read_bytes()).decode(),
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
    deadline = time.monotonic() + 30
    while not tool_pids("ffmpeg", d.data_dir):
        assert time.monotonic() < deadline, "ffmpeg never started"
        time.sleep(0.05)
    assert call(d, k, "DELETE", f"/v2/jobs/{job['id']}").status_code == 204
    deleted_at = time.monotonic()
    while tool_pids("ffmpeg", d.data_dir):
        assert time.monotonic() - deleted_at < 2.0, "ffmpeg still running 2 s after DELETE"
        time.sleep(0.05)
    assert call(d, k, "GET", f"/v2/jobs/{job['id']}").status_code == 404
    # Its files are gone: the tasks', and the queued conversion's input and output.
    for area in ("tasks", "uploads", "results"):
        assert not any((d.data_dir / area).iterdir()), area
    # Revoking a key cancels what its jobs still wait for.
    waiting = job_of(d, k, {"u": {"operation": "import/upload"}})
    d.cli("keys", "revoke", "1")
    rows = d.query("SELECT status, code FROM tasks WHERE job_id = ?", (waiting["id"],))
    assert rows == [("error", "CANCELLED")]


def test_import_url_network_policy(make_daemon: Any, file_server: FileServer) -> None:
    d = make_daemon()  # no import_url_allow: only public addresses
    k = d.create_key("policy", "--plan", "pro")
    port = file_server.port
    earlier = len(file_server.hits)  # the server is the session's: other tests fetched before
    for url in (
        file_server.url("image/progressive-pixel7pro.jpg"),
        f"http://localhost:{port}/image/progressive-pixel7pro.jpg",
        f"http://[::1]:{port}/x",
        # Unicode spellings of 127.0.0.1 that aiohttp (yarl) connects to as that address.
        f"http://\u2460\u2461\u2466.0.0.1:{port}/image/progressive-pixel7pro.jpg",
        f"http://\uff11\uff12\uff17.0.0.1:{port}/image/progressive-pixel7pro.jpg",
        f"http://127\u30020\u30020\u30021:{port}/image/progressive-pixel7pro.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/x",
        "http://192.168.1.1/x",
        "http://224.0.0.1/x",
        "http://0.0.0.0/x",
    ):
        task = call(d, k, "POST", "/v2/import/url", json={"url": url}).json()["data"]
        done = wait_task(d, k, task["id"])
        assert done["status"] == "error", (url, done)
        assert "import_url_allow" in done["message"], (url, done["message"])
    assert all("pixel7" not in h for h in file_server.hits[earlier:])


def test_import_url_redirects_are_checked_again(
    v2_daemon: Daemon, v2_key: str, file_server: FileServer
) -> None:
    good = file_server.url("redirect?to=" + file_server.url("document/word97.doc"))
    task = call(v2_daemon, v2_key, "POST", "/v2/import/url", json={"url": good}).json()["data"]
    done = wait_task(v2_daemon, v2_key, task["id"])
    assert done["status"] == "finished" and done["result"]["files"][0]["filename"] == "word97.doc"
    size = (CORPUS / "document" / "word97.doc").stat().st_size
    assert done["result"]["files"][0]["size"] == size
    for target in (
        f"http://127.0.0.2:{file_server.port}/x",  # loopback, but not the allowed 127.0.0.1
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
        "ftp://example.com/x",
    ):
        url = file_server.url("redirect?to=" + target)
        task = call(v2_daemon, v2_key, "POST", "/v2/import/url", json={"url": url}).json()["data"]
        done = wait_task(v2_daemon, v2_key, task["id"])
        assert done["status"] == "error", target
        assert "import_url_allow" in done["message"] or "http and https" in done["message"], done


def test_import_url_size_and_time_limits(make_daemon: Any, file_server: FileServer) -> None:
    d = make_daemon(
        env={
            "CONVERTD_IMPORT_URL_ALLOW": "127.0.0.1/32",
            "CONVERTD_MAX_UPLOAD_BYTES": "1000000",
            "CONVERTD_IMPORT_URL_TIMEOUT_SECONDS": "3",
        }
    )
    k = d.create_key("limits", "--plan", "pro")
    big = call(d, k, "POST", "/v2/import/url", json={"url": file_server.url("big")}).json()["data"]
    slow = call(d, k, "POST", "/v2/import/url", json={"url": file_server.url("slow")}).json()[
        "data"
    ]
    big_done = wait_task(d, k, big["id"])
    assert big_done["status"] == "error" and "1,000,000 bytes" in big_done["message"]
    slow_done = wait_task(d, k, slow["id"])
    assert slow_done["status"] == "error" and "3 s" in slow_done["message"]
    assert not any(p.name != ".download" and p.is_file() for p in (d.data_dir / "tasks").rglob("*"))


def test_jobs_and_tasks_expire_after_the_retention_period(make_daemon: Any) -> None:
    d = make_daemon(env={"CONVERTD_RETENTION_SECONDS": "2", "CONVERTD_SWEEP_INTERVAL_SECONDS": "1"})
    k = d.create_key("short", "--plan", "pro")
    job = job_of(
        d,
        k,
        {
            "r": {"operation": "import/raw", "file": "x", "filename": "x.txt"},
            "e": {"operation": "export/url", "input": "r"},
        },
    )
    done = wait_job(d, k, job["id"])
    url = named(done, "e")["result"]["files"][0]["url"]
    alone = call(d, k, "POST", "/v2/import/raw", json={"file": "y", "filename": "y.txt"}).json()
    never_uploaded = job_of(d, k, {"u": {"operation": "import/upload"}})
    # A directory a race left behind, of a task that no longer exists.
    orphan = d.data_dir / "tasks" / "0b7c4a52-5a51-4b8e-9d43-1b2f3c4d5e6f"
    orphan.mkdir()
    (orphan / "left.txt").write_text("x")
    assert requests.get(url, timeout=10).status_code == 200
    deadline = time.monotonic() + 20
    while call(d, k, "GET", f"/v2/jobs/{job['id']}").status_code != 404:
        assert time.monotonic() < deadline, "the job outlived the retention period"
        time.sleep(0.5)
    assert requests.get(url, timeout=10).status_code in (403, 404)
    assert call(d, k, "GET", f"/v2/tasks/{alone['data']['id']}").status_code == 404
    assert call(d, k, "GET", f"/v2/jobs/{never_uploaded['id']}").status_code == 404
    # The orphan was made after the job: a sweep or two later it is old enough to go too.
    while list((d.data_dir / "tasks").iterdir()):
        assert time.monotonic() < deadline + 10, list((d.data_dir / "tasks").iterdir())
        time.sleep(0.5)


def test_a_stopping_daemon_answers_its_sync_waits(make_daemon: Any) -> None:
    import signal
    import threading

    d = make_daemon()
    k = d.create_key("stop", "--plan", "pro")
    job = job_of(d, k, {"u": {"operation": "import/upload"}})
    answer: dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: answer.update(wait_job(d, k, job["id"])))
    waiter.start()
    time.sleep(1.0)
    started = time.monotonic()
    assert d.stop(signal.SIGTERM) == 0
    waiter.join(10)
    assert answer["status"] == "waiting"
    assert time.monotonic() - started < 4  # not held to the server's 5 s shutdown timeout
