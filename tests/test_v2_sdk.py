"""The official CloudConvert Python SDK, unchanged, against a real daemon: only its `configure`
line differs from what a CloudConvert user writes (and import URLs point at a local server,
since no machine here reaches the internet). Every output is downloaded and opened."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import cloudconvert
import py7zr
import pypdf
import pytest
import requests
from PIL import Image

from convertd.signing import webhook_signature
from tests.conftest import CORPUS, Daemon
from tests.file_server import FileServer

PDF = CORPUS / "pdf" / "google-docs-export.pdf"
DOCX = CORPUS / "document" / "word2013-numbered-lists.docx"
JPG = CORPUS / "image" / "progressive-pixel7pro.jpg"


@pytest.fixture
def sdk(v2_daemon: Daemon, v2_key: str) -> Any:
    root = v2_daemon.base.removesuffix("/v1")
    cloudconvert.configure(api_key=v2_key, endpoint=root, sync_endpoint=f"{root}/sync")
    return cloudconvert


def by_name(job: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in job["tasks"] if t["name"] == name)


def download(sdk: Any, task: dict[str, Any], tmp_path: Path) -> list[Path]:
    out = []
    tmp_path.mkdir(parents=True, exist_ok=True)
    for f in task["result"]["files"]:
        target = tmp_path / f["filename"]
        assert sdk.download(url=f["url"], filename=str(target)) == str(target)
        assert target.stat().st_size == f["size"]
        out.append(target)
    return out


def test_upload_and_download_as_the_sdks_integration_test_does(sdk: Any, tmp_path: Path) -> None:
    """cloudconvert-python tests/integration/testJobs.py, testUploadAndDownloadFiles."""
    job = sdk.Job.create(
        payload={
            "tag": "integration-test-upload-download",
            "tasks": {
                "import-it": {"operation": "import/upload"},
                "export-it": {"input": "import-it", "operation": "export/url"},
            },
        }
    )
    assert job["status"] == "waiting"
    import_task = sdk.Task.find(id=by_name(job, "import-it")["id"])
    assert import_task["message"] == "Waiting for file upload"
    assert sdk.Task.upload(file_name=str(PDF), task=import_task) is True
    exported = sdk.Task.wait(id=by_name(job, "export-it")["id"])
    assert exported["status"] == "finished"
    (out,) = download(sdk, exported, tmp_path)
    assert out.name == PDF.name
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(PDF.read_bytes()).digest()
    # The form works once: a second upload to the same task is refused.
    again = requests.post(
        import_task["result"]["form"]["url"],
        data=import_task["result"]["form"]["parameters"],
        files={"file": ("x.pdf", b"%PDF-1.4")},
        timeout=10,
    )
    assert again.status_code == 410, again.text
    assert again.json()["code"] == "GONE"


def test_import_url_task_as_the_sdks_integration_test_does(
    sdk: Any, v2_daemon: Daemon, v2_key: str, file_server: FileServer
) -> None:
    """cloudconvert-python tests/integration/testTasks.py, testImportUrlTask."""
    task = sdk.Task.create(
        operation="import/url", payload={"url": file_server.url("pdf/google-docs-export.pdf")}
    )
    waited = sdk.Task.wait(id=task["id"])
    assert waited["status"] == "finished", waited
    assert waited["result"]["files"] == [{"filename": PDF.name, "size": PDF.stat().st_size}]
    assert sdk.Task.delete(id=waited["id"]) is True
    gone = requests.get(
        f"{v2_daemon.base.removesuffix('/v1')}/v2/tasks/{waited['id']}",
        headers={"Authorization": f"Bearer {v2_key}"},
        timeout=10,
    )
    assert gone.status_code == 404
    assert gone.json()["code"] == "NOT_FOUND"


def test_a_three_task_job_converts_a_real_document(
    sdk: Any, file_server: FileServer, tmp_path: Path
) -> None:
    job = sdk.Job.create(
        payload={
            "tag": "docx-to-pdf",
            "tasks": {
                "import-1": {
                    "operation": "import/url",
                    "url": file_server.url(f"document/{DOCX.name}"),
                },
                "convert-1": {
                    "operation": "convert",
                    "input": "import-1",
                    "input_format": "docx",
                    "output_format": "pdf",
                    "engine": "office",
                    "filename": "numbered.pdf",
                },
                "export-1": {"operation": "export/url", "input": ["convert-1"]},
            },
        }
    )
    ids = {t["name"]: t["id"] for t in job["tasks"]}
    assert by_name(job, "convert-1")["depends_on_task_ids"] == [ids["import-1"]]
    done = sdk.Job.wait(id=job["id"])
    assert done["status"] == "finished", json.dumps(done, indent=1)
    convert = by_name(done, "convert-1")
    assert convert["engine"] == "libreoffice" and convert["percent"] == 100
    assert convert["payload"]["engine"] == "office"  # what was asked is kept
    (pdf,) = download(sdk, by_name(done, "export-1"), tmp_path)
    assert pdf.name == "numbered.pdf"
    reader = pypdf.PdfReader(pdf)
    assert len(reader.pages) >= 1
    assert reader.pages[0].extract_text().strip()


def test_standalone_tasks_chain_by_id(sdk: Any, file_server: FileServer, tmp_path: Path) -> None:
    imported = sdk.Task.create(
        operation="import/url", payload={"url": file_server.url(f"image/{JPG.name}")}
    )
    converted = sdk.Task.create(
        operation="convert",
        payload={
            "input": imported["id"],
            "output_format": "webp",
            "width": 200,
            "quality": 80,
            "strip": True,
        },
    )
    exported = sdk.Task.create(operation="export/url", payload={"input": converted["id"]})
    assert converted["job_id"] is None and converted["depends_on_task_ids"] == [imported["id"]]
    done = sdk.Task.wait(id=exported["id"])
    assert done["status"] == "finished", done
    (out,) = download(sdk, done, tmp_path)
    with Image.open(out) as im:
        assert im.format == "WEBP" and im.width == 200
        assert not im.getexif()


def test_archive_several_inputs_in_each_format(
    sdk: Any, file_server: FileServer, tmp_path: Path
) -> None:
    for fmt in ("zip", "7z", "tar.gz"):
        job = sdk.Job.create(
            payload={
                "tasks": {
                    "a": {"operation": "import/url", "url": file_server.url(f"image/{JPG.name}")},
                    "b": {"operation": "import/raw", "file": "hello\n", "filename": "hello.txt"},
                    "c": {
                        "operation": "import/base64",
                        "file": base64.b64encode(b"bytes\x00\xff").decode(),
                        "filename": "bin.dat",
                    },
                    "pack": {
                        "operation": "archive",
                        "input": ["a", "b", "c"],
                        "output_format": fmt,
                    },
                    "out": {"operation": "export/url", "input": "pack"},
                }
            }
        )
        done = sdk.Job.wait(id=job["id"])
        assert done["status"] == "finished", json.dumps(done, indent=1)
        (archive,) = download(sdk, by_name(done, "out"), tmp_path / fmt)
        if fmt == "zip":
            with zipfile.ZipFile(archive) as zf:
                names = sorted(zf.namelist())
                assert zf.read("hello.txt") == b"hello\n"
                assert zf.read("bin.dat") == b"bytes\x00\xff"
        elif fmt == "7z":
            with py7zr.SevenZipFile(archive) as sz:
                names = sorted(sz.getnames())
        else:
            with tarfile.open(archive) as tf:
                names = sorted(tf.getnames())
        assert names == sorted([JPG.name, "hello.txt", "bin.dat"]), fmt


def test_export_inline_and_archive_multiple_files(
    sdk: Any, file_server: FileServer, tmp_path: Path
) -> None:
    job = sdk.Job.create(
        payload={
            "tasks": {
                "in": {
                    "operation": "import/url",
                    "url": file_server.url("pdf/outline-bookmarks.pdf"),
                },
                "pages": {
                    "operation": "convert",
                    "input": "in",
                    "output_format": "png",
                    "pages": "1-2",
                },
                "each": {"operation": "export/url", "input": "pages", "inline": True},
                "zipped": {
                    "operation": "export/url",
                    "input": "pages",
                    "archive_multiple_files": True,
                },
            }
        }
    )
    done = sdk.Job.wait(id=job["id"])
    assert done["status"] == "finished", json.dumps(done, indent=1)
    each = by_name(done, "each")["result"]["files"]
    assert len(each) == 2 and all(f["filename"].endswith(".png") for f in each)
    first = requests.get(each[0]["url"], timeout=10)
    assert first.headers["Content-Disposition"].startswith("inline")
    assert Image.open(io.BytesIO(first.content)).format == "PNG"
    (bundle,) = download(sdk, by_name(done, "zipped"), tmp_path)
    with zipfile.ZipFile(bundle) as zf:
        assert sorted(zf.namelist()) == sorted(f["filename"] for f in each)


def test_list_filter_cancel_retry_and_delete(sdk: Any, file_server: FileServer) -> None:
    job = sdk.Job.create(
        payload={
            "tag": "to-cancel",
            "tasks": {
                "up": {"operation": "import/upload"},
                "conv": {"operation": "convert", "input": "up", "output_format": "png"},
                "out": {"operation": "export/url", "input": "conv"},
            },
        }
    )
    listed = sdk.Job.all({"filter[tag]": "to-cancel"})
    assert [j["id"] for j in listed] == [job["id"]]
    assert sdk.Task.cancel(id=by_name(job, "up")["id"]) is True
    done = sdk.Job.wait(id=job["id"])
    assert done["status"] == "error"
    assert {t["name"]: t["code"] for t in done["tasks"]} == {
        "up": "CANCELLED",
        "conv": "CANCELLED",
        "out": "CANCELLED",
    }
    assert job["id"] in [j["id"] for j in sdk.Job.all({"filter[status]": "error"})]
    in_job = sdk.Task.all({"filter[job_id]": job["id"], "filter[operation]": "convert"})
    assert [t["name"] for t in in_job] == ["conv"]

    # A failed import is retried as a new task that points back at it.
    bad = sdk.Task.create(operation="import/url", payload={"url": file_server.url("missing.pdf")})
    failed = sdk.Task.wait(id=bad["id"])
    assert failed["status"] == "error" and "404" in failed["message"]
    retried = sdk.Task.retry(id=bad["id"])
    assert retried["retry_of_task_id"] == bad["id"] and retried["id"] != bad["id"]
    assert sdk.Task.wait(id=retried["id"])["status"] == "error"

    assert sdk.Job.delete(id=job["id"]) is True
    assert (
        "data" not in (sdk.Job.find(id=job["id"]) or {})
        and sdk.Job.find(id=job["id"])["code"] == "NOT_FOUND"
    )


def test_webhook_signatures_verify_with_the_sdk(sdk: Any) -> None:
    body = json.dumps({"event": "job.finished", "job": {"id": "x"}})
    signature = webhook_signature("the-signing-secret", body.encode())
    assert sdk.Webhook.verify(body, signature, "the-signing-secret")
    assert not sdk.Webhook.verify(body, signature, "another-secret")
