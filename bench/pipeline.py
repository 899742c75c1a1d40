"""The `pipeline` group of the benchmarks (issue 19): small jobs end to end through the HTTP API.

Each of 8 clients submits a 1-byte file for a sha256 (POST /v1/convert), waits for its end
(GET /v1/status?wait=, issue 11) and downloads the result, again and again: what one job costs
the whole path (upload, queue, worker, announcement, download), not the queue alone (the
`queue` group calls the queue without HTTP). A second side polls every 10 ms instead of
waiting, so the cost of polling stays visible. The two sides alternate on one daemon; each
row puts ?wait= in the convertd column and polling in the other: jobs/s, then the daemon's and
the clients' CPU per job.

The clients run in one separate process (aiohttp, one event loop), which reports its own CPU
time: the daemon's CPU per job (from /proc/PID/stat) is the figure that tells progress, since
throughput on a shared 2-core machine moves with everyone else's load.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from tests.daemon import Daemon

Row = tuple[str, str, str, str, str]

CLIENTS = 8
POLL_SECONDS = 0.01

CLIENT = r"""
import asyncio, hashlib, json, sys, time
import aiohttp
base, key, jobs, clients, mode, poll = sys.argv[1:7]
jobs, clients, poll = int(jobs), int(clients), float(poll)
DATA = b"a"
DIGEST = hashlib.sha256(DATA).hexdigest() + "\n"
done = 0
async def one(session):
    form = aiohttp.FormData()
    form.add_field("file", DATA, filename="a.txt")
    form.add_field("filetype", "hash")
    form.add_field("output_format", "sha256")
    async with session.post(f"{base}/convert", data=form) as r:
        assert r.status == 202, (r.status, await r.text())
        job = await r.json()
    url = job["status_url"] + ("?wait=30" if mode == "wait" else "")
    while True:
        async with session.get(url) as r:
            status = await r.json()
        if status["status"] == "finished":
            break
        assert status["status"] != "failed", status
        if mode == "poll":
            await asyncio.sleep(poll)
    async with session.get(job["download_url"]) as r:
        assert r.status == 200
        assert (await r.text()) == DIGEST
async def client(session):
    global done
    while done < jobs:
        done += 1
        await one(session)
async def main():
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, headers={"X-API-Key": key}) as s:
        await asyncio.gather(*(client(s) for _ in range(clients)))
cpu, start = time.process_time(), time.perf_counter()
asyncio.run(main())
print(json.dumps({"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu}))
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> float:
    return os.getloadavg()[0]


def run_clients(d: Daemon, key: str, jobs: int, mode: str) -> dict[str, float]:
    """One run of `jobs` jobs by CLIENTS clients: jobs/s, and CPU per job of daemon and client."""
    assert d.proc is not None
    before = cpu_seconds(d.proc.pid)
    out = subprocess.run(
        [sys.executable, "-c", CLIENT, d.base, key, str(jobs), str(CLIENTS), mode, "0.01"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    daemon = cpu_seconds(d.proc.pid) - before
    client = json.loads(out.stdout)
    return {
        "rate": jobs / client["seconds"],
        "daemon_ms": daemon / jobs * 1000,
        "client_ms": client["cpu"] / jobs * 1000,
        "seconds": client["seconds"],
    }


def bench_pipeline(work: Path, quick: bool) -> list[Row]:
    jobs = 100 if quick else 1000
    rounds = 1 if quick else 4
    # The full run adds a third side: ?wait= on a second daemon on asyncio's own loop
    # (event_loop = "asyncio"), what the default loop (uvloop where installed) saves a job.
    loops = {"default": {}} | ({} if quick else {"asyncio": {"CONVERTD_EVENT_LOOP": "asyncio"}})
    ds = {
        loop: Daemon(work / "pipeline" / loop / "data", env, workers=os.cpu_count() or 2)
        for loop, env in loops.items()
    }
    # side: (daemon, mode); polling runs on the default daemon
    sides = {"wait": ("default", "wait"), "poll": ("default", "poll")}
    sides |= {"asyncio": ("asyncio", "wait")} if "asyncio" in ds else {}
    try:
        keys = {}
        for loop, d in ds.items():
            d.data_dir.parent.mkdir(parents=True, exist_ok=True)
            d.start(ready_within=60)
            keys[loop] = d.create_key("bench", "--plan", "pro")
            run_clients(d, keys[loop], 50, "wait")  # warm up: connections, the first claims
        runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
        loads: list[float] = []
        for n in range(rounds):
            for side in list(sides) if n % 2 == 0 else reversed(sides):
                loop, mode = sides[side]
                runs[side].append(run_clients(ds[loop], keys[loop], jobs, mode))
                loads.append(load_average())
        started = ds["default"].log().split("convertd listening on", 1)[1].split("\n", 1)[0]
        loop = started.rpartition(" loop)")[0].rpartition(" ")[2]
    finally:
        for d in ds.values():
            if d.proc is not None:
                d.stop()
    med = {
        side: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for side, rs in runs.items()
    }
    load = f"load {min(loads):.1f}-{max(loads):.1f}"
    wait, poll = med["wait"], med["poll"]
    polling = f"polling every {POLL_SECONDS * 1000:.0f} ms"
    for side, m in med.items():
        print(
            f"pipeline {side}: {m['rate']:.0f} jobs/s, daemon {m['daemon_ms']:.2f} ms/job, "
            f"client {m['client_ms']:.2f} ms/job; {load}",
            flush=True,
        )
    # Each row as the table's header says: convertd = the ?wait= side, other = the polling
    # side, ratio = the first over the second (one measurement: all three from the same runs).
    rows: list[Row] = [
        (
            f"small jobs end to end: 1-byte file -> sha256, {CLIENTS} clients, submit + ?wait= "
            f"+ download, vs {polling} ({jobs} jobs x {rounds})",
            f"{wait['rate']:.0f} jobs/s",
            f"{poll['rate']:.0f} jobs/s",
            f"{wait['rate'] / poll['rate']:.2f}x",
            ">= 500 jobs/s (?wait=)",
        ),
        *(
            (
                f"small jobs end to end: {side} CPU per job, ?wait= vs {polling}",
                f"{wait[field]:.2f} ms",
                f"{poll[field]:.2f} ms",
                f"{wait[field] / poll[field]:.2f}x",
                "- (polling's cost)",
            )
            for side, field in (("daemon", "daemon_ms"), ("client", "client_ms"))
        ),
    ]
    if "asyncio" in med:
        std = med["asyncio"]
        rows.append(
            (
                f"small jobs end to end, ?wait=: daemon CPU per job on {loop} (the default) vs "
                f"asyncio's loop ({jobs} jobs x {rounds})",
                f"{wait['daemon_ms']:.2f} ms, {wait['rate']:.0f} jobs/s",
                f"{std['daemon_ms']:.2f} ms, {std['rate']:.0f} jobs/s",
                f"{wait['daemon_ms'] / std['daemon_ms']:.2f}x",
                "- (the loop's share)",
            )
        )
    return rows
