"""Small jobs end to end (issue 19): a file sent with its conversion is recorded with its job
in one transaction, a file part of any size around the one-trip limit arrives whole, and a
small result is sent from memory exactly as aiohttp sends a file (headers, validators, ranges).
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator
from datetime import timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import pytest
import requests
from PIL import Image

from tests.daemon import Daemon
from tests.test_api import assert_error_body

BOUNDARY = "convertdsmalljobs"
CHUNK = 256 * 1024  # api/receive.py's: a part shorter than this is written in one trip


def convert_body(data: bytes, piece: int) -> Iterator[bytes]:
    """A multipart /v1/convert body (sha256 of `data`), sent chunked in `piece`-byte pieces,
    so the daemon reads the file part in several bits."""
    head = "".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in (("filetype", "hash"), ("output_format", "sha256"))
    )
    head += (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="in.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    yield head.encode()
    for start in range(0, len(data), piece):
        time.sleep(0.02)  # each piece on its own, so the daemon reads what has come so far
        yield data[start : start + piece]
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def finished(d: Daemon, key: str, job: dict[str, Any]) -> dict[str, Any]:
    status = requests.get(
        f"{job['status_url']}?wait=60", headers={"X-API-Key": key}, timeout=90
    ).json()
    assert status["status"] == "finished", status
    return dict(status)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7])
def test_file_parts_of_every_size_arrive_whole(daemon: Daemon, key: str, size: int) -> None:
    data = bytes(range(251)) * (size // 251) + bytes(range(size % 251))
    assert len(data) == size
    # Sent in pieces smaller than the daemon's chunk: a part comes in several reads.
    resp = requests.post(
        f"{daemon.base}/convert",
        headers={"X-API-Key": key, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        data=convert_body(data, 100_000),
        timeout=60,
    )
    assert resp.status_code == 202, resp.text
    job = resp.json()
    finished(daemon, key, job)
    result = requests.get(job["download_url"], timeout=30)
    assert result.status_code == 200
    assert result.text == hashlib.sha256(data).hexdigest() + "\n"
    (row,) = daemon.query(
        "SELECT file_size FROM uploads u JOIN jobs j ON j.upload_id = u.id WHERE j.id = ?",
        (job["job_id"],),
    )
    assert row == (size,)


def test_refused_conversion_records_no_upload(make_daemon: Any) -> None:
    """The file and its job are recorded together: a conversion refused once the file is in
    (a text file for the image converter) leaves neither a file nor an upload on record."""
    d = make_daemon()
    key = d.create_key("t", "--plan", "pro")
    assert_error_body(d.convert(key, b"just text", "notes.txt", "image", "png"), 400)
    assert d.query("SELECT COUNT(*) FROM uploads") == [(0,)]
    assert d.query("SELECT COUNT(*) FROM jobs") == [(0,)]
    assert not [p for p in (d.data_dir / "uploads").rglob("*") if p.is_file()]


def test_small_result_is_sent_as_aiohttp_sends_a_file(daemon: Daemon, key: str) -> None:
    """A small result comes from memory (a plain GET); a conditional request takes aiohttp's
    FileResponse: both say the same, so validators from one work with the other."""
    job = daemon.convert(key, b"x", "note.txt", "hash", "md5").json()
    finished(daemon, key, job)
    url = job["download_url"]
    plain = requests.get(url, timeout=30)
    assert plain.status_code == 200
    assert plain.text == hashlib.md5(b"x").hexdigest() + "\n"
    # A condition that holds: FileResponse answers with the whole file.
    as_file = requests.get(
        url, headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}, timeout=30
    )
    assert as_file.status_code == 200
    assert as_file.content == plain.content
    for name in (
        "Content-Type",
        "Content-Length",
        "Content-Disposition",
        "Content-Security-Policy",
        "X-Content-Type-Options",
        "ETag",
        "Last-Modified",
        "Accept-Ranges",
    ):
        assert plain.headers.get(name) == as_file.headers.get(name), name
        assert plain.headers.get(name), name
    # The validators the plain answer gave are the file's own.
    unchanged = requests.get(url, headers={"If-None-Match": plain.headers["ETag"]}, timeout=30)
    assert unchanged.status_code == 304
    part = requests.get(url, headers={"Range": "bytes=0-3"}, timeout=30)
    assert part.status_code == 206
    assert part.content == plain.content[:4]
    head = requests.head(url, timeout=30)
    assert head.status_code == 200
    assert head.headers["Content-Length"] == plain.headers["Content-Length"]


def result_of_size(daemon: Daemon, key: str, small: bool) -> str:
    """A finished job's signed download URL: a 33-byte result (sent from memory when asked
    plainly) or a 120 KB BMP (past SMALL_FILE_BYTES: always aiohttp's FileResponse)."""
    if small:
        job = daemon.convert(key, b"ranges", "r.txt", "hash", "md5").json()
    else:
        png = io.BytesIO()
        Image.new("RGB", (200, 200), (200, 30, 90)).save(png, "PNG")
        job = daemon.convert(key, png.getvalue(), "r.png", "image", "bmp").json()
    finished(daemon, key, job)
    return str(job["download_url"])


@pytest.mark.parametrize("small", [True, False], ids=["from-memory", "file"])
def test_a_range_the_server_does_not_serve_gets_the_whole_file(
    daemon: Daemon, key: str, small: bool
) -> None:
    """Several ranges, or a unit other than bytes: satisfiable, so never a 416 (the first
    stranger's `bytes=0-1,5-6`); RFC 9110 lets the server send 200 and the whole body. One
    range, HEAD and the validators stay as they were."""
    url = result_of_size(daemon, key, small)
    whole = requests.get(url, timeout=30)
    assert whole.status_code == 200 and (len(whole.content) < 100) is small
    if not small:
        assert Image.open(io.BytesIO(whole.content)).size == (200, 200)
    etag = whole.headers["ETag"]
    for rng in ("bytes=0-1,5-6", "bytes=0-1, 0-3", "bytes=-2,0-0", "items=0-1"):
        for extra in ({}, {"If-Range": etag}):
            resp = requests.get(url, headers={"Range": rng, **extra}, timeout=30)
            assert resp.status_code == 200, (rng, extra, resp.status_code)
            assert resp.content == whole.content
            assert resp.headers["ETag"] == etag and "Content-Range" not in resp.headers
        head = requests.head(url, headers={"Range": rng}, timeout=30)
        assert head.status_code == 200
        assert head.headers["Content-Length"] == str(len(whole.content))
    one = requests.get(url, headers={"Range": "bytes=5-6"}, timeout=30)
    assert one.status_code == 206 and one.content == whole.content[5:7]
    assert one.headers["Content-Range"] == f"bytes 5-6/{len(whole.content)}"
    # If-Range: the range only while the tag is the file's own (strong); else all of it, never
    # a piece of another version (aiohttp alone reads dates only, and served any tag's range).
    for if_range, status in ((etag, 206), ('"0-1"', 200), (f"W/{etag}", 200)):
        resumed = requests.get(
            url, headers={"Range": "bytes=5-6", "If-Range": if_range}, timeout=30
        )
        assert resumed.status_code == status, (if_range, resumed.status_code)
        assert resumed.content == (whole.content[5:7] if status == 206 else whole.content)
    stale = requests.get(url, headers={"Range": "bytes=0-1,5-6", "If-Match": '"nope"'}, timeout=30)
    assert stale.status_code == 412
    fresh = requests.get(url, headers={"Range": "bytes=0-1,5-6", "If-None-Match": etag}, timeout=30)
    assert fresh.status_code == 304


@pytest.mark.parametrize("small", [True, False], ids=["from-memory", "file"])
def test_range_edges(daemon: Daemon, key: str, small: bool) -> None:
    """The third stranger's edges: a range holding no byte (`bytes=-0` was a 206 with the whole
    file) is a 416 with the API's JSON error (it was an empty body labelled as the file's type)
    and `bytes */N`; an empty list element is no range, so `bytes=0-1,` is the one range 0-1;
    a malformed range is ignored; a condition is read before the range; a page may send Range
    and its conditions and read what a resumed download needs."""
    url = result_of_size(daemon, key, small)
    whole = requests.get(url, timeout=30).content
    size = len(whole)
    # The fourth stranger: 20 digits was a 200 of the whole file where 19 were a 416.
    huge = (f"bytes={'9' * 19}-", f"bytes={'9' * 20}-", f"bytes={'0' * 30}{size}-")
    for rng in ("bytes=-0", f"bytes={size}-", f"bytes={size}-{size + 5}", "bytes=-0,", *huge):
        refused = requests.get(url, headers={"Range": rng}, timeout=30)
        body = assert_error_body(refused, 416)
        assert body["error"] == "Range Not Satisfiable" and str(size) in body["message"], rng
        assert refused.headers["Content-Range"] == f"bytes */{size}"
    for rng, first, last in (
        ("bytes=0-1,", 0, 1),
        ("bytes=, 5-6", 5, 6),
        ("bytes=-3", size - 3, size - 1),
        (f"bytes=1-{'9' * 25}", 1, size - 1),
        (f"bytes=-{'9' * 25}", 0, size - 1),
    ):
        part = requests.get(url, headers={"Range": rng}, timeout=30)
        assert part.status_code == 206, (rng, part.status_code)
        assert part.content == whole[first : last + 1]
        assert part.headers["Content-Range"] == f"bytes {first}-{last}/{size}"
    for rng in ("bytes=6-5", "bytes=-", "bytes=", "bytes=x-1"):
        ignored = requests.get(url, headers={"Range": rng}, timeout=30)
        assert ignored.status_code == 200 and ignored.content == whole, rng
    etag = requests.head(url, timeout=30).headers["ETag"]
    fresh = requests.get(url, headers={"Range": "bytes=-0", "If-None-Match": etag}, timeout=30)
    assert fresh.status_code == 304
    # If-Range with a date keeps the range for Last-Modified's own date, not a second earlier
    # (Last-Modified rounds the file's time up; the check truncated it).
    said = parsedate_to_datetime(requests.head(url, timeout=30).headers["Last-Modified"])
    for when, status in ((said, 206), (said - timedelta(seconds=1), 200)):
        if_range = format_datetime(when, usegmt=True)
        got = requests.get(url, headers={"Range": "bytes=0-1", "If-Range": if_range}, timeout=30)
        assert got.status_code == status, (if_range, got.status_code)
    # A page resuming a download: its preflight allows Range and the conditions, and the
    # answer lets it read the piece's place and the validator.
    origin = {"Origin": "https://app.example"}
    pre = requests.options(
        url,
        headers={
            **origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range, if-range, if-none-match",
        },
        timeout=10,
    )
    allowed = {h.strip().lower() for h in pre.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"range", "if-range", "if-none-match"} <= allowed
    part = requests.get(url, headers={**origin, "Range": "bytes=0-1", "If-Range": etag}, timeout=30)
    assert part.status_code == 206
    exposed = {h.strip() for h in part.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"Content-Range", "ETag", "Accept-Ranges"} <= exposed
