"""What a /v2 task means beyond its happy path: ignore_error, the engine reported, the payload
shown back, which field an error names, timeouts, retries, revoked keys, and credentials that
must not follow a redirect to another origin."""

from __future__ import annotations

import base64
import io
import time
import zipfile
from typing import Any

import requests
from PIL import Image

from tests.conftest import Daemon
from tests.file_server import FileServer
from tests.media import make_video
from tests.test_v2_api import call, job_of, named, wait_job, wait_task


def test_a_failed_task_with_ignore_error_lets_the_job_go_on(
    v2_daemon: Daemon, v2_key: str, file_server: FileServer
) -> None:
    job = job_of(
        v2_daemon,
        v2_key,
        {
            "missing": {
                "operation": "import/url",
                "url": file_server.url("nope.jpg"),
                "ignore_error": True,
            },
            "there": {"operation": "import/raw", "file": "kept", "filename": "kept.txt"},
            "pack": {"operation": "archive", "input": ["missing", "there"]},
            "out": {"operation": "export/url", "input": "pack"},
        },
    )
    done = wait_job(v2_daemon, v2_key, job["id"])
    assert done["status"] == "finished", done
    assert named(done, "missing")["status"] == "error"
    url = named(done, "out")["result"]["files"][0]["url"]
    with zipfile.ZipFile(io.BytesIO(requests.get(url, timeout=10).content)) as zf:
        assert zf.namelist() == ["kept.txt"]


def test_a_job_in_error_has_no_task_left_waiting_on_the_failed_one(
    v2_daemon: Daemon, v2_key: str
) -> None:
    """The fourth stranger: a job read as error while its export still waited on the failed
    convert (failed a moment later as INPUT_TASK_FAILED). A file with no extension fails fast;
    each job is read in a tight loop until it ends, and no answer may show it in error beside a
    task that waits on the failed one, directly or through another (pack)."""
    for _ in range(8):
        job = job_of(
            v2_daemon,
            v2_key,
            {
                "in": {"operation": "import/raw", "file": "not a pdf", "filename": "noext"},
                "c": {"operation": "convert", "input": "in", "output_format": "pdf"},
                "out": {"operation": "export/url", "input": "c"},
                "pack": {"operation": "archive", "input": "c"},
                "out2": {"operation": "export/url", "input": "pack"},
            },
        )
        while True:
            resp = call(v2_daemon, v2_key, "GET", f"/v2/jobs/{job['id']}")
            now = resp.json()["data"]
            if now["status"] in ("error", "finished"):
                break
        assert now["status"] == "error", now
        left = {t["name"]: t["status"] for t in now["tasks"] if t["status"] != "error"}
        assert left == {"in": "finished"}, now
        for name in ("out", "pack", "out2"):
            assert named(now, name)["code"] == "INPUT_TASK_FAILED", now
        # The convert's refusal says what to do, as v1's does (the fourth stranger).
        assert "name it with its extension (as in report.docx)" in named(now, "c")["message"]
        # Its failure is recorded once, and each task's end once (the webhooks' events).
        said = v2_daemon.query("SELECT name FROM events WHERE job_id = ?", (job["id"],))
        assert sorted(n for (n,) in said if n.startswith("job.")) == ["job.created", "job.failed"]
        assert sorted(n for (n,) in said if n.startswith("task.")) == ["task.failed"] * 4 + [
            "task.finished"
        ]


def test_the_engine_reported_is_the_one_that_ran_and_the_payload_comes_back_flat(
    v2_daemon: Daemon, v2_key: str, file_server: FileServer
) -> None:
    job = job_of(
        v2_daemon,
        v2_key,
        {
            "in": {"operation": "import/url", "url": file_server.url("document/word97.doc")},
            "pdf": {
                "operation": "convert",
                "input": "in",
                "output_format": "pdf",
                "engine": "office",
                "pages": "1",
                "timeout": 120,
            },
        },
    )
    assert named(job, "pdf")["engine"] is None  # unknown until the input is known
    done = wait_job(v2_daemon, v2_key, job["id"])
    task = named(done, "pdf")
    assert done["status"] == "finished", done
    assert task["engine"] == "libreoffice"
    assert task["payload"] == {
        "operation": "convert",
        "input": "in",
        "output_format": "pdf",
        "engine": "office",
        "pages": "1",
        "timeout": 120,
    }
    # What comes back can be sent again as it is.
    again = {k: v for k, v in task["payload"].items()}
    resent = call(
        v2_daemon,
        v2_key,
        "POST",
        "/v2/jobs",
        json={"tasks": {"in": {"operation": "import/upload"}, "pdf": again}},
    )
    assert resent.status_code == 201, resent.text
    pillow = job_of(
        v2_daemon,
        v2_key,
        {
            "in": {"operation": "import/upload"},
            "c": {
                "operation": "convert",
                "input": "in",
                "input_format": "png",
                "output_format": "jpg",
            },
        },
    )
    assert named(pillow, "c")["engine"] == "pillow" and named(pillow, "c")["engine_version"]


def test_errors_name_the_field_at_fault(v2_daemon: Daemon, v2_key: str) -> None:
    def errors_of(task: dict[str, Any]) -> dict[str, Any]:
        resp = call(
            v2_daemon,
            v2_key,
            "POST",
            "/v2/jobs",
            json={"tasks": {"in": {"operation": "import/upload"}, "c": {"input": "in", **task}}},
        )
        assert resp.status_code == 422, resp.text
        return resp.json()  # type: ignore[no-any-return]

    bad_dpi = errors_of(
        {
            "operation": "convert",
            "input_format": "pdf",
            "output_format": "png",
            "pages": "1-3",
            "dpi": 30,
        }
    )
    assert list(bad_dpi["errors"]) == ["tasks.c.dpi"] and "36" in bad_dpi["message"]
    nested = errors_of({"operation": "convert", "output_format": "png", "options": {"width": 3}})
    assert "top level" in nested["errors"]["tasks.c.options"][0]
    for operation in ("convert", "archive", "export/url"):
        resp = call(
            v2_daemon, v2_key, "POST", "/v2/jobs", json={"tasks": {"c": {"operation": operation}}}
        )
        assert resp.status_code == 422 and "tasks.c.input" in resp.json()["errors"], operation
    extra = call(
        v2_daemon,
        v2_key,
        "POST",
        "/v2/jobs",
        json={"tasks": {"u": {"operation": "import/upload"}}, "colour": "red"},
    )
    assert extra.status_code == 422 and "colour" in extra.json()["errors"]


def test_json_imports_obey_the_upload_limit_and_forgive_missing_padding(make_daemon: Any) -> None:
    d = make_daemon(env={"CONVERTD_MAX_UPLOAD_BYTES": "1000"})
    k = d.create_key("small", "--plan", "pro")
    for task in (
        {"operation": "import/raw", "file": "x" * 1001, "filename": "a.txt"},
        {
            "operation": "import/base64",
            "file": base64.b64encode(b"x" * 1001).decode(),
            "filename": "a",
        },
    ):
        resp = call(d, k, "POST", "/v2/jobs", json={"tasks": {"t": task}})
        assert resp.status_code == 413 and "1,000 bytes" in resp.json()["message"], resp.text
    unpadded = base64.b64encode(b"hello").decode().rstrip("=")
    ok = call(d, k, "POST", "/v2/import/base64", json={"file": unpadded, "filename": "h.txt"})
    assert ok.status_code == 201 and ok.json()["data"]["result"]["files"][0]["size"] == 5
    huge = call(
        d,
        k,
        "POST",
        "/v2/jobs",
        data=b"{" + b" " * (65 * 1024 * 1024) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert huge.status_code == 413 and "import/upload" in huge.json()["message"]
    assert len(list((d.data_dir / "tasks").iterdir())) == 1  # only the task that was accepted


def test_a_task_timeout_tighter_than_the_limit_is_honoured(make_daemon: Any, tmp_path: Any) -> None:
    d = make_daemon(workers=1)
    k = d.create_key("timeout", "--plan", "pro")
    clip = make_video(
        tmp_path / "long.mp4", 60.0, "1280x720", "-c:v", "libx264", "-preset", "ultrafast"
    )
    job = job_of(
        d,
        k,
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
                "timeout": 2,
            },
        },
    )
    done = wait_job(d, k, job["id"])
    # The message names the task's own 2 s, not the daemon's 600 s job timeout.
    assert done["status"] == "error" and "2 s" in named(done, "c")["message"], done


def test_pages_are_named_after_the_filename_asked_for(
    v2_daemon: Daemon, v2_key: str, file_server: FileServer
) -> None:
    job = job_of(
        v2_daemon,
        v2_key,
        {
            "in": {"operation": "import/url", "url": file_server.url("pdf/outline-bookmarks.pdf")},
            "c": {
                "operation": "convert",
                "input": "in",
                "output_format": "jpg",
                "pages": "1-2",
                "filename": "page.jpg",
            },
        },
    )
    done = wait_job(v2_daemon, v2_key, job["id"])
    assert [f["filename"] for f in named(done, "c")["result"]["files"]] == [
        "page-1.jpg",
        "page-2.jpg",
    ]


def test_retries(v2_daemon: Daemon, v2_key: str, file_server: FileServer) -> None:
    job = job_of(
        v2_daemon,
        v2_key,
        {
            "in": {"operation": "import/url", "url": file_server.url("image/multi-size.ico")},
            "c": {"operation": "convert", "input": "in", "output_format": "png", "width": 64},
        },
    )
    done = wait_job(v2_daemon, v2_key, job["id"])
    assert (
        call(v2_daemon, v2_key, "DELETE", f"/v2/tasks/{named(done, 'in')['id']}").status_code == 204
    )
    refused = call(v2_daemon, v2_key, "POST", f"/v2/tasks/{named(done, 'c')['id']}/retry")
    assert refused.status_code == 422 and "was deleted" in refused.json()["message"]
    upload = job_of(v2_daemon, v2_key, {"u": {"operation": "import/upload"}})["tasks"][0]
    call(v2_daemon, v2_key, "POST", f"/v2/tasks/{upload['id']}/cancel")
    fresh = call(v2_daemon, v2_key, "POST", f"/v2/tasks/{upload['id']}/retry")
    assert fresh.status_code == 201
    form = fresh.json()["data"]["result"]["form"]
    assert form["url"] != upload["result"]["form"]["url"]
    sent = requests.post(
        form["url"], data=form["parameters"], files={"file": ("a.png", b"x")}, timeout=10
    )
    assert sent.status_code == 201
    raw = call(v2_daemon, v2_key, "POST", "/v2/import/raw", json={"file": "x", "filename": "x"})
    again = call(v2_daemon, v2_key, "POST", f"/v2/tasks/{raw.json()['data']['id']}/retry")
    assert again.status_code == 422 and again.json()["message"].startswith("An import/raw task")


def test_a_revoked_keys_links_and_forms_stop_working(v2_daemon: Daemon) -> None:
    k = v2_daemon.create_key("doomed", "--plan", "pro")
    job = job_of(
        v2_daemon,
        k,
        {
            "r": {"operation": "import/raw", "file": "x", "filename": "x.txt"},
            "e": {"operation": "export/url", "input": "r"},
            "u": {"operation": "import/upload"},
        },
    )
    form = named(job, "u")["result"]["form"]
    deadline = time.monotonic() + 10
    while True:
        shown = call(v2_daemon, k, "GET", f"/v2/jobs/{job['id']}").json()["data"]
        if named(shown, "e")["status"] == "finished":
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    link = named(shown, "e")["result"]["files"][0]["url"]
    assert requests.get(link, timeout=10).status_code == 200
    key_id = next(
        line.split()[0]
        for line in v2_daemon.cli("keys", "list").stdout.splitlines()
        if " doomed " in line
    )
    v2_daemon.cli("keys", "revoke", key_id)
    assert requests.get(link, timeout=10).status_code == 410
    refused = requests.post(
        form["url"], data=form["parameters"], files={"file": ("a", b"x")}, timeout=10
    )
    assert refused.status_code == 410


def test_credentials_do_not_follow_a_redirect_to_another_origin(
    v2_daemon: Daemon, v2_key: str, file_server: FileServer
) -> None:
    other_origin = f"http://localhost:{file_server.port}/image/multi-size.ico"
    hops = file_server.url("redirect?to=" + other_origin)
    before = len(file_server.headers)
    task = call(
        v2_daemon,
        v2_key,
        "POST",
        "/v2/import/url",
        json={"url": hops, "headers": {"Authorization": "Bearer SECRET", "X-Trace": "1"}},
    ).json()["data"]
    done = wait_task(v2_daemon, v2_key, task["id"])
    assert done["status"] == "finished", done
    first, second = file_server.headers[before : before + 2]
    assert first["Authorization"] == "Bearer SECRET" and first["X-Trace"] == "1"
    assert "Authorization" not in second and "X-Trace" not in second


def test_a_chain_of_exports_does_not_stall(v2_daemon: Daemon, v2_key: str) -> None:
    # Each export is ready the moment the one before it finishes; a stall would outlast the
    # daemon's 20 s sync wait and the job would come back unfinished.
    job = job_of(
        v2_daemon,
        v2_key,
        {
            "a": {"operation": "import/raw", "file": "x", "filename": "x.txt"},
            "b": {"operation": "export/url", "input": "a"},
            "c": {"operation": "export/url", "input": "b"},
            "d": {"operation": "export/url", "input": "c"},
        },
    )
    assert wait_job(v2_daemon, v2_key, job["id"])["status"] == "finished"


def test_base64_is_decoded_faithfully_or_refused(v2_daemon: Daemon, v2_key: str) -> None:
    def imported(content: str) -> requests.Response:
        return call(
            v2_daemon, v2_key, "POST", "/v2/import/base64", json={"file": content, "filename": "b"}
        )

    for bad in ("@@@@", "aGVs bG8?", "a"):
        assert imported(bad).status_code == 422, bad
    raw = bytes(range(256))
    for good in (
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "data:application/octet-stream;base64," + base64.b64encode(raw).decode(),
        base64.encodebytes(raw).decode(),  # with line breaks
    ):
        task = imported(good).json()["data"]
        path = v2_daemon.data_dir / "tasks" / task["id"] / "b"
        assert path.read_bytes() == raw


def test_the_engine_named_is_the_tool_that_runs(
    v2_daemon: Daemon, v2_key: str, file_server: FileServer
) -> None:
    cases = {
        ("pdf/outline-bookmarks.pdf", "txt"): "pypdf",
        ("pdf/outline-bookmarks.pdf", "png"): "poppler",
        ("document/word97.doc", "pdf"): "libreoffice",
        ("archive/office-docs.zip", "tar.xz"): "python",
        ("image/multi-size.ico", "png"): "pillow",
    }
    tasks = {}
    for n, (source, fmt) in enumerate(cases):
        tasks[f"in{n}"] = {"operation": "import/url", "url": file_server.url(source)}
        tasks[f"c{n}"] = {"operation": "convert", "input": f"in{n}", "output_format": fmt}
    done = wait_job(v2_daemon, v2_key, job_of(v2_daemon, v2_key, tasks)["id"])
    assert done["status"] == "finished", [
        (t["name"], t["message"]) for t in done["tasks"] if t["message"]
    ]
    for n, engine in enumerate(cases.values()):
        task = named(done, f"c{n}")
        assert task["status"] == "finished", task
        assert task["engine"] == engine and task["engine_version"], task


def test_cloudconvert_option_meanings(
    v2_daemon: Daemon, v2_key: str, file_server: FileServer, tmp_path: Any
) -> None:
    from tests.media import ffprobe

    job = job_of(
        v2_daemon,
        v2_key,
        {
            "ico": {
                "operation": "import/url",
                "url": file_server.url("image/palette-trns-interlaced.png"),
            },
            "max": {
                "operation": "convert",
                "input": "ico",
                "output_format": "png",
                "width": 2000,
                "height": 2000,
                "fit": "max",
            },
            "up": {
                "operation": "convert",
                "input": "ico",
                "output_format": "png",
                "width": 2000,
                "height": 2000,
                "fit": "upscale",
            },
            "mp4": {"operation": "import/url", "url": file_server.url("video/h264-aac.mp4")},
            "quiet": {
                "operation": "convert",
                "input": "mp4",
                "output_format": "mp4",
                "audio_bitrate": 32,
            },
        },
    )
    done = wait_job(v2_daemon, v2_key, job["id"])
    assert done["status"] == "finished", done

    def output(name: str) -> bytes:
        task = named(done, name)
        return (
            v2_daemon.data_dir / "tasks" / task["id"] / task["result"]["files"][0]["filename"]
        ).read_bytes()

    with Image.open(io.BytesIO(output("max"))) as im:
        small = im.size
    with Image.open(io.BytesIO(output("up"))) as im:
        assert max(im.size) == 2000
    assert max(small) < 2000  # max never enlarges
    audio = next(
        s
        for s in ffprobe(output("quiet"), tmp_path, "q.mp4")["streams"]
        if s["codec_type"] == "audio"
    )
    assert int(audio["bit_rate"]) < 48000


def test_more_mistakes_are_caught_when_the_job_is_made(
    v2_daemon: Daemon, v2_key: str, file_server: FileServer
) -> None:
    def status_of(tasks: dict[str, Any]) -> requests.Response:
        return call(v2_daemon, v2_key, "POST", "/v2/jobs", json={"tasks": tasks})

    text = {"operation": "import/raw", "file": "hello", "filename": "a.txt"}
    wrong = status_of(
        {
            "t": text,
            "c": {"operation": "convert", "input": "t", "output_format": "pdf", "width": 300},
        }
    )
    assert wrong.status_code == 422 and "pages" in wrong.json()["errors"]["tasks.c.width"][0]
    both = status_of(
        {
            "i": {"operation": "import/upload"},
            "c": {
                "operation": "convert",
                "input": "i",
                "input_format": "png",
                "output_format": "jpg",
                "strip": True,
                "strip_metadata": False,
            },
        }
    )
    assert both.status_code == 422 and "tasks.c.strip" in both.json()["errors"]
    two = status_of(
        {
            "a": text,
            "b": text,
            "c": {"operation": "convert", "input": ["a", "b"], "output_format": "pdf"},
        }
    )
    assert two.status_code == 422 and "tasks.c.input" in two.json()["errors"]
    unnamed = status_of({"a": {"operation": "import/raw", "file": "x", "filename": "/"}})
    assert unnamed.status_code == 422 and "tasks.a.filename" in unnamed.json()["errors"]
    stray = status_of({"a": {**text, "input": "b"}})
    assert stray.status_code == 422 and "tasks.a.input" in stray.json()["errors"]
    empty = job_of(
        v2_daemon,
        v2_key,
        {
            "e": {"operation": "import/url", "url": file_server.url("empty"), "filename": "e.docx"},
            "c": {"operation": "convert", "input": "e", "output_format": "pdf"},
        },
    )
    done = wait_job(v2_daemon, v2_key, empty["id"])
    assert done["status"] == "error" and "empty" in named(done, "c")["message"]
