"""Every v1 endpoint's success path and every error status in the seed's table."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest
import requests
from PIL import Image

from convertd.store.migrations import SCHEMA_VERSION
from tests.conftest import Daemon, image_bytes


def assert_error_body(resp: requests.Response, status: int) -> dict[str, str]:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert set(body) <= {"error", "message", "hint"}
    assert body["error"] and body["message"]
    return body


def test_api_info_needs_no_key(daemon: Daemon) -> None:
    resp = requests.get(f"{daemon.base}/", timeout=5)
    assert resp.status_code == 200
    body = resp.json()
    assert body["ok"] is True
    assert body["version"] and body["schema_version"] == SCHEMA_VERSION
    paths = {e["path"] for e in body["endpoints"]}
    assert {"/v1/formats", "/v1/upload", "/v1/convert", "/v1/keys/me"} <= paths
    docs = requests.get(body["docs_url"], timeout=5)
    assert docs.status_code == 200 and "/v1/convert" in docs.text


def test_formats_lists_what_this_machine_does(daemon: Daemon, key: str) -> None:
    resp = requests.get(f"{daemon.base}/formats", headers={"X-API-Key": key}, timeout=5)
    assert resp.status_code == 200
    filetypes = resp.json()["filetypes"]
    assert resp.json()["ok"] is True
    assert set(filetypes["image"]["input_formats"]) >= {"jpg", "png", "webp", "gif", "bmp", "tiff"}
    assert set(filetypes["image"]["output_formats"]) >= {
        "jpg",
        "png",
        "webp",
        "gif",
        "bmp",
        "tiff",
        "ico",
    }
    assert set(filetypes["hash"]["output_formats"]) >= {"md5", "sha1", "sha256", "sha512"}


def test_upload_then_convert_by_file_path(daemon: Daemon, key: str) -> None:
    png = image_bytes("PNG", (40, 30))
    resp = requests.post(
        f"{daemon.base}/upload",
        headers={"X-API-Key": key},
        files=[("file", ("a.png", png)), ("file", ("b.txt", b"hello"))],
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    files = resp.json()["files"]
    assert [f["file_name"] for f in files] == ["a.png", "b.txt"]
    assert files[0]["file_size"] == len(png) and files[1]["file_size"] == 5
    assert files[0]["extension"] == "png"
    assert isinstance(files[0]["upload_id"], int)
    assert files[0]["file_path"].endswith("/a.png")

    # A form without a file goes as urlencoded, as the requests library sends it.
    job = requests.post(
        f"{daemon.base}/convert",
        headers={"X-API-Key": key},
        data={"file_path": files[0]["file_path"], "filetype": "image", "output_format": "jpg"},
        timeout=10,
    )
    assert job.status_code == 202, job.text
    body = job.json()
    assert body["ok"] is True and body["status"] == "pending"
    assert body["status_url"] == f"{daemon.base}/status/{body['job_id']}"
    assert body["download_url"].startswith(f"{daemon.base}/download/{body['job_id']}?expires=")
    status = daemon.wait(key, body["job_id"])
    assert status["status"] == "finished" and status["ok"] is True
    out = requests.get(status["download_url"], headers={"X-API-Key": key}, timeout=10)
    assert out.headers["Content-Type"] == "image/jpeg"
    assert out.headers["Content-Disposition"] == 'attachment; filename="a.jpg"'
    with Image.open(io.BytesIO(out.content)) as im:
        assert im.format == "JPEG" and im.size == (40, 30)

    digest = requests.post(
        f"{daemon.base}/convert",
        headers={"X-API-Key": key},
        data={"file_path": files[1]["file_path"], "filetype": "hash", "output_format": "sha256"},
        timeout=10,
    ).json()
    status = daemon.wait(key, digest["job_id"])
    text = requests.get(status["download_url"], headers={"X-API-Key": key}, timeout=10).text
    assert text.strip() == hashlib.sha256(b"hello").hexdigest()


def test_pending_job_409_then_runs_after_restart(make_daemon) -> None:  # type: ignore[no-untyped-def]
    # With no workers the job stays pending: download is a 409 with a hint to poll.
    idle = make_daemon(workers=0)
    key = idle.create_key("pending", "--plan", "pro")
    job = idle.convert(key, image_bytes("PNG"), "p.png", "image", "bmp").json()
    status = requests.get(job["status_url"], headers={"X-API-Key": key}, timeout=5).json()
    assert status == {**status, "ok": True, "status": "pending", "job_id": job["job_id"]}
    early = requests.get(job["download_url"], headers={"X-API-Key": key}, timeout=5)
    assert "status" in assert_error_body(early, 409)["hint"]
    idle.stop()
    # The queue is in SQLite: a daemon with workers on the same data dir runs it.
    busy = make_daemon(workers=1, data_dir=idle.data_dir)
    done = busy.wait(key, job["job_id"])
    assert done["status"] == "finished"
    out = requests.get(done["download_url"], headers={"X-API-Key": key}, timeout=5)
    with Image.open(io.BytesIO(out.content)) as im:
        assert im.format == "BMP"


def test_non_ascii_names_download_with_rfc5987(daemon: Daemon, key: str) -> None:
    status, out = daemon.convert_and_fetch(key, b"x" * 10, "résumé 2026.txt", "hash", "md5")
    assert out is not None
    assert out.content.strip().decode() == hashlib.md5(b"x" * 10).hexdigest()
    cd = out.headers["Content-Disposition"]
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9%202026.md5" in cd
    assert status["file_name"] == "résumé 2026.md5"
    assert status["file_count"] == 1


def test_worker_zips_several_outputs() -> None:
    # The pool's packaging step, on real files: several outputs become one ZIP of them all.
    import tempfile
    from pathlib import Path

    from convertd.converters.run import zip_outputs

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for n in range(3):
            p = Path(tmp) / f"page-{n + 1}.png"
            p.write_bytes(image_bytes("PNG", (8, 8)))
            paths.append(p)
        dest = Path(tmp) / "out.zip"
        zip_outputs(paths, dest)
        with zipfile.ZipFile(dest) as zf:
            assert zf.namelist() == ["page-1.png", "page-2.png", "page-3.png"]
            assert zf.read("page-2.png") == paths[1].read_bytes()


BAD_CONVERTS = [
    ({"output_format": "png"}, "filetype"),
    ({"filetype": "spreadsheet", "output_format": "png"}, "filetype"),
    ({"filetype": "image"}, "output_format"),
    ({"filetype": "image", "output_format": "mp3"}, "output_format"),
    ({"filetype": "image", "output_format": "png", "options": "{nope"}, "options"),
    ({"filetype": "image", "output_format": "png", "options": "[1]"}, "options"),
    ({"filetype": "image", "output_format": "png", "options": '{"colour": 1}'}, "options"),
    ({"filetype": "image", "output_format": "png", "options": '{"quality": 101}'}, "options"),
    ({"filetype": "image", "output_format": "png", "options": '{"width": "wide"}'}, "options"),
    ({"filetype": "image", "output_format": "png", "options": '{"width": 1e9}'}, "options"),
]


@pytest.mark.parametrize(("fields", "named"), BAD_CONVERTS)
def test_convert_400_names_the_field(
    daemon: Daemon, key: str, fields: dict[str, str], named: str
) -> None:
    resp = requests.post(
        f"{daemon.base}/convert",
        headers={"X-API-Key": key},
        files={"file": ("x.png", image_bytes())},
        data=fields,
        timeout=10,
    )
    body = assert_error_body(resp, 400)
    assert named in body["message"]


def test_unknown_option_lists_known_ones(daemon: Daemon, key: str) -> None:
    resp = daemon.convert(key, image_bytes(), "x.png", "image", "png", {"colour": "red"})
    body = assert_error_body(resp, 400)
    assert "quality" in body["message"] and "width" in body["message"]


def test_convert_needs_a_file(daemon: Daemon, key: str) -> None:
    resp = requests.post(
        f"{daemon.base}/convert",
        headers={"X-API-Key": key},
        data={"filetype": "image", "output_format": "png"},
        timeout=10,
    )
    body = assert_error_body(resp, 400)
    assert "file" in body["message"]


def test_convert_refuses_input_the_converter_cannot_read(daemon: Daemon, key: str) -> None:
    resp = daemon.convert(key, b"just text", "notes.txt", "image", "png")
    body = assert_error_body(resp, 400)
    assert "txt" in body["message"] and "png" in body["hint"]


def test_misnamed_image_is_recognised_by_content(daemon: Daemon, key: str) -> None:
    _status, out = daemon.convert_and_fetch(key, image_bytes("PNG"), "scan.dat", "image", "webp")
    assert out is not None
    with Image.open(io.BytesIO(out.content)) as im:
        assert im.format == "WEBP"


def test_corrupt_input_fails_with_a_readable_error(daemon: Daemon, key: str) -> None:
    png = image_bytes("PNG", (200, 200))
    status, out = daemon.convert_and_fetch(key, png[: len(png) // 2], "half.png", "image", "jpg")
    assert out is None
    assert status["status"] == "failed" and status["ok"] is False
    assert "PNG" in status["error"] and "Traceback" not in status["error"]
    resp = requests.get(
        f"{daemon.base}/download/{status['job_id']}", headers={"X-API-Key": key}, timeout=5
    )
    assert_error_body(resp, 409)
    # The daemon is still healthy after the failure.
    _, ok = daemon.convert_and_fetch(key, png, "whole.png", "image", "jpg")
    assert ok is not None


@pytest.mark.parametrize("path", ["/v1/status/{}", "/v1/download/{}"])
@pytest.mark.parametrize("job_id", ["not-a-uuid", "00000000-0000-4000-8000-000000000000"])
def test_unknown_job_is_404(daemon: Daemon, key: str, path: str, job_id: str) -> None:
    resp = requests.get(
        daemon.base[: -len("/v1")] + path.format(job_id), headers={"X-API-Key": key}, timeout=5
    )
    assert_error_body(resp, 404)


def test_unknown_route_and_method_are_json(daemon: Daemon, key: str) -> None:
    body = assert_error_body(requests.get(f"{daemon.base}/nope", timeout=5), 404)
    assert "/v1/nope" in body["message"]
    resp = requests.delete(f"{daemon.base}/formats", headers={"X-API-Key": key}, timeout=5)
    assert_error_body(resp, 405)


def test_upload_without_file_is_400(daemon: Daemon, key: str) -> None:
    resp = requests.post(
        f"{daemon.base}/upload",
        headers={"X-API-Key": key},
        files={"other": ("a", b"1")},
        timeout=5,
    )
    assert_error_body(resp, 400)
    resp = requests.post(
        f"{daemon.base}/upload", headers={"X-API-Key": key}, data={"a": "b"}, timeout=5
    )
    assert_error_body(resp, 400)


def test_json_body_convert_by_file_path(daemon: Daemon, key: str) -> None:
    up = requests.post(
        f"{daemon.base}/upload",
        headers={"X-API-Key": key},
        files={"file": ("j.png", image_bytes())},
        timeout=5,
    ).json()
    resp = requests.post(
        f"{daemon.base}/convert",
        headers={"X-API-Key": key},
        json={
            "file_path": up["files"][0]["file_path"],
            "filetype": "image",
            "output_format": "gif",
            "options": {"width": 10},
        },
        timeout=5,
    )
    assert resp.status_code == 202, resp.text
    status = daemon.wait(key, resp.json()["job_id"])
    out = requests.get(status["download_url"], headers={"X-API-Key": key}, timeout=5)
    with Image.open(io.BytesIO(out.content)) as im:
        assert im.format == "GIF" and im.width == 10


def test_error_bodies_never_leak_tracebacks(daemon: Daemon, key: str) -> None:
    resp = requests.post(
        f"{daemon.base}/convert",
        headers={"X-API-Key": key, "Content-Type": "application/json"},
        data=b"\xff\xfe not json",
        timeout=5,
    )
    body = assert_error_body(resp, 400)
    assert "Traceback" not in json.dumps(body)


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha256", "sha512", "crc32", "blake2b"])
def test_every_hash(daemon: Daemon, key: str, algorithm: str) -> None:
    import zlib

    data = bytes(range(256)) * 5000
    _, out = daemon.convert_and_fetch(key, data, "blob.bin", "hash", algorithm)
    assert out is not None
    expected = (
        f"{zlib.crc32(data):08x}"
        if algorithm == "crc32"
        else hashlib.new(algorithm, data).hexdigest()
    )
    assert out.text == expected + "\n"
    assert out.headers["Content-Type"].startswith("text/plain")


def test_status_keeps_started_at_once_a_job_ends(daemon: Daemon, key: str) -> None:
    # The reference promises started_at with finished_at, for finished and failed jobs alike.
    done, _ = daemon.convert_and_fetch(key, b"data", "d.txt", "hash", "md5")
    failed, _ = daemon.convert_and_fetch(key, b"not a png", "x.png", "image", "webp")
    for status in (done, failed):
        assert status["status"] in {"finished", "failed"}, status
        assert status["started_at"] and status["finished_at"], status
        assert status["created_at"] <= status["started_at"] <= status["finished_at"]
