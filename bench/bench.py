"""Side-by-side benchmarks: convertd against the tools people would otherwise run, in one run
on one machine. Prints a table of medians and ratios and writes it to bench/results.md (a
quick run to bench/results-quick.md, not tracked by git, so it never replaces the full run's
rows; --out chooses another file).

    bench/run                 the full suite
    bench/run --quick         each case once or twice, small inputs (what CI runs)
    bench/run --only GROUP    some groups; the file keeps the other groups' rows

This file is a module, not a command: it has no `#!` line and no exec bit, because it needs
the venv's packages (requests, Pillow) that a `#!/usr/bin/env python3` would not find.
bench/run sets the venv up and runs it; `.venv/bin/python bench/bench.py ...` does the same
without the setup.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime as dt
import io
import json
import os
import platform
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from PIL import Image, ImageDraw, ImageFont
from requests.adapters import HTTPAdapter

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus"
sys.path.insert(0, str(ROOT))  # the daemon helpers the tests use, in tests/daemon.py

from cluster import bench_cluster  # noqa: E402 (bench/cluster.py, beside this file)
from pipeline import bench_pipeline  # noqa: E402 (bench/pipeline.py, beside this file)
from unoserver import UnoServer, unoserver_venv  # noqa: E402 (bench/unoserver.py)

from convertd.procs import NICENESS  # noqa: E402
from tests.daemon import Daemon as DaemonProcess  # noqa: E402
from tests.daemon import free_port, proc_status_kib  # noqa: E402


class Pieces:
    """A request body sent as it is, piece by piece: requests takes its length from len() (so
    no chunked encoding) and http.client hands each piece to the socket whole."""

    def __init__(self, *pieces: bytes) -> None:
        self.pieces = pieces

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.pieces)

    def __len__(self) -> int:
        return sum(map(len, self.pieces))


def multipart(fields: dict[str, str], name: str, data: bytes) -> tuple[Pieces, str]:
    """A multipart/form-data body of `fields` and the file `data` (its Content-Type too), as
    curl -F sends it. requests' own encoder copies a 20 MB clip twice in Python on the way."""
    boundary = os.urandom(16).hex()
    head = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    tail = f"\r\n--{boundary}--\r\n"
    return Pieces(head.encode(), data, tail.encode()), f"multipart/form-data; boundary={boundary}"


class Daemon(DaemonProcess):
    """The daemon (started at once, with a `pro` key and an HTTP session) and how a benchmark
    client waits for a conversion."""

    def __init__(self, data_dir: Path, workers: int, env: dict[str, str] | None = None) -> None:
        super().__init__(data_dir, env, workers)
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.start()
        self.key = self.create_key("bench", "--plan", "pro")
        self.http = requests.Session()
        self.http.headers["X-API-Key"] = self.key

    def start(self, ready_within: float = 60) -> Daemon:
        super().start(ready_within)
        return self

    def convert(
        self,
        data: bytes,
        name: str,
        filetype: str,
        fmt: str,
        options: dict[str, Any] | None = None,
        *,
        poll: bool = False,
    ) -> bytes:
        """Upload, convert, wait and download: what a client of the API really waits for. It
        waits as the README says to (`?wait=` on the status: the answer comes when the job
        ends), or, with `poll`, polls the status as a client without `?wait=` would."""
        fields: dict[str, str] = {"filetype": filetype, "output_format": fmt}
        if options:
            fields["options"] = json.dumps(options)
        job = self.submit(data, name, fields)
        status = self.poll(job["status_url"]) if poll else self.wait(job["status_url"])
        if status["status"] == "failed":
            raise RuntimeError(status["error"])
        return self.fetch(status["download_url"])

    def submit(self, data: bytes, name: str, fields: dict[str, str]) -> dict[str, Any]:
        """POST /v1/convert of `data` as the file, with `fields`: the job."""
        body, content_type = multipart(fields, name, data)
        headers = {"Content-Type": content_type}
        return dict(
            self.http.post(f"{self.base}/convert", data=body, headers=headers, timeout=600).json()
        )

    def fetch(self, url: str) -> bytes:
        """The body at `url`, read in one go as curl -o would (requests' `.content` reads in
        10 KiB pieces: 2,000 trips through Python for a 20 MB remux)."""
        with self.http.get(url, timeout=600, stream=True) as resp:
            resp.raise_for_status()
            return bytes(resp.raw.read(decode_content=True))

    def wait(self, status_url: str) -> dict[str, Any]:
        """The job's status once it has ended, by `?wait=` (asked again if it outlasts it)."""
        while True:
            status = dict(self.http.get(status_url, params={"wait": "60"}, timeout=90).json())
            if status["status"] in {"finished", "failed"}:
                return status

    def poll(self, status_url: str) -> dict[str, Any]:
        """The job's status once it has ended, by polling: quickly at first, then backing off
        (a tight loop would steal CPU from the very conversion it waits for)."""
        started = time.perf_counter()
        while True:
            status = dict(self.http.get(status_url, timeout=30).json())
            if status["status"] in {"finished", "failed"}:
                return status
            waited = time.perf_counter() - started
            time.sleep(0.01 if waited < 1 else 0.05 if waited < 5 else 0.2)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120) -> int:
        return super().stop(sig, timeout)

    def submit_transcodes(self, clip: bytes, count: int) -> list[str]:
        """Queue `count` MP4 -> MP4 transcodes of `clip`, without waiting; their job ids."""
        return [
            self.http.post(
                f"{self.base}/convert",
                files={"file": (f"clip{n}.mp4", clip)},
                data={"filetype": "video", "output_format": "mp4"},
                timeout=120,
            ).json()["job_id"]
            for n in range(count)
        ]

    def tiny_job(self) -> str:
        """The status URL of a one-byte hash job: what a status-read benchmark reads."""
        job = self.http.post(
            f"{self.base}/convert",
            files={"file": ("a.txt", b"a")},
            data={"filetype": "hash", "output_format": "md5"},
            timeout=30,
        ).json()
        return str(job["status_url"])

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.http.get(f"{self.base}/status/{job_id}", timeout=30).json())


# How a case repeats: past its asked runs, until the medians after each of its last STABLE_LAST
# runs differ by under STABLE_SPREAD, at most STABLE_CAP times the asked runs and for at most
# STABLE_SECONDS. Quick mode (CI) keeps its asked runs and only says whether they were stable.
STABLE_LAST = 3
STABLE_SPREAD = 0.05
STABLE_CAP = 3
STABLE_SECONDS = 60.0


class Case:
    """What the bench saw while the current case ran (from the previous row to the next): the
    1-minute load averages sampled, and how settled the medians of its timed runs were."""

    extend = True  # main() turns this off in quick mode

    def __init__(self) -> None:
        self.loads: list[float] = []
        self.runs = 0
        self.spread: float | None = None  # the worst of the case's timed calls
        self.same: tuple[str, str] | None = None  # (load, repeats) of the row it shares runs with

    def sample_load(self) -> None:
        self.loads.append(os.getloadavg()[0])

    def timed(self, spread: float | None, runs: int) -> None:
        self.runs = max(self.runs, runs)
        if spread is not None:
            self.spread = max(spread, self.spread or 0.0)

    def load_text(self) -> str:
        self.sample_load()
        low, high = min(self.loads), max(self.loads)
        return f"{low:.1f}" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}-{high:.1f}"

    def repeats_text(self) -> str:
        if not self.runs:
            return "one measurement"
        if self.spread is None:
            return f"{self.runs} run{'s' * (self.runs > 1)}, stability unknown"
        state = "stable" if self.spread < STABLE_SPREAD else "unstable"
        return f"{self.runs} runs, {state}: spread {self.spread * 100:.1f} %"


CASE = Case()


def _spread(samples: list[float]) -> float | None:
    """How far apart the medians after each of the last STABLE_LAST runs are, relative to the
    latest; None with fewer than two runs (nothing to compare)."""
    if len(samples) < 2:
        return None
    medians = [
        statistics.median(samples[:n])
        for n in range(max(1, len(samples) - STABLE_LAST + 1), len(samples) + 1)
    ]
    return (max(medians) - min(medians)) / medians[-1]


def timed_sides(fns: list[Callable[[], object]], runs: int, settle: float = 0.0) -> list[float]:
    """Medians of each of `fns`, run in turn: on a shared machine whose speed drifts, every side
    sees the same drift. Each round starts one side later than the one before, so no side is
    always the one after a pause, or after another's leftovers (the daemon gives memory back
    after 2 idle seconds: its next job maps it afresh). Repeats past `runs` until every side's
    median is stable (see STABLE_SPREAD), and notes the load and spread for the row."""
    samples: list[list[float]] = [[] for _ in fns]
    began = time.monotonic()
    cap = runs * STABLE_CAP if Case.extend else runs
    CASE.sample_load()
    while True:
        first = len(samples[0]) % len(fns)
        for side in [*range(first, len(fns)), *range(first)]:
            time.sleep(settle)
            start = time.perf_counter()
            fns[side]()
            samples[side].append(time.perf_counter() - start)
        done = len(samples[0])
        spreads = [_spread(s) for s in samples]
        spread = None if None in spreads else max(s for s in spreads if s is not None)
        settled = spread is not None and spread < STABLE_SPREAD and done >= STABLE_LAST
        if done >= runs and (settled or done >= cap or time.monotonic() - began > STABLE_SECONDS):
            break
    CASE.sample_load()
    CASE.timed(spread, done)
    return [statistics.median(s) for s in samples]


def timed(fn: Callable[[], object], runs: int) -> float:
    return timed_sides([fn], runs)[0]


def timed_pair(
    ours: Callable[[], object], theirs: Callable[[], object], runs: int, settle: float = 0.0
) -> tuple[float, float]:
    """Medians of both, run alternately (see timed_sides). With `settle`, each run starts after
    that many idle seconds, so work one side leaves behind (convertd readying its next browser
    page) never slows the other."""
    mine, other = timed_sides([ours, theirs], runs, settle)
    return mine, other


# A table row as the groups make it: case, convertd, other, ratio, goal.
Row = tuple[str, str, str, str, str]
# ...and as it is kept: with the load average during the case and how its runs settled.
Measured = tuple[str, str, str, str, str, str, str]


class Rows(list[Measured]):
    """The rows measured so far. Each row appended is printed and annotated with what CASE saw
    since the previous one (the groups append plain Rows, or use row())."""

    def append(self, plain: tuple[str, ...]) -> None:
        case, ours, theirs, ratio, goal = plain[:5]
        load, repeats = CASE.same or (CASE.load_text(), CASE.repeats_text())
        super().append((case, ours, theirs, ratio, goal, load, repeats))
        print(
            f"{case:60} convertd {ours:>12}  other {theirs:>12}  ratio {ratio:>18}  "
            f"load {load:>7}  {repeats}  (goal {goal})",
            flush=True,
        )
        new_case()

    def extend(self, rows: Iterable[tuple[str, ...]], one_case: bool = False) -> None:
        """With `one_case`, the rows come of the same runs: all say the first one's load."""
        for n, plain in enumerate(rows):
            if one_case and n:
                same_case()
            self.append(plain)


def same_case() -> None:
    """The next row comes of the same runs as the previous one: it says the same load and
    repeats."""
    CASE.same = ROWS[-1][5], ROWS[-1][6]


def new_case() -> None:
    """From here on, samples belong to the next row."""
    global CASE
    CASE = Case()
    CASE.sample_load()


ROWS = Rows()


def row(case: str, ours: float, theirs: float, unit: str, goal: str, better: str = "lower") -> None:
    ratio = ours / theirs if better == "lower" else theirs / ours
    fmt = (lambda v: f"{v * 1000:.0f} ms") if unit == "s" else (lambda v: f"{v:.1f} {unit}")
    speed = theirs / ours if better == "lower" else ours / theirs
    ROWS.append(
        (
            case,
            fmt(ours),
            fmt(theirs),
            f"{ratio:.2f}x ({speed:.1f}x faster)" if speed >= 1.1 else f"{ratio:.2f}x",
            goal,
        )
    )


def long_docx(pages: int) -> bytes:
    """A plain DOCX of `pages` pages of text, each ending in a page break."""
    text = "The quick brown fox jumps over the lazy dog. " * 12
    para = f"<w:p><w:r><w:t>{text}</w:t></w:r></w:p>"
    body = "".join(
        f"<w:p><w:r><w:t>Page {n + 1}</w:t></w:r></w:p>{para * 6}"
        '<w:p><w:r><w:br w:type="page"/></w:r></w:p>'
        for n in range(pages)
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            'content-types"><Default Extension="rels" ContentType="application/vnd.'
            'openxmlformats-package.relationships+xml"/><Default Extension="xml" '
            'ContentType="application/xml"/><Override PartName="/word/document.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.'
            'document.main+xml"/></Types>',
        )
        zf.writestr(
            "_rels/.rels",
            '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/'
            'package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.'
            'openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
            'Target="word/document.xml"/></Relationships>',
        )
        zf.writestr(
            "word/document.xml",
            '<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/'
            f'wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>',
        )
    return buf.getvalue()


def bench_documents(d: Daemon, work: Path, runs: int, quick: bool) -> None:
    profile = work / "cold-profile"
    docs = {
        "1-page DOCX": "résumé-ünïcode.docx",
        "3-page DOCX with numbered lists": "word2013-numbered-lists.docx",
    }
    inputs = {label: (CORPUS / "document" / name).read_bytes() for label, name in docs.items()}
    pages = 20 if runs < 3 else 200
    inputs[f"{pages}-page DOCX"] = long_docx(pages)
    for label, docx in inputs.items():
        d.convert(docx, "warm.docx", "document", "pdf")
        many = label.startswith(str(pages))
        repeat = max(1, runs // 3) if many else runs
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
        warm, cold_time = timed_pair(
            lambda data=docx: d.convert(data, "small.docx", "document", "pdf"), cold, repeat
        )
        row(
            f"document: {label} -> PDF per file (API vs cold soffice)",
            warm,
            cold_time,
            "s",
            "ratio < 1 (never slower)" if many else "ratio <= 0.1 (>= 10x faster)",
        )

    # Two clients at once: the two warm instances should convert in parallel.
    docx = inputs["3-page DOCX with numbered lists"]
    count = max(4, runs * 2)

    def burst() -> None:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda n: d.convert(docx, f"p{n}.docx", "document", "pdf"), range(count)))

    start = time.perf_counter()
    burst()
    parallel = count / (time.perf_counter() - start)
    serial = 1 / timed(lambda: d.convert(docx, "serial.docx", "document", "pdf"), runs)
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
    bench_unoserver(d, work, quick)
    bench_recycling(work, quick)


def load_avg() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def rate_row(case: str, ours: float, theirs: float, goal: str) -> None:
    """A throughput row: docs/s of both sides, and convertd's as a multiple of the other's."""
    ROWS.append((case, f"{ours:.1f}/s", f"{theirs:.1f}/s", f"{ours / theirs:.2f}x", goal))
    print(
        f"{case:55} convertd {ours:6.1f}/s  other {theirs:6.1f}/s  x{ours / theirs:.2f}  "
        f"goal {goal}  ({load_avg()})",
        flush=True,
    )


def waiting_client(d: Daemon) -> Callable[[bytes, str], bytes]:
    """A client that waits for its document with ?wait= (one long request, no polling), with
    an HTTP session per thread."""
    local = threading.local()

    def convert(data: bytes, name: str) -> bytes:
        if not hasattr(local, "http"):
            local.http = requests.Session()
            local.http.headers["X-API-Key"] = d.key
        http = local.http
        job = http.post(
            f"{d.base}/convert",
            files={"file": (name, data)},
            data={"filetype": "document", "output_format": "pdf"},
            timeout=600,
        ).json()
        while (status := http.get(f"{job['status_url']}?wait=60", timeout=90).json())[
            "status"
        ] not in {"finished", "failed"}:
            pass  # the wait ran out: ask again
        if status["status"] == "failed":
            raise RuntimeError(status["error"])
        return bytes(http.get(status["download_url"], timeout=600).content)

    return convert


def clients_rate(convert: Callable[[int, int], bytes], count: int, clients: int) -> float:
    """Documents per second for `count` documents shared by `clients` clients, each converting
    its share one after the other: convert(client, n) returns the PDF, which is checked."""

    def client(c: int) -> None:
        for n in range(c, count, clients):
            if not convert(c, n).startswith(b"%PDF-"):
                raise RuntimeError("not a PDF")

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return count / (time.perf_counter() - start)


def bench_unoserver(d: Daemon, work: Path, quick: bool) -> None:
    """convertd against unoserver on the same LibreOffice. convertd runs its default for
    this machine: a worker and a warm instance per core (2 here), against two unoservers (two
    soffice processes), so both sides keep two LibreOffice processes busy."""
    venv = unoserver_venv()
    if venv is None:
        return
    servers = [UnoServer(venv, work).start() for _ in range(2)]
    try:
        one_page = (CORPUS / "document" / "résumé-ünïcode.docx").read_bytes()
        eleven = long_docx(11)
        waiting, polling = waiting_client(d), d.convert
        count, rounds, clients = (8, 1, 4) if quick else (60, 3, 4)
        cases = [
            ("11-page DOCX", eleven, "waiting", ">= 1.3x"),
            ("11-page DOCX", eleven, "polling", "visible cost of polling"),
            ("1-page DOCX", one_page, "waiting", ">= 1.5x"),
        ]
        for label, data, how, goal in cases:
            src = work / f"uno-{label[:2].strip('-')}.docx"
            src.write_bytes(data)

            def ours(c: int, n: int, data: bytes = data, how: str = how) -> bytes:
                if how == "waiting":
                    return waiting(data, f"c{c}-{n}.docx")
                return polling(data, f"c{c}-{n}.docx", "document", "pdf")

            def theirs(c: int, n: int, src: Path = src) -> bytes:
                out = work / f"uno-out-{c}.pdf"
                servers[c % 2].convert(src, out)  # clients spread over both servers
                return out.read_bytes()

            # Warm each side on this document, and check both make the same pages of it.
            if pdf_pages(ours(0, 0)) != pdf_pages(theirs(0, 0)):
                raise RuntimeError(f"{label}: the two sides made different page counts")
            samples: tuple[list[float], list[float]] = ([], [])
            for _ in range(rounds):
                samples[0].append(clients_rate(ours, count, clients))
                samples[1].append(clients_rate(theirs, count, clients))
            rate_row(
                f"document: {label} -> PDF, {count} docs, {clients} {how} clients "
                "(convertd vs two unoservers)",
                statistics.median(samples[0]),
                statistics.median(samples[1]),
                goal,
            )
        src = work / "uno-latency.docx"
        src.write_bytes(one_page)
        runs = 2 if quick else 9
        for name, theirs_one in (
            ("unoconvert", lambda: servers[0].unoconvert(src, work / "uno-cli.pdf")),
            ("unoserver's client API", lambda: servers[0].convert(src, work / "uno-api.pdf")),
        ):
            ours_one, theirs_time = timed_pair(
                lambda: waiting(one_page, "one.docx"), theirs_one, runs, settle=0.2
            )
            row(
                f"document: one 1-page DOCX -> PDF, waiting client vs {name}",
                ours_one,
                theirs_time,
                "s",
                "ratio <= 0.6" if name == "unoconvert" else "-",
            )
            print(f"  ({load_avg()})", flush=True)
    finally:
        for server in servers:
            server.stop()


def recycle_spans(log: str) -> list[tuple[float, float]]:
    """(begin, end) wall-clock times of each recycle in a daemon's log: from the instance's
    "recycled after" to the next "ready" (its replacement's soffice up: before the old one
    leaves with a hand-over, after it with a restart)."""
    spans: list[tuple[float, float]] = []
    begun: float | None = None
    for line in log.splitlines():
        if " convertd.office." not in line[:80]:
            continue
        try:
            when = dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        except ValueError:  # not a log record's first line
            continue
        if "recycled after" in line and begun is None:
            begun = when
        elif "ready (soffice pid" in line and begun is not None:
            spans.append((begun, when))
            begun = None
    if begun is not None:  # still under way when the log was read
        spans.append((begun, float("inf")))
    return spans


def bench_recycling(work: Path, quick: bool) -> None:
    """A long run of 1-page documents with the instances recycled inside it: documents
    finished per one-second window, the slowest window against the median one, and the
    slowest of the windows a recycle overlaps (on a shared machine, other load makes dips of
    its own). A hand-over to a warm replacement should not show; a restart in the path of
    documents does."""
    count, recycle_after = (120, 10) if quick else (600, 200)
    d = Daemon(
        work / "recycling" / "data",
        workers=os.cpu_count() or 2,
        env={"CONVERTD_OFFICE_RECYCLE_AFTER": str(recycle_after)},
    )
    try:
        docx = (CORPUS / "document" / "résumé-ünïcode.docx").read_bytes()
        waiting = waiting_client(d)
        for n in range(4):
            waiting(docx, f"warm{n}.docx")
        done: list[float] = []
        start = time.time()  # wall clock, as in the daemon's log

        def timed_doc(c: int, n: int) -> bytes:
            pdf = waiting(docx, f"r{n}.docx")
            done.append(time.time())
            return pdf

        clients_rate(timed_doc, count, 4)
        spans = [(b, e) for b, e in recycle_spans(d.log()) if b >= start]
    finally:
        d.stop()
    seconds = int(max(done) - start)  # whole windows only: the last, partial one is left out
    windows = [sum(1 for t in done if k <= t - start < k + 1) for k in range(seconds)]
    during = [
        w
        for k, w in enumerate(windows)
        if any(b < start + k + 1 and e > start + k for b, e in spans)
    ]
    slowest, median = min(windows), max(statistics.median(windows), 1)
    ROWS.append(
        (
            f"document: {count} x 1-page DOCX, 4 waiting clients, recycled every {recycle_after}"
            f" ({len(spans)} inside): slowest 1-s window vs median (slowest during a recycle)",
            f"{slowest}/s ({min(during, default=0)}/s)",
            f"{median:.0f}/s",
            f"{slowest / median:.2f}x ({min(during, default=0) / median:.2f}x)",
            ">= 0.8x",
        )
    )
    print(
        f"document recycling: windows {windows}; slowest {slowest}/s vs median {median}/s; "
        f"{len(spans)} recycles taking {', '.join(f'{e - b:.1f} s' for b, e in spans)} "
        f"windows during them {during} ({load_avg()})",
        flush=True,
    )


def bench_images(d: Daemon, work: Path, runs: int, quick: bool) -> None:
    """A large JPEG to WebP through the API (waiting with `?wait=`, and polling), against what a
    user would run instead: a Pillow script in-process (draft + thumbnail + save) and
    `vipsthumbnail` (libvips, the fastest tool there is for this)."""
    size = (1600, 1200) if quick else (4000, 3000)
    buf = io.BytesIO()
    Image.effect_noise(size, 30).convert("RGB").resize(size).save(buf, "JPEG", quality=90)
    jpeg = buf.getvalue()
    src = work / "photo.jpg"
    src.write_bytes(jpeg)
    photo = f"JPEG {size[0]}x{size[1]}"

    def pillow(width: int | None, resample: Image.Resampling = Image.Resampling.LANCZOS) -> None:
        with Image.open(src) as im:
            if width:
                im.draft("RGB", (width, width))
                im.thumbnail((width, width), resample)
            im.save(work / "bare.webp", "WEBP", quality=80, method=4)

    def vips(width: int) -> None:
        # As a user types it; Q=80 as convertd's and the script's WebP (vips' default is 75).
        out = work / "vips.webp"
        subprocess.run(
            ["vipsthumbnail", str(src), "-s", str(width), "-o", f"{out}[Q=80]"],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def api(width: int | None, poll: bool = False) -> None:
        options = {"width": width} if width else None
        out = d.convert(jpeg, "photo.jpg", "image", "webp", options, poll=poll)
        with Image.open(io.BytesIO(out)) as im:  # a picture of the asked size, not an error
            if im.format != "WEBP" or (width and im.width != width):
                raise RuntimeError(f"convertd made a {im.format} {im.size}")

    api(None)
    pillow(None)
    ours, theirs = timed_pair(lambda: api(None), lambda: pillow(None), runs)
    row(f"image: {photo} -> WebP full size (API ?wait= vs Pillow)", ours, theirs, "s", "<= 1.2")

    # CPU time says what wall time on a busy machine cannot: the daemon's and this client's
    # for convertd, this process's for the script (averaged over every run, as the daemon's
    # clock ticks are 10 ms).
    assert d.proc is not None
    daemon = d.proc.pid
    cpu: dict[str, list[float]] = {"wait": [], "pillow": []}

    def cpu_of(side: str, fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            before = time.process_time() + (cpu_seconds(daemon) if side == "wait" else 0)
            fn()
            after = time.process_time() + (cpu_seconds(daemon) if side == "wait" else 0)
            cpu[side].append(after - before)

        return run

    # One round runs every side in turn: each sees the same drift of this shared machine.
    # Pillow's thumbnail() resamples with BICUBIC unless told; convertd uses LANCZOS (as vips
    # does), so the script is timed both ways: the same picture, and the script's default.
    sides = {
        "wait": cpu_of("wait", lambda: api(1024)),
        "poll": lambda: api(1024, poll=True),
        "pillow": cpu_of("pillow", lambda: pillow(1024)),
        "bicubic": lambda: pillow(1024, Image.Resampling.BICUBIC),
        "vips": lambda: vips(1024),
    }
    for side in sides.values():
        side()
    for warm_up in cpu.values():
        warm_up.clear()
    # Short: more runs to see through the noise.
    took = dict(zip(sides, timed_sides(list(sides.values()), runs * 3), strict=True))
    resized = f"image: {photo} -> WebP 1024 px"
    wait = took["wait"]
    row(f"{resized} (API ?wait= vs Pillow, LANCZOS)", wait, took["pillow"], "s", "<= 1.15")
    same_case()
    row(f"{resized} (API ?wait= vs Pillow, BICUBIC)", wait, took["bicubic"], "s", "<= 1.15")
    same_case()
    row(f"{resized} (API ?wait= vs vipsthumbnail)", wait, took["vips"], "s", "- (fastest tool)")
    same_case()
    row(
        f"{resized}, CPU per conversion (API ?wait=: daemon + client, vs Pillow, LANCZOS)",
        statistics.fmean(cpu["wait"]),
        statistics.fmean(cpu["pillow"]),
        "s",
        "<= 1.15",
    )
    same_case()
    row(f"{resized} (API polling vs ?wait=)", took["poll"], wait, "s", "- (polling's cost)")


def pooled(headers: dict[str, str], size: int = 16) -> requests.Session:
    """A session `size` threads can share without running out of pooled connections."""
    http = requests.Session()
    http.headers.update(headers)
    http.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=size))
    return http


def png(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.effect_noise(size, 30).convert("RGB").save(buf, "PNG")
    return buf.getvalue()


def v2_tasks(imported: dict[str, Any], fmt: str) -> dict[str, Any]:
    """import -> convert to `fmt` -> export/url, as CloudConvert's clients send a job."""
    return {
        "in": imported,
        "c": {"operation": "convert", "input": "in", "output_format": fmt},
        "out": {"operation": "export/url", "input": "c"},
    }


def v2_submit(http: requests.Session, root: str, tasks: dict[str, Any]) -> dict[str, Any]:
    resp = http.post(f"{root}/v2/jobs", json={"tasks": tasks}, timeout=60)
    if resp.status_code != 201:
        raise RuntimeError(f"POST /v2/jobs: {resp.status_code} {resp.text[:500]}")
    return dict(resp.json()["data"])


def v2_wait(http: requests.Session, root: str, job_id: str) -> dict[str, Any]:
    """The job once it has ended: /sync/v2 answers when it does (or at its longest wait)."""
    while True:
        job = http.get(f"{root}/sync/v2/jobs/{job_id}", timeout=600).json()["data"]
        if job["status"] in {"finished", "error"}:
            return dict(job)


def v2_task(job: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(next(t for t in job["tasks"] if t["name"] == name))


def v2_job(
    http: requests.Session,
    root: str,
    tasks: dict[str, Any],
    uploads: dict[str, tuple[str, bytes]] | None = None,
    export: str = "out",
) -> list[bytes]:
    """Create the job, send each import/upload task its file through its signed form, wait on
    /sync/v2, download every file of the `export` task (export/url) from its signed URL."""
    job = v2_submit(http, root, tasks)
    for task_name, (name, data) in (uploads or {}).items():
        form = v2_task(job, task_name)["result"]["form"]
        up = http.post(
            form["url"], data=form["parameters"], files={"file": (name, data)}, timeout=600
        )
        if up.status_code != 201:
            raise RuntimeError(f"upload form: {up.status_code} {up.text[:500]}")
    job = v2_wait(http, root, job["id"])
    if job["status"] != "finished":
        failed = [t for t in job["tasks"] if t["status"] == "error"]
        raise RuntimeError(f"v2 job {job['id']}: {job['status']} {failed[:1]}")
    files = v2_task(job, export)["result"]["files"]
    return [bytes(http.get(f["url"], timeout=600).content) for f in files]


def v2_convert(http: requests.Session, root: str, data: bytes, name: str, fmt: str) -> bytes:
    """Create the job, upload to its signed form, wait on /sync/v2, download the signed URL."""
    tasks = v2_tasks({"operation": "import/upload"}, fmt)
    return v2_job(http, root, tasks, {"in": (name, data)})[0]


def bench_v2(d: Daemon, work: Path, runs: int, quick: bool) -> None:
    """The /v2 API (jobs of tasks) against /v1 for the same conversions: one file's round trip,
    and a burst of jobs submitted at once."""
    root = d.base.removesuffix("/v1")
    v2 = pooled({"Authorization": f"Bearer {d.key}"})
    v1 = pooled({"X-API-Key": d.key})
    photo = png((1024, 768))
    d.convert(photo, "photo.png", "image", "jpg")
    v2_convert(v2, root, photo, "photo.png", "jpg")
    ours, theirs = timed_pair(
        lambda: v2_convert(v2, root, photo, "photo.png", "jpg"),
        lambda: d.convert(photo, "photo.png", "image", "jpg"),
        runs * 3,  # short: more runs to see through the noise
    )
    row(
        "v2 API: PNG 1024x768 -> JPG, upload to download (/v2 job vs /v1)",
        ours,
        theirs,
        "s",
        f"v2 <= v1 + 20 ms (now {(ours - theirs) * 1000:+.0f} ms)",
    )

    count = 30 if quick else 200
    small = png((160, 120))
    tasks = v2_tasks(
        {
            "operation": "import/base64",
            "file": base64.b64encode(small).decode(),
            "filename": "p.png",
        },
        "jpg",
    )

    def v2_burst() -> float:
        with ThreadPoolExecutor(16) as pool:
            start = time.perf_counter()
            ids = list(pool.map(lambda _: v2_submit(v2, root, tasks)["id"], range(count)))
            jobs = list(pool.map(lambda job_id: v2_wait(v2, root, job_id), ids))
            elapsed = time.perf_counter() - start
        failed = [f"{j['id']}: {j['status']}" for j in jobs if j["status"] != "finished"]
        if failed:
            raise RuntimeError(f"{len(failed)} of {count} v2 jobs did not finish: {failed[:3]}")
        return count / elapsed

    def v1_submit(n: int) -> dict[str, Any]:
        return dict(
            v1.post(
                f"{d.base}/convert",
                files={"file": (f"p{n}.png", small)},
                data={"filetype": "image", "output_format": "jpg"},
                timeout=60,
            ).json()
        )

    def v1_burst() -> float:
        with ThreadPoolExecutor(16) as pool:
            start = time.perf_counter()
            jobs = list(pool.map(v1_submit, range(count)))
        # One waiter, in submission order (the queue's order): by the time one job is done,
        # most of those after it are too, so this costs the daemon about one GET a job.
        for job in jobs:
            status = v1.get(job["status_url"], params={"wait": "60"}, timeout=90).json()
            if status["status"] != "finished":
                raise RuntimeError(f"v1 job {job['job_id']}: {status.get('error', status)}")
        return count / (time.perf_counter() - start)

    rates: tuple[list[float], list[float]] = ([], [])
    for _ in range(1 if quick else 3):  # alternately, as timed_pair does
        rates[0].append(v2_burst())
        rates[1].append(v1_burst())
    ours, theirs = statistics.median(rates[0]), statistics.median(rates[1])
    ROWS.append(
        (
            f"v2 API: {count} three-task jobs (base64 PNG -> JPG -> URL) at once, vs {count} /v1",
            f"{ours:.0f} jobs/s",
            f"{theirs:.0f} jobs/s",
            f"{ours / theirs:.2f}x",
            f"all {count} finished",
        )
    )
    print(
        f"v2 burst: {ours:.0f} jobs/s for {count} jobs vs {theirs:.0f} jobs/s through /v1",
        flush=True,
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


def convert_waiting(
    d: Daemon, data: bytes, name: str, filetype: str, fmt: str, options: dict[str, Any] | None
) -> bytes:
    """Upload, convert, wait (`?wait=`: the answer comes as the job ends) and download."""
    fields: dict[str, str] = {"filetype": filetype, "output_format": fmt}
    if options:
        fields["options"] = json.dumps(options)
    job = d.submit(data, name, fields)
    while True:
        status = d.http.get(job["status_url"], params={"wait": 300}, timeout=330).json()
        if status["status"] == "finished":
            return d.fetch(job["download_url"])
        if status["status"] == "failed":
            raise RuntimeError(status["error"])


def cpu_with_children(pid: int) -> float:
    """CPU a process and its reaped children (FFmpeg, for the daemon) have used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


# The FFmpeg commands convertd builds, run directly: the other side of each media case.
DIRECT_MEDIA = {
    "mp3": ["-map", "0:a:0", "-vn", "-c:a", "libmp3lame", "-b:a", "192k", "-f", "mp3"],
    "mp4": [
        *("-map", "0:v:0", "-map", "0:a:0?"),
        *("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-crf", "26"),
        *("-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", "-map_metadata", "-1"),
        *("-f", "mp4"),
    ],
    "mkv": [
        *("-map", "0:v:0", "-map", "0:a:0?", "-c:v", "copy", "-c:a", "copy"),
        *("-map_metadata", "-1", "-sn", "-dn", "-f", "matroska"),
    ],
}
COPY = {"video_codec": "copy", "audio_codec": "copy"}


def bench_media(d: Daemon, work: Path, runs: int, quick: bool) -> None:
    """Each case against bare FFmpeg with the same arguments at the same niceness, alternating;
    the client waits (`?wait=`), and the remux has a polling row too, so what polling costs
    stays visible."""
    long_s, short_s = (4, 3) if quick else (60, 30)
    clips = {long_s: make_clip(work / "clip.mp4", long_s)}
    clips[short_s] = make_clip(work / "short.mp4", short_s)
    # (case, clip seconds, output, options, waiting client, runs, goal)
    short_runs = runs * 2  # short cases: cheap, and noisier
    assert d.proc is not None
    pid = d.proc.pid
    cases = [
        ("-> mp3", short_s, "mp3", None, True, short_runs, "ratio <= 1.15"),
        ("-> mp3", long_s, "mp3", None, True, short_runs, "ratio <= 1.15"),
        ("-> mp4", long_s, "mp4", None, True, max(1, runs // 2), "ratio <= 1.03"),
        ("MP4 -> MKV remux, stream copy", long_s, "mkv", COPY, True, short_runs, "<= +60 ms"),
        ("MP4 -> MKV remux, polling client", long_s, "mkv", COPY, False, short_runs, "-"),
    ]
    for what, seconds, fmt, options, waiting, n, goal in cases:
        clip = clips[seconds]
        data = clip.read_bytes()
        client = convert_waiting if waiting else Daemon.convert
        cpu = {"ours": 0.0, "theirs": 0.0}

        def ours(
            f: str = fmt,
            o: dict[str, Any] | None = options,
            c: Any = client,
            b: bytes = data,
            cpu: dict[str, float] = cpu,
        ) -> None:
            before = cpu_with_children(pid) + time.process_time()
            c(d, b, "clip.mp4", "video", f, o)
            cpu["ours"] += cpu_with_children(pid) + time.process_time() - before

        def theirs(
            a: list[str] = DIRECT_MEDIA[fmt], c: Path = clip, cpu: dict[str, float] = cpu
        ) -> None:
            before = os.times()
            # At convertd's FFmpeg's niceness: on a shared machine, other programs' load takes
            # a bigger share from a niced FFmpeg than from one at nice 0, and the ratio would
            # measure that policy (which keeps the API answering) instead of convertd's cost.
            niced = ["nice", "-n", str(NICENESS)]
            argv = [*niced, "ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(c), *a]
            subprocess.run([*argv, str(work / "direct.out")], check=True)
            after = os.times()
            cpu["theirs"] += (after.children_user + after.children_system) - (
                before.children_user + before.children_system
            )

        ours_s, theirs_s = timed_pair(ours, theirs, n)
        case = f"video: {seconds} s 720p H.264 {what} (API vs ffmpeg)"
        if fmt == "mkv":
            ratio = f"{(ours_s - theirs_s) * 1000:+.0f} ms"
        else:
            ratio = f"{ours_s / theirs_s:.2f}x"
        # CPU per job beside wall time: on a shared machine the load moves wall time far more.
        cells = [
            f"{ours_s * 1000:.0f} ms (CPU {cpu['ours'] / n * 1000:.0f} ms)",
            f"{theirs_s * 1000:.0f} ms (CPU {cpu['theirs'] / n * 1000:.0f} ms)",
            f"{ratio}; CPU {cpu['ours'] / max(cpu['theirs'], 0.01):.2f}x",
        ]
        ROWS.append((case, *cells, goal))
        print(f"{case}: {' | '.join(cells)} | goal {goal}", flush=True)


FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
PROSE = (
    "The quick brown fox jumps over the lazy dog while the daemon files every scanned page "
    "quietly and keeps each one searchable for later"
)


def scanned_pdf(pages: int) -> bytes:
    """A scan as a scanner makes it: `pages` A4 pages of printed text rasterised at 300 dpi,
    each a little skewed, with speckle noise, as one PDF of images (no text layer)."""
    font = ImageFont.truetype(FONT, 40)
    images = []
    for n in range(pages):
        page = Image.new("L", (2480, 3508), 255)  # A4 at 300 dpi
        draw = ImageDraw.Draw(page)
        for line in range(36):
            start = (line * 5 + n) % len(PROSE.split())
            words = " ".join((PROSE.split() * 2)[start : start + 10])
            draw.text((220, 300 + line * 80), f"{n + 1}.{line + 1} {words}", fill=0, font=font)
        page = page.rotate(0.8 + 0.3 * (n % 3), fillcolor=255, resample=Image.Resampling.BICUBIC)
        images.append(Image.blend(page, Image.effect_noise(page.size, 40), 0.15))
    buf = io.BytesIO()
    images[0].save(buf, "PDF", resolution=300.0, save_all=True, append_images=images[1:])
    return buf.getvalue()


def small_pdf(n: int, pages: int) -> bytes:
    """A small PDF of `pages` pages, each a picture of a few lines of text."""
    font = ImageFont.truetype(FONT, 14)
    images = []
    for p in range(pages):
        page = Image.new("L", (595, 842), 255)  # A4 at 72 dpi
        draw = ImageDraw.Draw(page)
        for line in range(8):
            draw.text((60, 80 + line * 24), f"file {n + 1}, page {p + 1}, line {line + 1}", 0, font)
        images.append(page)
    buf = io.BytesIO()
    images[0].save(buf, "PDF", resolution=72.0, save_all=True, append_images=images[1:])
    return buf.getvalue()


def html_page(rows: int = 40) -> bytes:
    """An HTML page as a report prints: styles, headings, paragraphs and a table."""
    cells = "".join(
        f"<tr><td>{n}</td><td>item {n}</td><td>{n * 3.25:.2f}</td><td>{PROSE[:40]}</td></tr>"
        for n in range(rows)
    )
    prose = f"<p>{PROSE} {PROSE}</p>" * 6
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Quarterly report</title>"
        "<style>body{font-family:sans-serif;margin:2em}h1{color:#246}"
        "table{border-collapse:collapse;width:100%}td{border:1px solid #999;padding:3px}"
        "tr:nth-child(even){background:#eef}</style></head><body>"
        f"<h1>Quarterly report</h1>{prose}<h2>Figures</h2><table>{cells}</table>{prose}"
        "</body></html>"
    ).encode()


def b64_import(name: str, data: bytes) -> dict[str, Any]:
    return {"operation": "import/base64", "file": base64.b64encode(data).decode(), "filename": name}


def pdf_pages(data: bytes) -> int:
    import pypdf

    if not data.startswith(b"%PDF-"):
        raise RuntimeError(f"not a PDF: {data[:40]!r}")
    return len(pypdf.PdfReader(io.BytesIO(data)).pages)


def bench_operations(d: Daemon, work: Path, runs: int, quick: bool) -> None:
    """/v2 operations against the tool a user would run by hand: ocr against bare `ocrmypdf`
    with convertd's own arguments, merge against bare `qpdf --empty --pages`, and an HTML file
    captured by the warm Chromium against a cold `chromium --headless --print-to-pdf`."""
    root = d.base.removesuffix("/v1")
    v2 = pooled({"Authorization": f"Bearer {d.key}"})
    work = work / "operations"
    work.mkdir()

    # OCR: a scan through the ocr task, against the command convertd runs (convertd/tasks/ocr.py:
    # --skip-text, pdf output, one job, Tesseract on one thread, the 100 Mpx limit, a sidecar).
    pages = 2 if quick else 10
    scan = scanned_pdf(pages)
    (work / "scan.pdf").write_bytes(scan)
    ocr_tasks = {
        "in": {"operation": "import/upload"},
        "ocr": {"operation": "ocr", "input": "in", "languages": ["eng"]},
        "out": {"operation": "export/url", "input": "ocr"},
    }
    scratch = work / "ocr-tmp"
    scratch.mkdir()
    ocr_env = {**os.environ, "TMPDIR": str(scratch), "OMP_THREAD_LIMIT": "1"}

    def ocr_ours() -> None:
        (out,) = v2_job(v2, root, ocr_tasks, {"in": ("scan.pdf", scan)})
        if pdf_pages(out) != pages:
            raise RuntimeError("the OCR'd PDF lost pages")

    def ocr_bare() -> None:
        subprocess.run(
            [
                "ocrmypdf",
                "--skip-text",
                "--output-type",
                "pdf",
                "--jobs",
                "1",
                "--language",
                "eng",
                "--max-image-mpixels",
                "100",
                "--sidecar",
                str(work / "bare.txt"),
                str(work / "scan.pdf"),
                str(work / "bare-ocr.pdf"),
            ],
            env=ocr_env,
            capture_output=True,
            check=True,
            timeout=1800,
        )

    ours, theirs = timed_pair(ocr_ours, ocr_bare, 1 if quick else max(1, runs // 2))
    row(
        f"operations: OCR, {pages}-page 300 dpi scan -> searchable PDF (/v2 ocr vs ocrmypdf)",
        ours,
        theirs,
        "s",
        "ratio <= 1.05",
    )

    # Merge: small PDFs, each an import/base64 task of one job, against qpdf on the same files.
    count = 5 if quick else 50
    pdfs = [small_pdf(n, 3) for n in range(count)]
    names = [work / f"part{n:02}.pdf" for n in range(count)]
    for path, data in zip(names, pdfs, strict=True):
        path.write_bytes(data)
    merge_tasks: dict[str, Any] = {
        f"in{n}": b64_import(path.name, data)
        for n, (path, data) in enumerate(zip(names, pdfs, strict=True))
    }
    merge_tasks["m"] = {"operation": "merge", "input": list(merge_tasks), "output_format": "pdf"}
    merge_tasks["out"] = {"operation": "export/url", "input": "m"}

    def merge_ours() -> None:
        (out,) = v2_job(v2, root, merge_tasks)
        if pdf_pages(out) != count * 3:
            raise RuntimeError(f"the merged PDF has {pdf_pages(out)} pages, not {count * 3}")

    def merge_bare() -> None:
        subprocess.run(
            [
                "qpdf",
                "--empty",
                "--warning-exit-0",
                "--pages",
                *map(str, names),
                "--",
                str(work / "bare-merged.pdf"),
            ],
            capture_output=True,
            check=True,
            timeout=300,
        )

    merge_ours()
    ours, theirs = timed_pair(merge_ours, merge_bare, 1 if quick else runs)
    row(
        f"operations: merge {count} 3-page PDFs in one job (/v2, base64 in, vs qpdf --empty "
        "--pages)",
        ours,
        theirs,
        "s",
        "-",
    )

    # The same merge of files convertd already holds (imported once, as qpdf's are on disk):
    # a merge task and an export task made alone, waited on, the result downloaded.
    stored = []
    for path, data in zip(names, pdfs, strict=True):
        made = v2.post(f"{root}/v2/import/base64", json=b64_import(path.name, data), timeout=60)
        stored.append(made.json()["data"]["id"])

    def task_ended(task_id: str) -> dict[str, Any]:
        while True:
            task = v2.get(f"{root}/sync/v2/tasks/{task_id}", timeout=600).json()["data"]
            if task["status"] in {"finished", "error"}:
                return dict(task)

    def merge_stored() -> None:
        merged = v2.post(f"{root}/v2/merge", json={"input": stored}, timeout=60).json()["data"]
        export = v2.post(f"{root}/v2/export/url", json={"input": merged["id"]}, timeout=60).json()[
            "data"
        ]
        files = task_ended(export["id"])["result"]["files"]
        out = bytes(v2.get(files[0]["url"], timeout=600).content)
        if pdf_pages(out) != count * 3:
            raise RuntimeError(f"the merged PDF has {pdf_pages(out)} pages, not {count * 3}")

    merge_stored()
    ours, theirs = timed_pair(merge_stored, merge_bare, 1 if quick else runs)
    row(
        f"operations: merge {count} 3-page PDFs convertd holds (/v2 merge + export/url, "
        "vs qpdf --empty --pages)",
        ours,
        theirs,
        "s",
        "ratio <= 1.2",
    )

    # HTML -> PDF: the warm browser (started by a first capture) against a cold Chromium a page.
    html = html_page()
    page = work / "page.html"
    page.write_bytes(html)
    capture_tasks = {
        "in": b64_import("page.html", html),
        "cap": {"operation": "capture-website", "input": "in", "output_format": "pdf"},
        "out": {"operation": "export/url", "input": "cap"},
    }

    def capture_ours() -> None:
        (out,) = v2_job(v2, root, capture_tasks)
        pdf_pages(out)

    def capture_cold() -> None:
        out = work / "cold.pdf"
        out.unlink(missing_ok=True)
        subprocess.run(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                f"--print-to-pdf={out}",
                page.as_uri(),
            ],
            capture_output=True,
            check=True,
            timeout=120,
        )
        if not out.exists():
            raise RuntimeError("chromium made no PDF")

    capture_ours()
    capture_cold()
    ours, theirs = timed_pair(capture_ours, capture_cold, 1 if quick else runs, settle=1.0)
    row(
        "operations: HTML page -> PDF (/v2 capture-website, warm vs cold chromium --print-to-pdf)",
        ours,
        theirs,
        "s",
        "ratio <= 0.2 (>= 5x faster)",
    )


def bench_queue(work: Path, quick: bool) -> None:
    """Enqueue, claim and finish with no conversion at all: the SQLite queue's own speed, with
    the production settings (WAL, synchronous=NORMAL, one writer)."""
    import asyncio

    from convertd.store import jobs, uploads
    from convertd.store.sqlite import SqliteDatabase

    hash_txt = jobs.Conversion("hash", "txt", "md5", {})

    count = 300 if quick else 3000

    async def run() -> float:
        db = await SqliteDatabase.open(work / "queue-bench.db")
        (upload,) = await uploads.record_uploads(db, None, [("t/x", "x", 1, "txt")])
        start = time.perf_counter()
        for _ in range(count):
            await jobs.create(db, upload.id, hash_txt, key_id=None)
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


# What the status benchmarks load the daemon with: wrk (Debian's), two threads, 32 connections,
# and its latency percentiles. A C client costs the two shared cores far less than a Python one
# would, so the daemon's own limit shows.
WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
WRK_P99 = re.compile(r"^\s*99(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
WRK_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
WRK_COUNT = re.compile(r"^\s*(\d+) requests in", re.MULTILINE)
WRK_BAD = re.compile(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*")


@dataclasses.dataclass(frozen=True)
class WrkRun:
    rate: float  # requests per second
    p99: float  # ms
    requests: int


def wrk(url: str, seconds: float, key: str | None = None, connections: int = 32) -> WrkRun:
    """`wrk -t2 -cN -dS --latency` on `url` (with the key as X-API-Key): every answer a 200.
    wrk takes whole seconds only."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
        + (["-H", f"X-API-Key: {key}"] if key else [])
        + [url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    bad = WRK_BAD.search(out)
    rate, p99, count = WRK_RATE.search(out), WRK_P99.search(out), WRK_COUNT.search(out)
    if bad or not (rate and p99 and count):
        raise RuntimeError(f"wrk on {url} did not get only 200s:\n{out}")
    return WrkRun(float(rate[1]), float(p99[1]) * WRK_UNITS[p99[2]], int(count[1]))


def load(d: Daemon, url: str, seconds: float) -> tuple[float, float]:
    """Requests/s and p99 (ms) of authenticated GETs by wrk, 32 connections."""
    run = wrk(url, seconds, d.key)
    return run.rate, run.p99


# The other side of the control plane's rows: the least an aiohttp server does for a GET, in
# one process as the daemon is: no middleware, no access log, a constant small JSON body.
BARE_SERVER = """
import sys
from aiohttp import web
async def status(request):
    job_id = request.match_info["job_id"]
    return web.json_response({"ok": True, "job_id": job_id, "status": "finished"})
app = web.Application()
app.router.add_get("/v1/status/{job_id}", status)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


class BareAiohttp:
    """The bare aiohttp server, started as a process of its own."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(self.port)])
        self.url = f"http://127.0.0.1:{self.port}/v1/status/x"
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(self.url, timeout=1).raise_for_status()
                return
            except requests.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def side_by_side(
    sides: dict[str, tuple[int, str, str | None]], seconds: float, rounds: int
) -> dict[str, dict[str, float]]:
    """wrk on each side (its process id, URL and key) in turn, the order swapped every round;
    the medians of req/s, p99 and the process's CPU per request (/proc: user + system), with
    the load average seen over the runs."""
    runs: dict[str, list[tuple[WrkRun, float]]] = {side: [] for side in sides}
    loads = []
    for n in range(rounds):
        order = list(sides) if n % 2 == 0 else list(reversed(sides))
        for side in order:
            pid, url, key = sides[side]
            used = cpu_seconds(pid)
            run = wrk(url, seconds, key)
            runs[side].append((run, (cpu_seconds(pid) - used) / run.requests * 1e6))
            loads.append(os.getloadavg()[0])
    return {
        side: {
            "rate": statistics.median(r.rate for r, _ in found),
            "p99": statistics.median(r.p99 for r, _ in found),
            "cpu_us": statistics.median(cpu for _, cpu in found),
            "load": statistics.median(loads),
        }
        for side, found in runs.items()
    }


def started_loop(d: Daemon) -> str:
    """The event loop a daemon runs on, as its start-up line names it (uvloop or asyncio)."""
    line = next(x for x in d.log().splitlines() if "convertd listening on" in x)
    return line.rpartition(" loop)")[0].rpartition(" ")[2]


def bench_control_plane(d: Daemon, work: Path, quick: bool) -> None:
    """Authenticated status reads (key check, quota count, job row) by wrk against a bare
    aiohttp handler, alternating: idle, then while two video transcodes keep both cores busy
    (the event loop must not wait on conversions). Besides req/s and p99, each server's CPU
    time per request, which other load on the shared machine moves far less than req/s. A third
    side is the same daemon on asyncio's own loop (`event_loop = "asyncio"`): what the default
    loop (uvloop where installed) saves, measured in the same rounds."""
    status_url = d.tiny_job()
    assert d.proc is not None
    bare = BareAiohttp()
    std = Daemon(work / "control-asyncio" / "data", 1, {"CONVERTD_EVENT_LOOP": "asyncio"})
    try:
        assert std.proc is not None
        sides = {
            "convertd": (d.proc.pid, status_url, d.key),
            "aiohttp": (bare.proc.pid, bare.url, None),
            "asyncio": (std.proc.pid, std.tiny_job(), std.key),
        }
        for _, url, key in sides.values():
            wrk(url, 1, key)  # warm up
        seconds, rounds = (1, 2) if quick else (5, 4)
        idle = side_by_side(sides, seconds, rounds)

        # Long enough that both transcodes outlast the busy phase (4 rounds x 3 sides x 5 s).
        clip = make_clip(work / "busy.mp4", 10 if quick else 270).read_bytes()
        busy_jobs = d.submit_transcodes(clip, 2)
        while [d.job(j)["status"] for j in busy_jobs] != ["processing", "processing"]:
            time.sleep(0.05)
        busy = side_by_side(sides, 1 if quick else seconds, 2 if quick else rounds)
        still_busy = [d.job(j)["status"] for j in busy_jobs] == ["processing", "processing"]
        while any(d.job(j)["status"] == "processing" for j in busy_jobs):
            time.sleep(0.5)
    finally:
        bare.stop()
        std.stop()
    loop = started_loop(d)
    ended_early = "" if still_busy else " (a transcode ended early)"
    c, a, s = idle["convertd"], idle["aiohttp"], idle["asyncio"]
    bc, ba, bs = busy["convertd"], busy["aiohttp"], busy["asyncio"]
    ROWS.append(
        (
            "control plane: GET /v1/status (key, quota, job) by wrk -t2 -c32, idle, vs a bare "
            "aiohttp handler",
            f"{c['rate']:.0f} req/s",
            f"{a['rate']:.0f} req/s",
            f"{c['rate'] / a['rate']:.2f}x",
            ">= 8,000 req/s",
        )
    )
    ROWS.append(
        (
            "control plane: server CPU per GET /v1/status, idle, vs a bare aiohttp handler",
            f"{c['cpu_us']:.0f} us",
            f"{a['cpu_us']:.0f} us",
            f"{c['cpu_us'] / a['cpu_us']:.2f}x",
            "<= 100 us",
        )
    )
    ROWS.append(
        (
            "control plane: GET /v1/status p99 by wrk -t2 -c32 while 2 transcodes run, vs a "
            "bare aiohttp handler" + ended_early,
            f"p99 {bc['p99']:.1f} ms, {bc['rate']:.0f} req/s",
            f"p99 {ba['p99']:.1f} ms, {ba['rate']:.0f} req/s",
            f"{bc['p99'] / ba['p99']:.2f}x",
            "p99 <= 20 ms",
        )
    )
    ROWS.append(
        (
            f"control plane: server CPU per GET /v1/status, idle, on {loop} (the default) vs "
            "asyncio's loop",
            f"{c['cpu_us']:.0f} us, {c['rate']:.0f} req/s",
            f"{s['cpu_us']:.0f} us, {s['rate']:.0f} req/s",
            f"{c['cpu_us'] / s['cpu_us']:.2f}x",
            "- (the loop's share)",
        )
    )
    ROWS.append(
        (
            f"control plane: GET /v1/status p99 while 2 transcodes run, on {loop} (the default) "
            "vs asyncio's loop" + ended_early,
            f"p99 {bc['p99']:.1f} ms, {bc['cpu_us']:.0f} us",
            f"p99 {bs['p99']:.1f} ms, {bs['cpu_us']:.0f} us",
            f"{bc['p99'] / bs['p99']:.2f}x",
            "- (the loop's share)",
        )
    )
    print(
        f"control plane idle (load {c['load']:.2f}): {c['rate']:.0f} vs {a['rate']:.0f} req/s "
        f"bare aiohttp ({c['rate'] / a['rate']:.2f}x), p99 {c['p99']:.1f} vs {a['p99']:.1f} ms, "
        f"CPU {c['cpu_us']:.0f} vs {a['cpu_us']:.0f} us a request; busy (load {bc['load']:.2f}): "
        f"{bc['rate']:.0f} vs {ba['rate']:.0f} req/s, p99 {bc['p99']:.1f} vs {ba['p99']:.1f} ms, "
        f"CPU {bc['cpu_us']:.0f} vs {ba['cpu_us']:.0f} us; on asyncio's loop instead of {loop}: "
        f"idle {s['rate']:.0f} req/s, CPU {s['cpu_us']:.0f} us; busy p99 {bs['p99']:.1f} ms, "
        f"CPU {bs['cpu_us']:.0f} us",
        flush=True,
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_metrics(work: Path, quick: bool) -> None:
    """Authenticated status reads with metrics on (the request middleware counting and timing
    each one) against off (`metrics_enabled = false`): two daemons, measured in turn, the
    order swapped every round, so both see the same drift of a shared machine. Besides req/s
    and p99, the daemon's own CPU time per request, which other load on the machine moves
    far less than it moves throughput."""
    quiet = {"CONVERTD_OFFICE_PREWARM": "false"}
    on = Daemon(work / "metrics-on" / "data", workers=1, env=quiet)
    off = Daemon(
        work / "metrics-off" / "data", workers=1, env={**quiet, "CONVERTD_METRICS_ENABLED": "false"}
    )
    try:
        urls = {}
        for d in (on, off):
            urls[id(d)] = d.tiny_job()
            load(d, urls[id(d)], 1)  # warm up
        seconds = 1 if quick else 5
        sides: dict[str, list[tuple[float, float]]] = {"on": [], "off": []}
        cpu: dict[str, list[float]] = {"on": [], "off": []}
        # An even number of rounds: each side goes first as often (the first of a pair measured
        # slower here), and each run starts after a second's rest.
        for n in range(2 if quick else 8):
            order = [("on", on), ("off", off)] if n % 2 == 0 else [("off", off), ("on", on)]
            for side, d in order:
                time.sleep(1)
                assert d.proc is not None
                used = cpu_seconds(d.proc.pid)
                rate, p99 = load(d, urls[id(d)], seconds)
                used = cpu_seconds(d.proc.pid) - used
                sides[side].append((rate, p99))
                cpu[side].append(used / (rate * seconds) * 1e6)
        # What the "on" daemon counted: every status read, under its route's template.
        prom = on.create_key("prometheus", "--scope", "metrics")
        text = requests.get(
            f"http://127.0.0.1:{on.port}/metrics", headers={"X-API-Key": prom}, timeout=10
        ).text
        counted = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("convertd_http_requests_total{")
            and 'route="/v1/status/{job_id}"' in line
        )
    finally:
        on.stop()
        off.stop()
    rate = {k: statistics.median(r for r, _ in v) for k, v in sides.items()}
    p99 = {k: statistics.median(p for _, p in v) for k, v in sides.items()}
    ROWS.append(
        (
            "metrics on vs off: GET /v1/status req/s, 32 connections",
            f"{rate['on']:.0f} req/s",
            f"{rate['off']:.0f} req/s",
            f"{rate['off'] / rate['on']:.2f}x",
            "within 5 %",
        )
    )
    ROWS.append(
        (
            "metrics on vs off: GET /v1/status p99, 32 connections",
            f"{p99['on']:.1f} ms",
            f"{p99['off']:.1f} ms",
            f"{p99['on'] / p99['off']:.2f}x",
            "within 5 %",
        )
    )
    per_request = {k: statistics.median(v) for k, v in cpu.items()}
    ROWS.append(
        (
            "metrics on vs off: daemon CPU per GET /v1/status",
            f"{per_request['on']:.0f} us",
            f"{per_request['off']:.0f} us",
            f"{per_request['on'] / per_request['off']:.2f}x",
            "within 5 %",
        )
    )
    print(
        f"metrics on vs off: {rate['on']:.0f} vs {rate['off']:.0f} req/s "
        f"({rate['off'] / rate['on']:.2f}x), p99 {p99['on']:.1f} vs {p99['off']:.1f} ms "
        f"({p99['on'] / p99['off']:.2f}x), CPU {per_request['on']:.0f} vs "
        f"{per_request['off']:.0f} us a request; the on side counted {counted:.0f} status reads",
        flush=True,
    )


WAITERS_CLIENT = """
import asyncio, sys, aiohttp
base, key, ids = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
async def wait(session, job_id):
    async with session.get(f"{base}/status/{job_id}?wait=300", headers={"X-API-Key": key}) as r:
        await r.read()
async def main():
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as s:
        waits = [asyncio.ensure_future(wait(s, j)) for j in ids]
        await asyncio.sleep(1)
        print("open", flush=True)
        await asyncio.gather(*waits)
asyncio.run(main())
"""


def bench_waiters(work: Path, quick: bool) -> None:
    """Status reads (p99) with 1,000 `?wait=` requests held open by another process, against
    none, alternating; and what the waiters cost the daemon in memory (VmRSS). The full run
    measures the same on a second daemon on asyncio's own loop, in the same rounds: what the
    default loop (uvloop where installed) changes."""
    count = 200 if quick else 1000
    loops = {"default": {}} | ({} if quick else {"asyncio": {"CONVERTD_EVENT_LOOP": "asyncio"}})
    # workers=0: nothing runs, every job stays pending
    ds = {name: Daemon(work / "waiters" / name / "data", 0, env) for name, env in loops.items()}
    sides = {name: {"none": [], "waiters": []} for name in loops}
    rss: dict[str, list[int]] = {"none": [], "waiters": []}
    try:
        targets = {name: (waiter_jobs(d, count), f"{d.base}/status/") for name, d in ds.items()}
        seconds = 2 if quick else 8
        for n in range(2):
            for name in list(ds) if n % 2 == 0 else reversed(ds):
                d, (ids, status) = ds[name], targets[name]
                assert d.proc is not None
                load(d, status + ids[-1], 1)  # warm up
                if name == "default":
                    rss["none"].append(proc_status_kib(d.proc.pid, "VmRSS"))
                sides[name]["none"].append(load(d, status + ids[-1], seconds)[1])
                waiters = subprocess.Popen(
                    [sys.executable, "-c", WAITERS_CLIENT, d.base, d.key, ",".join(ids[:count])],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                assert waiters.stdout is not None and waiters.stdout.readline().strip() == "open"
                if name == "default":
                    rss["waiters"].append(proc_status_kib(d.proc.pid, "VmRSS"))
                sides[name]["waiters"].append(load(d, status + ids[-1], seconds)[1])
                waiters.kill()
                waiters.wait()
                time.sleep(1)
        loop = started_loop(ds["default"])
    finally:
        for d in ds.values():
            d.stop()
    p99 = {name: {k: statistics.median(v) for k, v in side.items()} for name, side in sides.items()}
    none, held = p99["default"]["none"], p99["default"]["waiters"]
    per_waiter = (statistics.median(rss["waiters"]) - statistics.median(rss["none"])) / count
    ROWS.append(
        (
            f"GET /v1/status p99, 32 connections, with {count:,} ?wait= requests open vs none",
            f"{held:.1f} ms",
            f"{none:.1f} ms",
            f"{held / none:.2f}x",
            "<= 1.5x",
        )
    )
    ROWS.append(
        (
            f"daemon memory per open ?wait= request ({count:,} open)",
            f"{per_waiter:.1f} KiB",
            "-",
            "-",
            "<= 64 KiB",
        )
    )
    print(f"waiters ({loop}): p99 {held:.1f} ms vs {none:.1f} ms; {per_waiter:.1f} KiB each")
    if "asyncio" in p99:
        std = p99["asyncio"]
        std_held, std_none = std["waiters"], std["none"]
        ROWS.append(
            (
                f"GET /v1/status p99 with {count:,} ?wait= open, on {loop} (the default) vs "
                "asyncio's loop (p99 with them vs none)",
                f"{held / none:.2f}x ({held:.1f} vs {none:.1f} ms)",
                f"{std_held / std_none:.2f}x ({std_held:.1f} vs {std_none:.1f} ms)",
                f"{held / none / (std_held / std_none):.2f}x",
                "- (the loop's share)",
            )
        )
        print(f"waiters (asyncio): p99 {std_held:.1f} ms vs {std_none:.1f} ms")
    sys.stdout.flush()


def waiter_jobs(d: Daemon, count: int) -> list[str]:
    """count + 1 pending jobs: the first count to wait on, the last to read the status of."""
    return [
        d.http.post(
            f"{d.base}/convert",
            files={"file": ("a.txt", b"%d" % n)},
            data={"filetype": "hash", "output_format": "md5"},
            timeout=30,
        ).json()["job_id"]
        for n in range(count + 1)
    ]


BOUNDARY = "convertdbenchboundary"
PATTERN = bytes(range(256)) * 4096  # 1 MiB


def tar_upload(name: str, member_size: int) -> Iterator[bytes]:
    """A multipart body holding a plain tar of one `member_size` file, generated as it is sent:
    the client never holds the file in memory, so only the daemon's memory is measured."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/x-tar\r\n\r\n"
    ).encode()
    info = tarfile.TarInfo("big.bin")
    info.size = member_size
    yield info.tobuf(format=tarfile.PAX_FORMAT)
    sent = 0
    while sent < member_size:
        part = PATTERN[: min(len(PATTERN), member_size - sent)]
        sent += len(part)
        yield part
    yield b"\0" * (-member_size % 512) + b"\0" * 1024
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def office_rss_mib(data_dir: Path) -> float:
    total = 0
    for entry in Path("/proc").iterdir():
        try:
            if (entry / "comm").read_text().strip() != "soffice.bin":
                continue
            if str(data_dir) not in (entry / "cmdline").read_bytes().decode(errors="replace"):
                continue
            total += proc_status_kib(int(entry.name), "VmRSS")
        except (OSError, ValueError):
            continue
    return total / 1024


def bench_memory(work: Path, quick: bool) -> None:
    """Peak daemon memory while a big archive goes up, is converted and comes back down; and
    LibreOffice's memory over a long run of documents."""
    size = (64 if quick else 2048) * 1024**2
    d = Daemon(
        work / "memory" / "data",
        workers=2,
        env={"CONVERTD_MAX_UPLOAD_BYTES": str(size + 64 * 1024**2)},
    )
    try:
        d.convert(b"warm", "warm.txt", "hash", "md5")
        baseline = proc_status_kib(d.proc.pid, "VmRSS")
        upload = d.http.post(
            f"{d.base}/upload",
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
            data=tar_upload("big.tar", size),
            timeout=1800,
        ).json()
        job = d.http.post(
            f"{d.base}/convert",
            data={
                "file_path": upload["files"][0]["file_path"],
                "filetype": "archive",
                "output_format": "zip",
                "options": json.dumps({"compression_level": 0}),
            },
            timeout=60,
        ).json()
        status = d.wait(job["status_url"])
        if status["status"] != "finished":
            raise RuntimeError(status["error"])
        received = 0
        with d.http.get(status["download_url"], stream=True, timeout=1800) as resp:
            for chunk in resp.iter_content(1024 * 1024):
                received += len(chunk)
        if received < size:
            raise RuntimeError(f"downloaded {received} bytes, expected at least {size}")
        grown = (proc_status_kib(d.proc.pid, "VmHWM") - baseline) / 1024
    finally:
        d.stop()
    ROWS.append(
        (
            f"memory: daemon peak RSS growth, {size >> 20} MiB tar up, -> zip, zip down",
            f"+{grown:.0f} MiB",
            f"{size >> 20} MiB moved",
            "-",
            "< 50 MiB",
        )
    )
    print(f"memory: peak RSS +{grown:.0f} MiB for {size >> 20} MiB up and down", flush=True)

    docs = 25 if quick else 300
    d = Daemon(work / "soak" / "data", workers=1, env={"CONVERTD_OFFICE_INSTANCES": "1"})
    try:
        docx = (CORPUS / "document" / "word2013-numbered-lists.docx").read_bytes()
        for n in range(docs):
            d.convert(docx, f"d{n}.docx", "document", "pdf")
            if n == 19:
                warm = office_rss_mib(d.data_dir)
        after = office_rss_mib(d.data_dir)
    finally:
        d.stop()
    ROWS.append(
        (
            f"memory: LibreOffice RSS after {docs} documents vs after 20",
            f"{after:.0f} MiB",
            f"{warm:.0f} MiB",
            f"{after / warm:.2f}x",
            "<= 2x",
        )
    )
    print(f"memory: soffice {warm:.0f} MiB after 20 docs, {after:.0f} MiB after {docs}", flush=True)


def bench_drops(work: Path, quick: bool) -> None:
    """Files dropped into the inbox: throughput for a batch, and for a single file the delay
    from the moment it has been stable for the settle window to its job starting."""
    count = 50 if quick else 1000
    settle = 2.0
    d = Daemon(
        work / "drops" / "data",
        workers=os.cpu_count() or 2,
        env={"CONVERTD_DROP_SETTLE_SECONDS": str(settle)},
    )
    inbox = d.data_dir / "drop" / "inbox" / "webp"
    outbox = d.data_dir / "drop" / "outbox"
    staging = work / "drops" / "staging"
    staging.mkdir()
    buf = io.BytesIO()
    Image.effect_noise((320, 240), 40).convert("RGB").save(buf, "JPEG")
    try:
        inbox.mkdir(parents=True, exist_ok=True)  # inbox/<format>/ names the output format
        time.sleep(settle)  # let the watcher see the new folder
        delays = []
        for n in range(2 if quick else 5):
            (staging / f"single{n}.jpg").write_bytes(buf.getvalue())
            os.rename(staging / f"single{n}.jpg", inbox / f"single{n}.jpg")
            stable_at = time.time() + settle
            while not (outbox / f"single{n}.webp").exists():
                time.sleep(0.02)
            delays.append(job_started_at(d.data_dir, f"single{n}.jpg") - stable_at)
        for n in range(count):
            (staging / f"batch{n:04}.jpg").write_bytes(buf.getvalue())
        start = time.perf_counter()
        for n in range(count):
            os.rename(staging / f"batch{n:04}.jpg", inbox / f"batch{n:04}.jpg")
        while len(list(outbox.glob("batch*.webp"))) < count:
            time.sleep(0.1)
        elapsed = time.perf_counter() - start
    finally:
        d.stop()
    delay = statistics.median(delays)
    ROWS.append(
        (
            f"drop folder: {count} JPEGs moved in at once -> WebP",
            f"{count / elapsed:.0f} files/s",
            f"{elapsed:.1f} s in all",
            "-",
            "all converted",
        )
    )
    ROWS.append(
        (
            f"drop folder: stable for the {settle:.0f} s settle window -> job started",
            f"{delay * 1000:.0f} ms",
            "-",
            "-",
            "<= 500 ms",
        )
    )
    print(
        f"drop folder: {count / elapsed:.0f} files/s; settle-to-start {delay * 1000:.0f} ms",
        flush=True,
    )


def job_started_at(data_dir: Path, name: str) -> float:
    """When the job for a dropped file started, from the database (read-only)."""
    db = sqlite3.connect(f"file:{data_dir / 'convertd.db'}?mode=ro", uri=True)
    try:
        row = db.execute(
            "SELECT j.started_at FROM jobs j JOIN uploads u ON u.id = j.upload_id "
            "WHERE u.file_name = ? ORDER BY j.created_at DESC LIMIT 1",
            (name,),
        ).fetchone()
    finally:
        db.close()
    if row is None or row[0] is None:
        raise RuntimeError(f"no started job for {name}")
    return float(row[0])


def bench_recovery(work: Path, quick: bool) -> None:
    """kill -9 while conversions run; restart; how long until every interrupted job runs
    again (from the moment the new process is started)."""
    d = Daemon(work / "recovery" / "data", workers=2)
    clip = make_clip(work / "recovery.mp4", 5 if quick else 20).read_bytes()
    try:
        jobs = d.submit_transcodes(clip, 2)
        while [d.job(j)["status"] for j in jobs] != ["processing", "processing"]:
            time.sleep(0.05)
        d.kill()
        launched = time.perf_counter()
        d.start()
        while True:
            states = [d.job(j) for j in jobs]
            if all(
                s["status"] in {"processing", "finished"} and s.get("progress") != 0 for s in states
            ) and all(s["status"] != "pending" for s in states):
                break
            time.sleep(0.02)
        recovered = time.perf_counter() - launched
        while any(d.job(j)["status"] == "processing" for j in jobs):
            time.sleep(0.2)
    finally:
        d.stop()
    ROWS.append(
        (
            "recovery: kill -9 during 2 conversions -> both running again",
            f"{recovered:.2f} s",
            "-",
            "-",
            "<= 5 s after start",
        )
    )
    print(f"recovery: {recovered:.2f} s from restart to both jobs running", flush=True)


HEADER = [
    "| group | case | convertd | other | ratio (convertd / other) | goal | load | repeats | run "
    "| command |",
    "|---|---|---:|---:|---:|---|---:|---|---|---|",
]
# The table before the load and repeats were recorded: its rows are kept, marked so.
OLD_HEADER = "| group | case | convertd | other | ratio (convertd / other) | goal | run |"
NOT_RECORDED = "not recorded"
HOW_TO_READ = [
    "- convertd, other: medians of the case's runs; times include upload, queue, waiting "
    "(`?wait=`, or polling where the case says so) and download for convertd; ratio: convertd's "
    "over the other side's (below 1: convertd is faster)",
    "- load: the 1-minute load average sampled while the case ran (lowest-highest), on this "
    "shared 2-core machine: above ~1 another program was busy too, and the figures are noisier",
    "- repeats: how many runs each side had (the sides in turn, each round starting one side "
    f"later); a full run repeats a case until the medians after each of its last {STABLE_LAST} "
    f"runs differ by under {STABLE_SPREAD * 100:.0f} % (at most {STABLE_CAP}x its runs, "
    f"{STABLE_SECONDS:.0f} s), "
    f"else says 'unstable' and the spread; 'one measurement': a burst or throughput case",
    "- run: the date and mode of the run that measured the row; command: what to run to "
    "measure it again",
]


def command(group: str, quick: bool, partial: bool) -> str:
    return f"`bench/run{' --quick' if quick else ''}{f' --only {group}' if partial else ''}`"


def kept_rows(path: Path, ran: set[str]) -> dict[str, list[str]]:
    """The table lines of `path` by group, except the groups this run measured again: a run of
    some groups (--only) replaces their rows and keeps the others'. Rows of the table before
    the load and repeats columns get them as 'not recorded', and the command that measures
    that group alone."""
    kept: dict[str, list[str]] = {}
    if not path.exists():
        return kept
    text = path.read_text()
    old = OLD_HEADER in text
    if not old and HEADER[0] not in text:
        return kept
    for line in text.splitlines():
        if not line.startswith("| ") or line in HEADER or line.startswith(("| group", "|---")):
            continue
        group = line[2:].split(" | ", 1)[0]
        if group in ran:
            continue
        if old:
            cells = line[2:-2].split(" | ")
            *measured, run = cells
            again = command(group, run.endswith("quick"), partial=True)
            line = f"| {' | '.join([*measured, NOT_RECORDED, NOT_RECORDED, run, again])} |"
        kept.setdefault(group, []).append(line)
    return kept


def write_results(
    path: Path, quick: bool, grouped: dict[str, list[Measured]], partial: bool
) -> None:
    run = f"{dt.datetime.now(dt.UTC):%Y-%m-%d} {'quick' if quick else 'full'}"
    ran = "".join(f" --only {group}" for group in CASES if group in grouped) if partial else ""
    table = kept_rows(path, set(grouped)) if partial else {}
    for group, rows in grouped.items():
        again = command(group, quick, partial)
        table[group] = [f"| {group} | {' | '.join(r)} | {run} | {again} |" for r in rows]
    lines = [
        "# convertd benchmark results",
        "",
        f"- written: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, by `bench/run"
        f"{' --quick' if quick else ''}{ran}`"
        + ("; the other groups' rows are kept from earlier runs" if partial else ""),
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}",
        *HOW_TO_READ,
        "",
        *HEADER,
        *(line for group in CASES for line in table.get(group, [])),
        "",
    ]
    path.write_text("\n".join(lines))


CASES = (
    "documents",
    "images",
    "v2",
    "media",
    "operations",
    "queue",
    "control",
    "metrics",
    "waiters",
    "memory",
    "drops",
    "recovery",
    "cluster",
    "pipeline",
)
# The groups measured on the one daemon main() starts for them.
SHARED_DAEMON = {"documents", "images", "v2", "media", "operations", "control", "queue"}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small inputs, few runs (CI)")
    parser.add_argument(
        "--out",
        type=Path,
        help="the results file (default: bench/results.md, or bench/results-quick.md with "
        "--quick, so a quick run never replaces the full run's rows)",
    )
    parser.add_argument(
        "--only",
        choices=CASES,
        action="append",
    )
    args = parser.parse_args()
    if args.out is None:
        args.out = ROOT / "bench" / ("results-quick.md" if args.quick else "results.md")
    runs = 2 if args.quick else 7
    only = set(args.only or CASES)
    grouped: dict[str, list[Measured]] = {}
    Case.extend = not args.quick

    def measure(group: str, bench: Callable[[], object]) -> None:
        """Run one group if it was asked for, and keep its rows apart for the results file."""
        if group in only:
            start = len(ROWS)
            new_case()
            bench()
            grouped[group] = ROWS[start:]

    with tempfile.TemporaryDirectory(prefix="convertd-bench-") as tmp:
        work = Path(tmp)
        if only & SHARED_DAEMON:
            d = Daemon(work / "data", workers=os.cpu_count() or 2)
            try:
                measure("documents", lambda: bench_documents(d, work, runs, args.quick))
                measure("images", lambda: bench_images(d, work, runs, args.quick))
                measure("v2", lambda: bench_v2(d, work, runs, args.quick))
                measure("media", lambda: bench_media(d, work, runs, args.quick))
                measure("operations", lambda: bench_operations(d, work, runs, args.quick))
                measure("control", lambda: bench_control_plane(d, work, args.quick))
                measure("queue", lambda: bench_queue(work, args.quick))
            finally:
                d.stop()
        measure("metrics", lambda: bench_metrics(work, args.quick))
        measure("waiters", lambda: bench_waiters(work, args.quick))
        measure("memory", lambda: bench_memory(work, args.quick))
        measure("drops", lambda: bench_drops(work, args.quick))
        measure("recovery", lambda: bench_recovery(work, args.quick))
        measure("cluster", lambda: ROWS.extend(bench_cluster(work, args.quick)))
        measure("pipeline", lambda: ROWS.extend(bench_pipeline(work, args.quick), True))
    write_results(args.out, args.quick, grouped, partial=only != set(CASES))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
