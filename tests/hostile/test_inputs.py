"""Hostile input: every case ends with a failed (or harmless) job, a healthy daemon, nothing
read outside the job, and no connection to a canary listening on loopback."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import struct
import time
import zipfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.canary import Canary
from tests.conftest import Daemon, image_bytes, small_disk
from tests.daemon import proc_status_kib
from tests.hostile.checks import healthy


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def pixel_bomb_png() -> bytes:
    """A PNG that claims 30000 x 30000 pixels in a kilobyte."""
    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + png_chunk(b"IEND", b"")
    )


def test_pixel_bomb_png_is_refused_before_decoding(daemon: Daemon, key: str) -> None:
    bomb = pixel_bomb_png()
    status, out = daemon.convert_and_fetch(key, bomb, "bomb.png", "image", "webp")
    assert out is None and "limit" in status["error"]


def test_huge_gif_canvas_is_refused(daemon: Daemon, key: str) -> None:
    gif = (
        b"GIF89a"
        + struct.pack("<HH", 65535, 65535)
        + b"\x00\x00\x00"
        + b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
    )
    status, out = daemon.convert_and_fetch(key, gif, "canvas.gif", "image", "png")
    assert out is None and status["status"] == "failed"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("eps.jpg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n(/etc/passwd) run\n"),
        (
            "psd.jpg",
            b"8BPS\x00\x01" + b"\x00" * 6 + b"\x00\x03\x00\x00\x00\x10\x00\x00\x00\x10"
            b"\x00\x08\x00\x03" + b"\x00" * 64,
        ),
        ("fits.jpg", b"SIMPLE  =                    T" + b" " * 50 + b"END" + b" " * 2797),
    ],
)
def test_decoders_outside_the_allow_list_are_never_used(
    daemon: Daemon, key: str, name: str, data: bytes
) -> None:
    status, out = daemon.convert_and_fetch(key, data, name, "image", "png")
    assert out is None and "not a valid image" in status["error"]


def docx_with_external_image(target: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(
            "[Content_Types].xml",
            (
                '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
                'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats'
                '-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
                '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-'
                'officedocument.wordprocessingml.document.main+xml"/></Types>'
            ),
        )
        zf.writestr(
            "_rels/.rels",
            (
                '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
                '2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
                'officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/>'
                "</Relationships>"
            ),
        )
        zf.writestr(
            "word/_rels/document.xml.rels",
            (
                '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
                '2006/relationships"><Relationship Id="rImg" Type="http://schemas.openxmlformats.org/'
                f'officeDocument/2006/relationships/image" Target="{target}" TargetMode="External"/>'
                "</Relationships>"
            ),
        )
        zf.writestr(
            "word/document.xml",
            (
                '<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/'
                'wordprocessingml/2006/main" xmlns:r="http://schemas.openxmlformats.org/'
                'officeDocument/2006/relationships" xmlns:wp="http://schemas.openxmlformats.org/'
                'drawingml/2006/wordprocessingDrawing" xmlns:a="http://schemas.openxmlformats.org/'
                'drawingml/2006/main" xmlns:pic="http://schemas.openxmlformats.org/drawingml/2006/'
                'picture"><w:body><w:p><w:r><w:t>visible body text</w:t></w:r></w:p><w:p><w:r>'
                '<w:drawing><wp:inline><wp:extent cx="914400" cy="914400"/><wp:docPr id="1" name="p"/>'
                '<a:graphic><a:graphicData uri="http://schemas.openxmlformats.org/drawingml/2006/'
                'picture"><pic:pic><pic:nvPicPr><pic:cNvPr id="1" name="p"/><pic:cNvPicPr/>'
                '</pic:nvPicPr><pic:blipFill><a:blip r:link="rImg"/></pic:blipFill><pic:spPr/>'
                "</pic:pic></a:graphicData></a:graphic></wp:inline></w:drawing></w:r></w:p>"
                "</w:body></w:document>"
            ),
        )
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["pdf", "odt", "html"])
def test_docx_external_image_is_never_fetched(
    daemon: Daemon, key: str, canary: Canary, fmt: str
) -> None:
    for target in (canary.url(), "file:///etc/passwd"):
        status, out = daemon.convert_and_fetch(
            key, docx_with_external_image(target), "external.docx", "document", fmt
        )
        assert out is not None, status
        assert b"root:x:0:0" not in out.content and b"CANARY-CONTENT" not in out.content
    time.sleep(1)
    assert canary.hits == []


def test_pdf_with_circular_xref_fails_in_bounded_time(daemon: Daemon, key: str) -> None:
    body = (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        b"2 0 obj<</Type/Pages/Kids[2 0 R]/Count 1>>endobj\n"
    )
    xref_at = len(body)
    pdf = (
        body
        + b"xref\n0 3\n0000000000 65535 f \n0000000009 00000 n \n0000000054 00000 n \n"
        + f"trailer<</Size 3/Root 1 0 R/Prev {xref_at}>>\nstartxref\n{xref_at}\n%%EOF\n".encode()
    )
    for fmt in ("txt", "pdf", "png"):
        status, _out = daemon.convert_and_fetch(key, pdf, "loop.pdf", "pdf", fmt)
        assert status["status"] in {"failed", "finished"}
        assert "Traceback" not in str(status.get("error"))


def test_flate_bomb_pdf_stays_bounded(daemon: Daemon, key: str) -> None:
    stream = zlib.compress(b"0 0 m 1 1 l S\n" * 20_000_000, 9)
    pdf = (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
        b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 100 100]/Contents 4 0 R>>endobj\n"
        + f"4 0 obj<</Length {len(stream)}/Filter/FlateDecode>>stream\n".encode()
        + stream
        + b"\nendstream endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
    )
    status, _ = daemon.convert_and_fetch(key, pdf, "bomb.pdf", "pdf", "txt")
    assert status["status"] in {"failed", "finished"}


def object_stream_pdf(claimed: int) -> bytes:
    """A one-page PDF whose objects live in an object stream (with an xref stream), the stream
    claiming to hold `claimed` objects."""
    objects = [
        b"<</Type/Catalog/Pages 2 0 R>>",
        b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
        b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 100 100]>>",
    ]
    pairs, offset = [], 0
    for number, obj in enumerate(objects, start=1):
        pairs.append(f"{number} {offset}".encode())
        offset += len(obj) + 1
    head = b" ".join(pairs) + b" "
    packed = zlib.compress(head + b" ".join(objects) + b" ")
    out = io.BytesIO()
    out.write(b"%PDF-1.5\n")
    stream_at = out.tell()
    out.write(
        f"4 0 obj<</Type/ObjStm/N {claimed}/First {len(head)}/Filter/FlateDecode"
        f"/Length {len(packed)}>>stream\n".encode()
        + packed
        + b"\nendstream endobj\n"
    )
    xref_at = out.tell()
    rows = [(0, 0, 65535), (2, 4, 0), (2, 4, 1), (2, 4, 2), (1, stream_at, 0), (1, xref_at, 0)]
    table = b"".join(struct.pack(">BIH", *row) for row in rows)
    out.write(
        f"5 0 obj<</Type/XRef/Size 6/W[1 4 2]/Root 1 0 R/Length {len(table)}>>stream\n".encode()
        + table
        + f"\nendstream endobj\nstartxref\n{xref_at}\n%%EOF\n".encode()
    )
    return out.getvalue()


def test_object_stream_claiming_50_million_objects_is_bounded(daemon: Daemon, key: str) -> None:
    honest = object_stream_pdf(3)
    status, out = daemon.convert_and_fetch(key, honest, "honest.pdf", "pdf", "png", {"dpi": 36})
    assert out is not None, status  # the builder makes a real PDF
    for fmt in ("txt", "pdf", "png"):
        status, _out = daemon.convert_and_fetch(
            key, object_stream_pdf(50_000_000), "huge-objstm.pdf", "pdf", fmt
        )
        assert status["status"] in {"failed", "finished"}
        assert "Traceback" not in str(status.get("error"))


def test_slow_loris_upload_is_dropped(make_daemon: Any) -> None:
    d = make_daemon(
        env={"CONVERTD_UPLOAD_IDLE_TIMEOUT_SECONDS": "1", "CONVERTD_OFFICE_PREWARM": "false"}
    )
    key = d.create_key("slow", "--plan", "pro")
    boundary = "slowboundary"
    head = (
        f"POST /v1/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        "Content-Length: 100000\r\n\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="s.bin"'
        "\r\n\r\nsome bytes"
    ).encode()
    with socket.create_connection(("127.0.0.1", d.port), timeout=30) as sock:
        sock.sendall(head)
        start = time.monotonic()
        response = sock.recv(65536).decode(errors="replace")
        waited = time.monotonic() - start
    assert response.startswith("HTTP/1.1 408"), response[:200]
    assert '"error"' in response and waited < 25
    assert [p for p in (d.data_dir / "uploads").rglob("*") if p.is_file()] == []


def test_hundred_concurrent_uploads_all_accounted(daemon: Daemon, key: str) -> None:
    payloads = [bytes([n]) * (50_000 + n) for n in range(100)]

    def send(n: int) -> tuple[int, dict[str, Any]]:
        resp = requests.post(
            f"{daemon.base}/upload",
            headers={"X-API-Key": key},
            files={"file": (f"u{n}.bin", payloads[n])},
            timeout=60,
        )
        return n, resp.json()

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(send, range(100)))
    for n, body in results:
        entry = body["files"][0]
        assert entry["file_size"] == len(payloads[n])
        stored = daemon.data_dir / "uploads" / entry["file_path"]
        assert stored.read_bytes() == payloads[n]


def test_rate_limit_race_hundred_requests(daemon: Daemon) -> None:
    import datetime as dt

    from tests.daemon import run_cli

    run_cli(daemon.data_dir, "plans", "set", "race10", "--api", "--calls-per-minute", "10")
    secret = daemon.create_key("race", "--plan", "race10")
    if dt.datetime.now(dt.UTC).second >= 50:
        time.sleep(61 - dt.datetime.now(dt.UTC).second)
    with ThreadPoolExecutor(50) as pool:
        codes = list(
            pool.map(
                lambda _: requests.get(
                    f"{daemon.base}/formats", headers={"X-API-Key": secret}, timeout=60
                ),
                range(100),
            )
        )
    statuses = [r.status_code for r in codes]
    assert statuses.count(200) == 10 and statuses.count(429) == 90, sorted(set(statuses))
    assert all("Retry-After" in r.headers for r in codes if r.status_code == 429)
    assert "database is locked" not in daemon.log()


def test_hostile_upload_names_are_stored_safely(daemon: Daemon, key: str) -> None:
    names = (
        "../../etc/cron.d/x.png",
        "-i.png",
        "--convert-to.png",
        "line\nbreak.png",
        "\u202egnp.png",
        "x" * 4000 + ".png",
    )
    for name in names:
        status, out = daemon.convert_and_fetch(key, image_bytes(), name, "image", "webp")
        assert out is not None, (name, status)
        stored = status["file_name"]
        assert "/" not in stored and not stored.startswith("-") and "\n" not in stored
        assert "\u202e" not in stored and len(stored.encode()) <= 180
    assert not Path("/etc/cron.d/x.png").exists()
    # A NUL in a part header is malformed multipart: a 400, not a 500.
    resp = daemon.convert(key, image_bytes(), "a\x00b.png", "image", "webp")
    assert resp.status_code == 400 and resp.json()["error"] == "Bad Request"


@pytest.fixture(name="small_disk")
def small_disk_fixture(tmp_path: Path) -> Iterator[Path]:
    """A 40 MB tmpfs for a data dir."""
    with small_disk(tmp_path, 40) as mount:
        yield mount


def test_disk_full_fails_cleanly(make_daemon: Any, small_disk: Path) -> None:
    import os
    import sqlite3
    import tarfile

    d = make_daemon(env={"CONVERTD_OFFICE_PREWARM": "false"}, data_dir=small_disk / "data")
    key = d.create_key("full", "--plan", "pro")
    resp = requests.post(
        f"{d.base}/upload",
        headers={"X-API-Key": key},
        files={"file": ("big.bin", os.urandom(45 * 1024 * 1024))},
        timeout=120,
    )
    assert resp.status_code == 507 and resp.json()["error"] == "Insufficient Storage"
    assert [p for p in (d.data_dir / "uploads").rglob("*") if p.is_file()] == []
    # A job whose output does not fit: 14 MB in, unpacked and repacked, over 40 MB.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = os.urandom(14 * 1024 * 1024)
        info = tarfile.TarInfo("noise.bin")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    status, out = d.convert_and_fetch(
        key, buf.getvalue(), "noise.tar", "archive", "zip", {"compression_level": 0}
    )
    assert out is None and "disk space" in status["error"], status
    assert list((d.data_dir / "work").iterdir()) == []
    conn = sqlite3.connect(d.data_dir / "convertd.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    healthy(d, key)


def fill_disk(mount: Path, leave_bytes: int) -> Path:
    """A filler file that leaves about `leave_bytes` free on `mount`."""
    import os
    import shutil

    filler = mount / "filler.bin"
    free = shutil.disk_usage(mount).free + (filler.stat().st_size if filler.exists() else 0)
    with filler.open("wb") as fh:
        fh.truncate(0)
        remaining = max(free - leave_bytes, 0)
        while remaining:
            chunk = min(remaining, 4 * 1024 * 1024)
            fh.write(b"\0" * chunk)
            remaining -= chunk
        fh.flush()
        os.fsync(fh.fileno())
    return filler


def test_disk_full_mid_transcode_is_said_and_drops_wait(
    make_daemon: Any, small_disk: Path, tmp_path: Path
) -> None:
    # FFmpeg fills the disk (a 60 s mp3, 1 MB, becomes a 10 MB wav with 4 MB free): progress
    # writes fail too. The API job says "out of disk space" (not "Internal error", not FFmpeg's
    # text); the drop is not failed but converted once there is room; reads keep answering.
    from tests.media import make_audio

    d = make_daemon(
        env={
            "CONVERTD_OFFICE_PREWARM": "false",
            "CONVERTD_DROP_SETTLE_SECONDS": "0.3",
            "CONVERTD_DROP_SCAN_SECONDS": "1",
        },
        data_dir=small_disk / "data",
    )
    key = d.create_key("full", "--plan", "pro")
    song = make_audio(tmp_path / "song.mp3", 60.0).read_bytes()
    filler = fill_disk(small_disk, 5 * 1024 * 1024)
    status, out = d.convert_and_fetch(key, song, "song.mp3", "audio", "wav")
    assert out is None and status["error"] == (
        "The server ran out of disk space while converting this file"
    ), status

    inbox = d.data_dir / "drop" / "inbox" / "wav"
    inbox.mkdir(parents=True)
    (inbox / "song.mp3").write_bytes(song)
    outbox, failed = d.data_dir / "drop" / "outbox", d.data_dir / "drop" / "failed"
    deadline = time.monotonic() + 60
    while "disk was full" not in d.log():
        assert time.monotonic() < deadline, d.log()[-2000:]
        time.sleep(0.2)
    fill_disk(small_disk, 0)  # full to the last byte: reads still answer
    for path in ("/keys/me", f"/status/{status['job_id']}", "/formats"):
        resp = requests.get(f"{d.base}{path}", headers={"X-API-Key": key}, timeout=10)
        assert resp.status_code == 200, (path, resp.text)
    assert not failed.exists() or not any(failed.rglob("song.mp3"))
    filler.unlink()
    deadline = time.monotonic() + 90
    while not (outbox / "song.wav").exists():
        assert time.monotonic() < deadline, d.log()[-2000:]
        time.sleep(0.5)
    assert not failed.exists() or not any(failed.rglob("song.mp3"))
    healthy(d, key)


def test_repeated_kill_9_loses_no_job(make_daemon: Any) -> None:
    import signal as _signal

    d = make_daemon(env={"CONVERTD_OFFICE_PREWARM": "false"}, workers=2)
    key = d.create_key("chaos", "--plan", "pro")
    session = requests.Session()
    session.headers["X-API-Key"] = key
    expected: dict[str, tuple[str, bytes]] = {}
    big = image_bytes("PNG", (1500, 1500))
    for n in range(500):
        if n % 10 == 0:
            data, name, ft, fmt = big, f"img{n}.png", "image", "webp"
        else:
            data, name, ft, fmt = f"payload {n}".encode(), f"f{n}.txt", "hash", "sha256"
        job = session.post(
            f"{d.base}/convert",
            files={"file": (name, data)},
            data={"filetype": ft, "output_format": fmt},
            timeout=30,
        ).json()
        expected[job["job_id"]] = (fmt, data)
        if n in (150, 300, 450):  # kill mid-stream, then start again on the same data dir
            assert d.proc is not None
            d.proc.send_signal(_signal.SIGKILL)
            d.proc.wait()
            d = make_daemon(
                env={"CONVERTD_OFFICE_PREWARM": "false"}, workers=2, data_dir=d.data_dir
            )
            session.headers["X-API-Key"] = key
            base = d.base
            session.get(f"{base}/", timeout=5)
    deadline = time.monotonic() + 300
    pending = set(expected)
    while pending and time.monotonic() < deadline:
        for job_id in list(pending):
            body = session.get(f"{d.base}/status/{job_id}", timeout=10).json()
            if body["status"] in {"finished", "failed"}:
                pending.discard(job_id)
                if body["status"] == "failed":
                    assert body["error"], body
                    continue
                out = session.get(body["download_url"], timeout=30)
                fmt, data = expected[job_id]
                if fmt == "sha256":
                    assert out.text.strip() == hashlib.sha256(data).hexdigest()
                else:
                    from PIL import Image

                    with Image.open(io.BytesIO(out.content)) as im:
                        assert im.format == "WEBP" and im.size == (1500, 1500)
        time.sleep(0.2)
    assert not pending, f"{len(pending)} jobs never ended"


def test_media_length_is_judged_by_what_it_holds(
    daemon: Daemon, key: str, make_daemon: Any, tmp_path: Path
) -> None:
    # A header claiming a day for a 1 s clip (as a fragmented MP4's can) is not believed: the
    # clip converts, in bounded time. What really lasts longer than the limit is refused.
    from tests.media import duration, ffprobe, make_video

    clip = bytearray(
        make_video(
            tmp_path / "short.mp4", 1.0, "64x64", "-c:v", "libx264", "-pix_fmt", "yuv420p"
        ).read_bytes()
    )
    for tag in (b"mvhd", b"mdhd"):  # the movie and track headers now claim 86,400 s
        at = clip.find(tag)
        while at != -1:
            timescale = struct.unpack(">I", clip[at + 16 : at + 20])[0]
            clip[at + 20 : at + 24] = struct.pack(">I", timescale * 86400)
            at = clip.find(tag, at + 4)
    status, out = daemon.convert_and_fetch(key, bytes(clip), "endless.mp4", "video", "webm")
    assert out is not None, status
    assert duration(ffprobe(out.content, tmp_path)) < 2

    strict = make_daemon(env={"CONVERTD_MAX_MEDIA_SECONDS": "2"}, data_dir=tmp_path / "strict")
    strict_key = strict.create_key("strict", "--plan", "pro")
    long_clip = make_video(tmp_path / "long.mp4", 5.0, "64x64").read_bytes()
    status, out = strict.convert_and_fetch(strict_key, long_clip, "long.mp4", "video", "webm")
    assert out is None and "longer than the limit of 2 s (max_media_seconds)" in status["error"], (
        status
    )


def soffice_rss_kib(data_dir: Path) -> int:
    from tests.test_documents import office_pids

    return sum(proc_status_kib(pid, "VmRSS") for pid in office_pids(data_dir))


def test_office_memory_over_a_300_document_soak(make_daemon: Any) -> None:
    from tests.conftest import CORPUS

    d = make_daemon(env={"CONVERTD_OFFICE_INSTANCES": "1"}, workers=1)
    key = d.create_key("soak", "--plan", "pro")
    doc = (CORPUS / "document" / "word2013-numbered-lists.docx").read_bytes()
    session = requests.Session()
    session.headers["X-API-Key"] = key

    def run(count: int) -> None:
        ids = [
            session.post(
                f"{d.base}/convert",
                files={"file": ("d.docx", doc)},
                data={"filetype": "document", "output_format": "pdf"},
                timeout=30,
            ).json()["job_id"]
            for _ in range(count)
        ]
        for job_id in ids:
            assert d.wait(key, job_id, timeout=120)["status"] == "finished"

    run(20)
    warm = soffice_rss_kib(d.data_dir)
    assert warm > 0
    run(280)
    after = soffice_rss_kib(d.data_dir)
    assert after <= 2 * warm, f"soffice grew from {warm} KiB to {after} KiB"
    assert "recycled after 200 documents" in d.log()


DEEP = "[" * 30_000 + "]" * 30_000  # 60 KB: within a multipart field's 64 KB


@pytest.mark.parametrize(
    ("how", "body"),
    [
        ("multipart", {"files": {"file": ("a.txt", b"x")}, "data": {"options": DEEP}}),
        ("urlencoded", {"data": {"options": '{"a": ' + DEEP + "}"}}),
        ("json", {"data": '{"options": ' + DEEP + "}"}),
        ("json, too big", {"data": '{"pad": "' + "x" * 2_000_000 + '"}'}),
    ],
)
def test_deeply_nested_or_huge_json_is_a_400(
    daemon: Daemon, key: str, how: str, body: dict[str, Any]
) -> None:
    headers = {"X-API-Key": key}
    if how.startswith("json"):
        headers["Content-Type"] = "application/json"
    fields = {"filetype": "hash", "output_format": "md5"}
    if how == "multipart" or how == "urlencoded":
        body["data"] = {**body["data"], **fields}
    resp = requests.post(f"{daemon.base}/convert", headers=headers, timeout=30, **body)
    expected = 413 if how == "json, too big" else 400
    assert resp.status_code == expected, resp.text
    assert set(resp.json()) >= {"error", "message"}


def test_a_field_in_an_unknown_charset_is_a_400(daemon: Daemon, key: str) -> None:
    boundary = "b0undary"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="filetype"\r\n'
        "Content-Type: text/plain; charset=x-bogus\r\n\r\n"
        f"hash\r\n--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n'
        f"abc\r\n--{boundary}--\r\n"
    ).encode()
    resp = requests.post(
        f"{daemon.base}/convert",
        headers={"X-API-Key": key, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        data=body,
        timeout=30,
    )
    assert resp.status_code == 400 and "x-bogus" in resp.json()["message"], resp.text


def test_too_many_fields_or_files_are_refused_and_keep_nothing(daemon: Daemon, key: str) -> None:
    # 100,000 tiny fields once held the event loop for 12 s; 5,000 file parts made 5,000
    # upload folders. Both are refused, with the error body, and leave nothing behind.
    uploads = daemon.data_dir / "uploads"
    before = set(uploads.iterdir())
    boundary = "cap"
    fields = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="f{n}"\r\n\r\nx\r\n'
        for n in range(100_000)
    )
    resp = requests.post(
        f"{daemon.base}/convert",
        headers={"X-API-Key": key, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        data=(fields + f"--{boundary}--\r\n").encode(),
        timeout=60,
    )
    assert resp.status_code == 400 and "form fields" in resp.json()["message"], resp.text
    files = [("file", (f"f{n}.txt", b"x")) for n in range(5_000)]
    resp = requests.post(
        f"{daemon.base}/upload", headers={"X-API-Key": key}, files=files, timeout=60
    )
    assert resp.status_code == 400 and "files" in resp.json()["message"], resp.text
    assert set(uploads.iterdir()) == before
    resp = requests.post(
        f"{daemon.base}/convert",
        headers={"X-API-Key": key},
        data={f"f{n}": "x" for n in range(1_000)},
        timeout=60,
    )
    assert resp.status_code == 400 and "form fields" in resp.json()["message"], resp.text


def raw_http(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /v1/ HTTP/1.1\r\n\r\n",  # no Host
        b"GET /v1/?api_key=cvd_secret" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v1/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
        b"POST /v1/convert HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    ],
    ids=["no-host", "long-url", "long-header", "bad-length"],
)
def test_malformed_http_gets_the_json_error_body(
    daemon: Daemon, key: str, request_bytes: bytes
) -> None:
    # What aiohttp's own parser refuses: the JSON error body, and one log line that never
    # quotes the request (a key could be in it).
    before = len(daemon.log().splitlines())
    head, _, body = raw_http(daemon.port, request_bytes).partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"400", head
    assert b"application/json" in head
    assert set(json.loads(body)) == {"error", "message", "hint"}
    time.sleep(0.2)
    new = daemon.log().splitlines()[before:]
    assert "Traceback" not in "\n".join(new) and "cvd_secret" not in "\n".join(new)
    assert sum("malformed request" in line for line in new) == 1, new
