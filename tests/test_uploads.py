"""Uploads are streamed to disk under a size limit; results expire after the retention period."""

from __future__ import annotations

import hashlib
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from tests.conftest import image_bytes
from tests.daemon import proc_status_kib
from tests.test_api import assert_error_body
from tests.test_metrics import scrape, value, wait_for
from tests.test_v2_api import job_of

BOUNDARY = "convertdtestboundary"


def multipart_stream(name: str, size: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    """A multipart body sent chunked, of `size` bytes of a repeating pattern."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    block = bytes(range(256)) * (chunk // 256)
    sent = 0
    while sent < size:
        part = block[: min(chunk, size - sent)]
        sent += len(part)
        yield part
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def pattern_digest(size: int, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    block = bytes(range(256)) * (chunk // 256)
    sent = 0
    while sent < size:
        part = block[: min(chunk, size - sent)]
        sent += len(part)
        h.update(part)
    return h.hexdigest()


def upload_files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "uploads").rglob("*") if p.is_file()]


def test_too_large_upload_is_413_and_leaves_nothing(make_daemon: Any) -> None:
    d = make_daemon(env={"CONVERTD_MAX_UPLOAD_BYTES": "100000"})
    key = d.create_key("small", "--plan", "pro")
    # Declared too large: refused from Content-Length before the body is read.
    resp = requests.post(
        f"{d.base}/upload",
        headers={"X-API-Key": key},
        files={"file": ("big.bin", b"x" * 300_000)},
        timeout=10,
    )
    body = assert_error_body(resp, 413)
    assert "100,000" in body["message"]
    # Chunked, so the size is only known while streaming: refused when it passes the limit.
    resp = requests.post(
        f"{d.base}/upload",
        headers={"X-API-Key": key, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        data=multipart_stream("big.bin", 300_000, chunk=16_384),
        timeout=10,
    )
    assert_error_body(resp, 413)
    resp = requests.post(
        f"{d.base}/convert",
        headers={"X-API-Key": key},
        files={"file": ("big.bin", b"x" * 300_000)},
        data={"filetype": "hash", "output_format": "md5"},
        timeout=10,
    )
    assert_error_body(resp, 413)
    assert upload_files(d.data_dir) == []
    # Two files that fit alone but not together.
    resp = requests.post(
        f"{d.base}/upload",
        headers={"X-API-Key": key},
        files=[("file", ("a", b"a" * 60_000)), ("file", ("b", b"b" * 60_000))],
        timeout=10,
    )
    assert_error_body(resp, 413)
    assert upload_files(d.data_dir) == []
    ok = requests.post(
        f"{d.base}/upload",
        headers={"X-API-Key": key},
        files={"file": ("fits.bin", b"y" * 90_000)},
        timeout=10,
    )
    assert ok.status_code == 200


def test_large_upload_streams_with_flat_memory(make_daemon: Any) -> None:
    size = 400 * 1024 * 1024
    d = make_daemon(workers=1)
    key = d.create_key("big", "--plan", "pro")
    assert d.proc is not None
    before = proc_status_kib(d.proc.pid, "VmHWM")
    resp = requests.post(
        f"{d.base}/upload",
        headers={"X-API-Key": key, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        data=multipart_stream("big.bin", size),
        timeout=300,
    )
    assert resp.status_code == 200, resp.text
    entry = resp.json()["files"][0]
    assert entry["file_size"] == size
    job = requests.post(
        f"{d.base}/convert",
        headers={"X-API-Key": key},
        data={"file_path": entry["file_path"], "filetype": "hash", "output_format": "sha256"},
        timeout=10,
    ).json()
    status = d.wait(key, job["job_id"], timeout=300)
    digest = requests.get(status["download_url"], headers={"X-API-Key": key}, timeout=10).text
    assert digest.strip() == pattern_digest(size)
    grown_mib = (proc_status_kib(d.proc.pid, "VmHWM") - before) / 1024
    assert grown_mib < 50, f"peak RSS grew by {grown_mib:.0f} MiB for a {size >> 20} MiB upload"


def test_results_and_uploads_expire(make_daemon: Any) -> None:
    d = make_daemon(env={"CONVERTD_RETENTION_SECONDS": "2", "CONVERTD_SWEEP_INTERVAL_SECONDS": "1"})
    key = d.create_key("retention", "--plan", "pro")
    status, out = d.convert_and_fetch(key, image_bytes(), "old.png", "image", "webp")
    assert out is not None
    upload = requests.post(
        f"{d.base}/upload",
        headers={"X-API-Key": key},
        files={"file": ("kept.png", image_bytes())},
        timeout=5,
    ).json()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        resp = requests.get(
            f"{d.base}/status/{status['job_id']}", headers={"X-API-Key": key}, timeout=5
        )
        if resp.status_code == 404:
            break
        time.sleep(0.2)
    body = assert_error_body(resp, 404)
    assert "expired" in body["message"]
    body = assert_error_body(
        requests.get(status["download_url"], headers={"X-API-Key": key}, timeout=5), 404
    )
    assert "expired" in body["message"]
    assert not (d.data_dir / "results" / status["job_id"]).exists()
    # The upload expires too (the sweep may need one more round for it).
    deadline = time.monotonic() + 30
    while upload_files(d.data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert upload_files(d.data_dir) == []
    resp = requests.post(
        f"{d.base}/convert",
        headers={"X-API-Key": key},
        data={
            "file_path": upload["files"][0]["file_path"],
            "filetype": "image",
            "output_format": "png",
        },
        timeout=5,
    )
    assert_error_body(resp, 404)


def drop_mid_upload(d: Any, target: str, headers: str, fields: dict[str, str], reset: bool) -> None:
    """Send half of a 4 MiB multipart upload on a raw socket, wait until the daemon has written
    part of it to disk, then go away as a killed curl does: a FIN, or with `reset` an RST."""
    head = "".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{text}\r\n'
        for name, text in fields.items()
    )
    head += (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    size = 4 << 20
    request = (
        f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(head) + size + len(BOUNDARY) + 8}\r\n\r\n{head}"
    )
    sock = socket.create_connection(("127.0.0.1", d.port), timeout=30)
    try:
        sock.sendall(request.encode() + bytes(size // 2))
        wait_for(lambda: upload_files(d.data_dir), f"part of the upload to {target} on disk")
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()
    wait_for(lambda: not upload_files(d.data_dir), f"the partial upload to {target} removed")
    path = target.partition("?")[0]
    wait_for(lambda: f"POST {path} " in d.log(), f"the access line of {path}")


def test_a_client_that_drops_its_upload_is_no_server_error(make_daemon: Any) -> None:
    """A client gone mid-upload (curl killed, a laptop closed) is logged as going away and
    counted 499 as nginx does: not 503 "database unavailable", not any 5xx, no ERROR line; what
    it had sent is removed."""
    d = make_daemon(env={"CONVERTD_OFFICE_PREWARM": "false"})
    key = d.create_key("dropper", "--plan", "pro")
    prom = d.create_key("prometheus", "--scope", "metrics")
    form = job_of(d, key, {"up": {"operation": "import/upload"}})["tasks"][0]["result"]["form"]
    v2_target = form["url"].removeprefix(f"http://127.0.0.1:{d.port}")
    hashing = {"filetype": "hash", "output_format": "md5"}
    dropped = [
        ("/v1/upload", f"X-API-Key: {key}\r\n", {}, False),
        ("/v1/convert", f"X-API-Key: {key}\r\n", hashing, True),
        (v2_target, "", {}, False),
    ]
    for target, headers, fields, reset in dropped:
        drop_mid_upload(d, target, headers, fields, reset)
    samples = scrape(d, prom)
    for route in ("/v1/upload", "/v1/convert", "/v2/upload/{task_id}"):
        assert (
            value(samples, "convertd_http_requests_total", method="POST", route=route, status="499")
            == 1
        ), route
    answered = [
        labels
        for (name, labels), _count in samples.items()
        if name == "convertd_http_requests_total" and dict(labels)["status"].startswith("5")
    ]
    assert answered == [], answered
    log = d.log()
    assert "database unavailable" not in log and " ERROR " not in log, log
    assert log.count("the client went away during POST") == 3, log
    assert log.count(" 499 ") == 3, log  # the access lines
