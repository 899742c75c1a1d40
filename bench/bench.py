"""Side-by-side benchmarks: convertd against the tools people would otherwise run, in one run
on one machine. Prints a table of medians and ratios and writes it to bench/results.md.

    bench/run            the full suite
    bench/run --quick    each case once or twice, small inputs (what CI runs)
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    def __init__(self, data_dir: Path, workers: int) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/v1"
        self.data_dir = data_dir
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERTD_")}
        env["CONVERTD_CONFIG"] = os.devnull
        self.log = (data_dir.parent / "daemon.log").open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "convertd",
                "serve",
                "--data-dir",
                str(data_dir),
                "--port",
                str(self.port),
                "--workers",
                str(workers),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(f"{self.base}/", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "convertd",
                "keys",
                "create",
                "--name",
                "bench",
                "--plan",
                "pro",
                "--data-dir",
                str(data_dir),
            ],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout
        self.key = out.strip().splitlines()[-1]
        self.http = requests.Session()
        self.http.headers["X-API-Key"] = self.key

    def convert(
        self, data: bytes, name: str, filetype: str, fmt: str, options: dict[str, Any] | None = None
    ) -> bytes:
        """Upload, convert, poll and download: what a client of the API really waits for."""
        fields: dict[str, str] = {"filetype": filetype, "output_format": fmt}
        if options:
            fields["options"] = json.dumps(options)
        job = self.http.post(
            f"{self.base}/convert", files={"file": (name, data)}, data=fields, timeout=600
        ).json()
        # Poll quickly at first, then back off: a tight loop would steal CPU from the very
        # conversion it waits for (the seed API suggests 2 s; short jobs deserve better).
        started = time.perf_counter()
        while True:
            status = self.http.get(job["status_url"], timeout=30).json()
            if status["status"] == "finished":
                return bytes(self.http.get(job["download_url"], timeout=600).content)
            if status["status"] == "failed":
                raise RuntimeError(status["error"])
            waited = time.perf_counter() - started
            time.sleep(0.01 if waited < 1 else 0.05 if waited < 5 else 0.2)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)
        self.log.close()


def timed(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


ROWS: list[tuple[str, str, str, str, str]] = []


def row(case: str, ours: float, theirs: float, unit: str, goal: str, better: str = "lower") -> None:
    ratio = ours / theirs if better == "lower" else theirs / ours
    fmt = (lambda v: f"{v * 1000:.0f} ms") if unit == "s" else (lambda v: f"{v:.1f} {unit}")
    speed = theirs / ours if better == "lower" else ours / theirs
    ROWS.append(
        (
            case,
            fmt(ours),
            fmt(theirs),
            f"{ratio:.2f}x ({speed:.1f}x faster)" if speed >= 1 else f"{ratio:.2f}x",
            goal,
        )
    )
    print(
        f"{case:55} convertd {fmt(ours):>10}  other {fmt(theirs):>10}  ratio {ratio:5.2f}  "
        f"goal {goal}",
        flush=True,
    )


def bench_documents(d: Daemon, work: Path, runs: int) -> None:
    profile = work / "cold-profile"
    docs = {
        "1-page DOCX": "résumé-ünïcode.docx",
        "3-page DOCX with numbered lists": "word2013-numbered-lists.docx",
    }
    for label, name in docs.items():
        docx = (CORPUS / "document" / name).read_bytes()
        d.convert(docx, "warm.docx", "document", "pdf")
        warm = timed(lambda data=docx: d.convert(data, "small.docx", "document", "pdf"), runs)
        src = work / "small.docx"
        src.write_bytes(docx)

        def cold(src: Path = src) -> None:
            out = work / "cold-out"
            shutil.rmtree(out, ignore_errors=True)
            subprocess.run(
                [
                    "soffice",
                    "--headless",
                    "--norestore",
                    f"-env:UserInstallation={profile.as_uri()}",
                    "--convert-to",
                    "pdf",
                    "--outdir",
                    str(out),
                    str(src),
                ],
                capture_output=True,
                check=True,
                timeout=300,
            )

        cold()  # the profile exists from here on, as it does for a script run in a loop
        cold_time = timed(cold, runs)
        row(
            f"document: {label} -> PDF per file (API vs cold soffice)",
            warm,
            cold_time,
            "s",
            "ratio <= 0.1 (>= 10x faster)",
        )

    # Two clients at once: the two warm instances should convert in parallel.
    count = max(4, runs * 2)

    def burst() -> None:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda n: d.convert(docx, f"p{n}.docx", "document", "pdf"), range(count)))

    start = time.perf_counter()
    burst()
    parallel = count / (time.perf_counter() - start)
    serial = 1 / warm
    ROWS.append(
        (
            "document: DOCX->PDF throughput, 2 clients vs 1",
            f"{parallel:.1f}/s",
            f"{serial:.1f}/s",
            f"{parallel / serial:.2f}x",
            "> 1.0 (both cores used)",
        )
    )
    print(
        f"document throughput: {parallel:.1f}/s with 2 clients vs {serial:.1f}/s serial", flush=True
    )


def bench_images(d: Daemon, work: Path, runs: int, quick: bool) -> None:
    size = (1600, 1200) if quick else (4000, 3000)
    buf = io.BytesIO()
    Image.effect_noise(size, 30).convert("RGB").resize(size).save(buf, "JPEG", quality=90)
    jpeg = buf.getvalue()
    src = work / "photo.jpg"
    src.write_bytes(jpeg)

    def bare(width: int | None) -> None:
        with Image.open(src) as im:
            if width:
                im.draft("RGB", (width, width))
                im = im.resize(
                    (width, round(im.height * width / im.width)), Image.Resampling.LANCZOS
                )
            im.save(work / "bare.webp", "WEBP", quality=80, method=4)

    for label, width in (("full size", None), ("resized to 1024 px", 1024)):
        options = {"width": width} if width else None
        ours = timed(lambda o=options: d.convert(jpeg, "photo.jpg", "image", "webp", o), runs)
        theirs = timed(lambda w=width: bare(w), runs)
        row(
            f"image: JPEG {size[0]}x{size[1]} -> WebP {label} (API vs Pillow)",
            ours,
            theirs,
            "s",
            "ratio <= 1.2",
        )


def make_clip(clip: Path, seconds: int) -> Path:
    """A 720p H.264 + AAC test clip of `seconds` seconds."""
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=duration={seconds}:size=1280x720:rate=30",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=440:duration={seconds}",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
            str(clip),
        ],
        check=True,
    )
    return clip


def bench_media(d: Daemon, work: Path, runs: int, quick: bool) -> None:
    seconds = 5 if quick else 60
    clip = make_clip(work / "clip.mp4", seconds)
    data = clip.read_bytes()
    # The same FFmpeg command convertd builds, run directly.
    direct = {
        "mp3": ["-map", "0:a:0", "-vn", "-c:a", "libmp3lame", "-b:a", "192k", "-f", "mp3"],
        "mp4": [
            "-map",
            "0:v:0",
            "-map",
            "0:a:0?",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-crf",
            "26",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-movflags",
            "+faststart",
            "-map_metadata",
            "-1",
            "-f",
            "mp4",
        ],
    }
    for fmt, args in direct.items():
        ours = timed(lambda f=fmt: d.convert(data, "clip.mp4", "video", f), max(1, runs // 2))
        theirs = timed(
            lambda a=args: subprocess.run(
                [
                    "ffmpeg",
                    "-nostdin",
                    "-v",
                    "error",
                    "-y",
                    "-i",
                    str(clip),
                    *a,
                    str(work / "direct.out"),
                ],
                check=True,
            ),
            max(1, runs // 2),
        )
        row(
            f"video: {seconds} s 720p H.264 -> {fmt} (API vs ffmpeg)",
            ours,
            theirs,
            "s",
            "ratio <= 1.05",
        )


def bench_queue(work: Path, quick: bool) -> None:
    """Enqueue, claim and finish with no conversion at all: the SQLite queue's own speed, with
    the production settings (WAL, synchronous=NORMAL, one writer)."""
    import asyncio

    from convertd import jobs, uploads
    from convertd.db import Database

    count = 300 if quick else 3000

    async def run() -> float:
        db = await Database.open(work / "queue-bench.db")
        (upload,) = await uploads.record_uploads(db, None, [("t/x", "x", 1, "txt")])
        start = time.perf_counter()
        for _ in range(count):
            await jobs.create(
                db,
                key_id=None,
                upload_id=upload.id,
                filetype="hash",
                input_format="txt",
                output_format="md5",
                options={},
            )
        while (job := await jobs.claim_next(db, "bench")) is not None:
            await jobs.finish(db, job.id, "bench", "x.md5", 1, 33)
        elapsed = time.perf_counter() - start
        await db.close()
        return count / elapsed

    import logging

    logging.getLogger("convertd").setLevel(logging.WARNING)
    rate = asyncio.run(run())
    ROWS.append(
        (
            "queue: enqueue + claim + finish, no-op jobs",
            f"{rate:.0f} jobs/s",
            "-",
            "-",
            ">= 1,000 jobs/s",
        )
    )
    print(f"queue: {rate:.0f} jobs/s (goal >= 1,000)", flush=True)


LOAD_CLIENT = """
import asyncio, sys, time, aiohttp
url, key, seconds, conc = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
lat = []
async def worker(session, stop):
    while time.perf_counter() < stop:
        t = time.perf_counter()
        async with session.get(url, headers={"X-API-Key": key}) as r:
            await r.read()
            assert r.status == 200, r.status
        lat.append(time.perf_counter() - t)
async def main():
    async with aiohttp.ClientSession() as s:
        stop = time.perf_counter() + seconds
        await asyncio.gather(*(worker(s, stop) for _ in range(conc)))
asyncio.run(main())
lat.sort()
print(len(lat) / seconds, lat[int(len(lat) * 0.99)] * 1000)
"""


def load(d: Daemon, url: str, seconds: float) -> tuple[float, float]:
    """Requests/s and p99 (ms) of authenticated GETs from a separate process, 32 connections."""
    out = subprocess.run(
        [sys.executable, "-c", LOAD_CLIENT, url, d.key, str(seconds), "32"],
        capture_output=True,
        text=True,
        check=True,
    )
    rate, p99 = (float(x) for x in out.stdout.split())
    return rate, p99


def bench_control_plane(d: Daemon, work: Path, quick: bool) -> None:
    """Authenticated status reads per second with the quota counter on: idle, then while two
    video transcodes keep both cores busy (the event loop must not wait on conversions)."""
    job = d.http.post(
        f"{d.base}/convert",
        files={"file": ("a.txt", b"a")},
        data={"filetype": "hash", "output_format": "md5"},
        timeout=30,
    ).json()
    seconds = 3 if quick else 10
    rate, p99 = load(d, job["status_url"], seconds)
    ROWS.append(
        (
            "control plane: GET /v1/status, 32 connections, idle",
            f"{rate:.0f} req/s",
            f"p99 {p99:.1f} ms",
            "-",
            ">= 2,000 req/s",
        )
    )
    print(f"control plane idle: {rate:.0f} req/s, p99 {p99:.1f} ms", flush=True)

    clip = make_clip(work / "busy.mp4", 10 if quick else 60).read_bytes()
    busy = [
        d.http.post(
            f"{d.base}/convert",
            files={"file": (f"busy{n}.mp4", clip)},
            data={"filetype": "video", "output_format": "mp4"},
            timeout=120,
        ).json()
        for n in range(2)
    ]

    def states() -> list[str]:
        return [d.http.get(j["status_url"], timeout=30).json()["status"] for j in busy]

    while states() != ["processing", "processing"]:
        time.sleep(0.05)
    rate, p99 = load(d, job["status_url"], 2 if quick else seconds)
    still_busy = states() == ["processing", "processing"]
    while any(state == "processing" for state in states()):
        time.sleep(0.5)
    ROWS.append(
        (
            "control plane: GET /v1/status while 2 transcodes run"
            + ("" if still_busy else " (a transcode ended early)"),
            f"{rate:.0f} req/s",
            f"p99 {p99:.1f} ms",
            "-",
            "p99 <= 50 ms",
        )
    )
    print(f"control plane busy: {rate:.0f} req/s, p99 {p99:.1f} ms", flush=True)


def write_results(path: Path, quick: bool) -> None:
    lines = [
        "# convertd benchmark results",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}",
        f"- mode: {'quick' if quick else 'full'}; medians of repeated runs; times include "
        "upload, queue, polling and download for convertd",
        "",
        "| case | convertd | other | ratio (convertd / other) | goal |",
        "|---|---:|---:|---:|---|",
        *(f"| {' | '.join(r)} |" for r in ROWS),
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small inputs, few runs (CI)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.md")
    parser.add_argument(
        "--only", choices=("documents", "images", "media", "queue", "control"), action="append"
    )
    args = parser.parse_args()
    runs = 2 if args.quick else 7
    only = set(args.only or ("documents", "images", "media", "queue", "control"))
    with tempfile.TemporaryDirectory(prefix="convertd-bench-") as tmp:
        work = Path(tmp)
        d = Daemon(work / "data", workers=os.cpu_count() or 2)
        try:
            if "documents" in only:
                bench_documents(d, work, runs)
            if "images" in only:
                bench_images(d, work, runs, args.quick)
            if "media" in only:
                bench_media(d, work, runs, args.quick)
            if "control" in only:
                bench_control_plane(d, work, args.quick)
            if "queue" in only:
                bench_queue(work, args.quick)
        finally:
            d.stop()
    write_results(args.out, args.quick)
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
