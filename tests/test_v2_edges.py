"""Edges a review of /v2 found: files of the same name (and their links' ranges), compressed
transfers, what a cancel reaches, addresses hidden inside IPv6 ones, malformed signatures and
pages, what a job costs."""

from __future__ import annotations

import io
import ipaddress
import zipfile

import requests

from convertd.fetch import Policy, parse_networks
from tests.conftest import CORPUS, Daemon
from tests.file_server import FileServer
from tests.test_v2_api import call, job_of, named, root, wait_job, wait_task


def test_an_export_of_files_sharing_a_name_keeps_both_and_changes_neither(
    v2_daemon: Daemon, v2_key: str
) -> None:
    job = job_of(
        v2_daemon,
        v2_key,
        {
            "a": {"operation": "import/raw", "file": "first", "filename": "same.txt"},
            "b": {"operation": "import/raw", "file": "second", "filename": "same.txt"},
            "out": {"operation": "export/url", "input": ["a", "b"]},
        },
    )
    done = wait_job(v2_daemon, v2_key, job["id"])
    files = named(done, "out")["result"]["files"]
    assert sorted(f["filename"] for f in files) == ["same-2.txt", "same.txt"]
    got = {f["filename"]: requests.get(f["url"], timeout=10).content for f in files}
    assert got == {"same.txt": b"first", "same-2.txt": b"second"}
    # A file link takes ranges as a v1 download does; a range past its end is /v2's JSON error.
    url = next(f["url"] for f in files if f["filename"] == "same.txt")
    part = requests.get(url, headers={"Range": "bytes=1-2,"}, timeout=10)
    assert (part.status_code, part.content) == (206, b"ir")
    refused = requests.get(url, headers={"Range": "bytes=-0"}, timeout=10)
    assert refused.status_code == 416 and refused.headers["Content-Range"] == "bytes */5"
    assert refused.json()["code"] == "RANGE_NOT_SATISFIABLE"
    tasks_dir = v2_daemon.data_dir / "tasks"
    assert (tasks_dir / named(done, "a")["id"] / "same.txt").read_bytes() == b"first"
    assert (tasks_dir / named(done, "b")["id"] / "same.txt").read_bytes() == b"second"


def test_a_compressed_transfer_is_stored_as_the_file(
    v2_daemon: Daemon, v2_key: str, file_server: FileServer
) -> None:
    source = "document/word97.doc"
    task = call(
        v2_daemon,
        v2_key,
        "POST",
        "/v2/import/url",
        json={"url": file_server.url(f"gzipped?path={source}"), "filename": "w.doc"},
    ).json()["data"]
    done = wait_task(v2_daemon, v2_key, task["id"])
    assert done["status"] == "finished", done
    stored = (v2_daemon.data_dir / "tasks" / task["id"] / "w.doc").read_bytes()
    assert stored == (CORPUS / source).read_bytes()
    sent = file_server.headers[file_server.hits.index(f"/gzipped?path={source}")]
    assert sent["Accept-Encoding"] == "identity"


def test_deleting_a_finished_input_spares_what_has_its_own_files(
    v2_daemon: Daemon, v2_key: str
) -> None:
    job = job_of(
        v2_daemon,
        v2_key,
        {
            "a": {"operation": "import/raw", "file": "x", "filename": "a.txt"},
            "copy": {"operation": "export/url", "input": "a"},
            "later": {"operation": "import/upload"},
            "pack": {"operation": "archive", "input": ["copy", "later"]},
        },
    )
    shown = job
    for _ in range(100):
        shown = call(v2_daemon, v2_key, "GET", f"/v2/jobs/{job['id']}").json()["data"]
        if named(shown, "copy")["status"] == "finished":
            break
    assert named(shown, "copy")["status"] == "finished"
    assert (
        call(v2_daemon, v2_key, "DELETE", f"/v2/tasks/{named(job, 'a')['id']}").status_code == 204
    )
    after = call(v2_daemon, v2_key, "GET", f"/v2/jobs/{job['id']}").json()["data"]
    assert named(after, "pack")["status"] == "waiting"  # copy still has its file
    assert named(after, "copy")["status"] == "finished"


def test_addresses_inside_ipv6_ones_are_judged_by_where_they_lead() -> None:
    policy = Policy()
    for refused in (
        "64:ff9b::a00:1",  # NAT64 to 10.0.0.1
        "64:ff9b:1::7f00:1",
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "::7f00:1",  # IPv4-compatible 127.0.0.1
        "::ffff:10.0.0.1",
        "fec0::1",  # site-local
        "::1",
    ):
        assert not policy.permits(ipaddress.ip_address(refused)), refused
    for allowed in ("2001:4860:4860::8888", "64:ff9b::808:808", "8.8.8.8"):
        assert policy.permits(ipaddress.ip_address(allowed)), allowed
    lan = Policy(parse_networks(["10.0.0.0/8"]))
    assert lan.permits(ipaddress.ip_address("64:ff9b::a00:1"))


def test_malformed_signatures_and_pages_are_client_errors(v2_daemon: Daemon, v2_key: str) -> None:
    base = f"{root(v2_daemon)}/v2/files/0b7c4a52-5a51-4b8e-9d43-1b2f3c4d5e6f/x"
    for query in ("expires=99999999999&signature=%C3%A9", "expires=x&signature=ab", "signature=a"):
        resp = requests.get(f"{base}?{query}", timeout=10)
        assert resp.status_code == 403, (query, resp.text)
    for page in ("²", "٣", "1.5", "-1"):
        resp = call(v2_daemon, v2_key, "GET", "/v2/jobs", params={"page": page})
        assert resp.status_code == 422, (page, resp.text)
    assert "unhandled error" not in v2_daemon.log()


def test_each_task_of_a_job_is_a_call(v2_daemon: Daemon) -> None:
    v2_daemon.cli("plans", "set", "five", "--api", "--calls-per-minute", "5")
    k = v2_daemon.create_key("five", "--plan", "five")
    three = {f"u{n}": {"operation": "import/upload"} for n in range(3)}
    first = call(v2_daemon, k, "POST", "/v2/jobs", json={"tasks": three})
    assert first.status_code == 201 and first.headers["X-RateLimit-Remaining"] == "2"
    again = call(v2_daemon, k, "POST", "/v2/jobs", json={"tasks": three})
    assert again.status_code == 429 and "needs 2 more" in again.json()["message"]
    assert again.headers["X-RateLimit-Remaining"] == "1"
    assert call(v2_daemon, k, "GET", "/v2/jobs").status_code == 200  # one call is still left


def test_inline_files_cannot_run_script(v2_daemon: Daemon, v2_key: str) -> None:
    job = job_of(
        v2_daemon,
        v2_key,
        {
            "h": {
                "operation": "import/raw",
                "file": "<script>alert(1)</script>",
                "filename": "x.html",
            },
            "e": {"operation": "export/url", "input": "h", "inline": True},
        },
    )
    url = named(wait_job(v2_daemon, v2_key, job["id"]), "e")["result"]["files"][0]["url"]
    resp = requests.get(url, timeout=10)
    assert resp.headers["Content-Disposition"].startswith("inline")
    assert resp.headers["Content-Security-Policy"] == "sandbox"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_an_empty_text_converts_to_epub(v2_daemon: Daemon, v2_key: str) -> None:
    """/v2 takes an empty .txt as v1's ebook converter does (a stranger's failed 'The input file
    is empty'): an EPUB whose one chapter has no text."""
    job = job_of(
        v2_daemon,
        v2_key,
        {
            "up": {"operation": "import/upload"},
            "c": {"operation": "convert", "input": "up", "output_format": "epub"},
            "out": {"operation": "export/url", "input": "c"},
        },
    )
    form = named(job, "up")["result"]["form"]
    sent = requests.post(
        form["url"], data=form["parameters"], files={"file": ("empty.txt", b"")}, timeout=10
    )
    assert sent.status_code == 201, sent.text
    done = wait_job(v2_daemon, v2_key, job["id"])
    assert named(done, "c")["status"] == "finished", named(done, "c")
    (file,) = named(done, "out")["result"]["files"]
    with zipfile.ZipFile(io.BytesIO(requests.get(file["url"], timeout=10).content)) as book:
        chapters = [n for n in book.namelist() if n.startswith("OEBPS/chapter-")]
        assert len(chapters) == 1 and b"<p>" not in book.read(chapters[0])
