"""The `cluster` group of the benchmarks (issue 18): jobs/s end to end for 1, 2 and 3 `serve`
nodes on one PostgreSQL database (and one shared --storage dir) beside one node on SQLite, and
the queue's own claim and complete on both engines, with three claimers on PostgreSQL.

On one machine every node shares the same cores (and the PostgreSQL server, and this client):
more nodes cannot add CPU here, so these rows show what a node and the shared database cost per
job, not how far a real cluster of machines scales.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from convertd.store import jobs, uploads
from convertd.store.db import Database
from convertd.store.engines import open_database
from tests.daemon import Daemon
from tests.postgres import Cluster, PostgresMissing

Row = tuple[str, str, str, str, str]

# Conversion workers in all, whatever the number of nodes: 1 x 6, 2 x 3, 3 x 2.
TOTAL_WORKERS = 6
# Clients' connections in flight at once; a ?wait= holds one until its job ends.
CONNECTIONS = 64
CLAIMERS = 3
# A job slower than this end to end is shown (it is an outlier: the whole burst takes ~3 s).
SLOW_SECONDS = 10.0
# Each ?wait= asks for this many seconds: a job still running after it is asked for again.
WAIT = 30

HASH_MD5 = jobs.Conversion("hash", "txt", "md5", {})


@dataclass
class Setup:
    label: str
    nodes: list[Daemon]
    key: str
    database: str | None  # None: SQLite in the one node's data dir


def new_setup(pg: Cluster, root: Path, label: str, count: int, postgres: bool) -> Setup:
    """The nodes of one layout, not started yet: each layout on a database of its own."""
    database = pg.new_database() if postgres else None
    shared = root / "shared"
    shared.mkdir(parents=True)
    args = ("--storage", str(shared)) if postgres else ()
    nodes = [
        Daemon(
            root / f"node{n}" / "data", workers=TOTAL_WORKERS // count, args=args, database=database
        )
        for n in range(count)
    ]
    return Setup(label, nodes, "", database)


def start_all(setups: list[Setup]) -> None:
    """Start every node, a few at a time: the first of each layout (it migrates its database),
    then the others; then a `pro` key in each layout's database."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda node: node.start(ready_within=90), [s.nodes[0] for s in setups]))
        list(
            pool.map(
                lambda node: node.start(ready_within=90), [n for s in setups for n in s.nodes[1:]]
            )
        )
        keys = pool.map(lambda s: s.nodes[0].create_key("bench", "--plan", "pro"), setups)
        for setup, key in zip(setups, keys, strict=True):
            setup.key = key


def stop_all(setups: list[Setup]) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda node: node.stop(), [n for s in setups for n in s.nodes if n.proc]))


async def burst(setup: Setup, count: int, tag: str) -> tuple[float, int]:
    """`count` one-byte hash jobs at once, dealt round the nodes in turn, each waited for on
    the node it went to with ?wait=: (jobs/s from the first submit to the last end, jobs slower
    than SLOW_SECONDS). Those are shown: the node each went to, its times as the daemon has them."""
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    headers = {"X-API-Key": setup.key}
    slow: list[str] = []
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(n: int) -> None:
            node = n % len(setup.nodes)
            base = setup.nodes[node].base
            form = aiohttp.FormData()
            form.add_field("file", f"{tag}-{n}".encode(), filename="a.txt")
            form.add_field("filetype", "hash")
            form.add_field("output_format", "md5")
            submitted = time.perf_counter()
            async with session.post(f"{base}/convert", data=form) as response:
                job = await response.json()
                assert response.status < 300, job
            queued = time.perf_counter()
            status = job
            while status["status"] in ("pending", "processing"):
                async with session.get(f"{base}/status/{job['job_id']}?wait={WAIT}") as response:
                    status = await response.json()
            assert status["status"] == "finished", status
            if (ended := time.perf_counter()) - submitted > SLOW_SECONDS:
                slow.append(
                    f"{job['job_id']} via node {node}: submit {queued - submitted:.1f} s, wait "
                    f"{ended - queued:.1f} s; created {status['created_at']}, started "
                    f"{status.get('started_at')}, finished {status.get('finished_at')}"
                )

        start = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(count)))
        rate = count / (time.perf_counter() - start)
    if slow:
        print(f"  {setup.label}: {len(slow)} jobs over {SLOW_SECONDS:.0f} s, e.g.", flush=True)
        for line in slow[:3]:
            print(f"    {line}", flush=True)
    return rate, len(slow)


def jobs_per_node(setup: Setup) -> list[int]:
    """How many jobs each node's workers ran (the node column), most first."""
    rows = setup.nodes[0].query("SELECT node, COUNT(*) FROM jobs GROUP BY node")
    return sorted((int(n) for _, n in rows), reverse=True)


def end_to_end(pg: Cluster, work: Path, quick: bool) -> list[Row]:
    count = 40 if quick else 300
    rounds = 1 if quick else 5
    layouts = [("SQLite, 1 node", 1, False)] + [
        (f"PostgreSQL, {n} node{'s' if n > 1 else ''}", n, True) for n in (1, 2, 3)
    ]
    setups = [
        new_setup(pg, work / "cluster" / f"setup{i}", label, nodes, postgres)
        for i, (label, nodes, postgres) in enumerate(layouts)
    ]
    try:
        start_all(setups)
        for setup in setups:  # warm up: first requests, prepared statements, converter imports
            asyncio.run(burst(setup, 12, "warm"))
        rates: dict[str, list[float]] = {s.label: [] for s in setups}
        slow: dict[str, int] = {s.label: 0 for s in setups}
        for r in range(rounds):
            # Each round in another order: all sides see the machine's drift alike.
            for setup in setups[r % len(setups) :] + setups[: r % len(setups)]:
                rate, late = asyncio.run(burst(setup, count, f"r{r}"))
                rates[setup.label].append(rate)
                slow[setup.label] += late
        spread = {s.label: jobs_per_node(s) for s in setups if s.database and len(s.nodes) > 1}
    finally:
        stop_all(setups)
    base = statistics.median(rates[setups[0].label])
    rows: list[Row] = []
    print(
        f"cluster: {count} one-byte hash jobs at once through the API ({CONNECTIONS} connections,"
        f" ?wait=), {TOTAL_WORKERS} workers in all, median of {rounds}:",
        flush=True,
    )
    for setup in setups:
        rate = statistics.median(rates[setup.label])
        runs = ", ".join(f"{x:.0f}" for x in rates[setup.label])
        ran = f"; jobs run per node {spread[setup.label]}" if setup.label in spread else ""
        late = slow[setup.label]
        ran += f"; {late} jobs over {SLOW_SECONDS:.0f} s" if late else ""
        print(
            f"  {setup.label:22} {rate:6.0f} jobs/s  ({runs})  vs SQLite {rate / base:.2f}{ran}",
            flush=True,
        )
        if setup is setups[0]:
            continue
        late = (slow[setup.label], slow[setups[0].label])
        per_node = TOTAL_WORKERS // len(setup.nodes)
        rows.append(
            (
                f"cluster: {count} hash jobs at once, end to end, {setup.label} x {per_node} "
                f"workers vs SQLite 1 node x {TOTAL_WORKERS}",
                f"{rate:.0f} jobs/s",
                f"{base:.0f} jobs/s",
                f"{rate / base:.2f}x",
                "all finished (one machine: nodes share 2 cores)"
                + (
                    f"; jobs over {SLOW_SECONDS:.0f} s: {late[0]} here, {late[1]} on SQLite"
                    if any(late)
                    else ""
                ),
            )
        )
    return rows


async def fill(db: Database, count: int) -> float:
    """Queue `count` no-op jobs; jobs/s."""
    (upload,) = await uploads.record_uploads(db, None, [("t/x", "x", 1, "txt")])
    start = time.perf_counter()
    for _ in range(count):
        await jobs.create(db, upload.id, HASH_MD5, key_id=None)
    return count / (time.perf_counter() - start)


async def drain(db: Database, owner: str) -> int:
    """Claim and finish until the queue is empty; how many this claimer took."""
    taken = 0
    while (job := await jobs.claim_next(db, owner)) is not None:
        assert await jobs.finish(db, job.id, owner, "x.md5", 1, 33), "claimed twice"
        taken += 1
    return taken


async def one_claimer(where: str | Path, count: int) -> tuple[float, float]:
    """Enqueue, then claim + finish, on one Database: (enqueue jobs/s, claim + finish jobs/s)."""
    db = await open_database(where)
    try:
        queued = await fill(db, count)
        start = time.perf_counter()
        assert await drain(db, "bench") == count
        return queued, count / (time.perf_counter() - start)
    finally:
        await db.close()


async def pending(db: Database) -> int:
    row = await db.fetch_one("SELECT COUNT(*) FROM jobs WHERE status = 'pending'")
    assert row is not None
    return int(row[0])


async def three_claimers(url: str, count: int) -> tuple[float, int, list[int]]:
    """Claim + finish on CLAIMERS Database objects at once (a writer connection each, as nodes
    have): (jobs/s, claims that came back empty while jobs were still pending, jobs each).
    The three share this process, and so one event loop and the GIL, as nodes would not."""
    dbs = [await open_database(url) for _ in range(CLAIMERS)]
    empty = 0
    try:
        await fill(dbs[0], count)

        async def claimer(db: Database, owner: str) -> int:
            nonlocal empty
            taken = 0
            while True:
                taken += await drain(db, owner)
                # Empty: the others held every row it could see, or the queue is done.
                if await pending(db) == 0:
                    return taken
                empty += 1

        start = time.perf_counter()
        taken = await asyncio.gather(*(claimer(db, f"node{i}") for i, db in enumerate(dbs)))
        elapsed = time.perf_counter() - start
        assert sum(taken) == count, taken
        return count / elapsed, empty, sorted(taken, reverse=True)
    finally:
        for db in dbs:
            await db.close()


def queue(pg: Cluster, work: Path, quick: bool) -> list[Row]:
    count = 200 if quick else 2000
    rounds = 1 if quick else 3
    logging.getLogger("convertd").setLevel(logging.WARNING)
    sides: dict[str, list[tuple[float, float]]] = {"sqlite": [], "postgres": []}
    contention: list[tuple[float, int, list[int]]] = []
    for r in range(rounds):
        # Alternating, each on a fresh database: every side starts from an empty table.
        sides["sqlite"].append(asyncio.run(one_claimer(work / f"cluster-queue-{r}.db", count)))
        sides["postgres"].append(asyncio.run(one_claimer(pg.new_database(), count)))
        contention.append(asyncio.run(three_claimers(pg.new_database(), count)))

    def median(side: str, phase: int) -> float:
        return statistics.median(s[phase] for s in sides[side])

    lite_fill, lite_claim = median("sqlite", 0), median("sqlite", 1)
    pg_fill, pg_claim = median("postgres", 0), median("postgres", 1)
    many = statistics.median(c[0] for c in contention)
    empty = statistics.median(c[1] for c in contention)
    spread = contention[len(contention) // 2][2]
    print(
        f"cluster queue ({count} no-op jobs, median of {rounds}): enqueue PostgreSQL "
        f"{pg_fill:.0f} jobs/s vs SQLite {lite_fill:.0f} ({pg_fill / lite_fill:.2f}); claim + "
        f"finish PostgreSQL {pg_claim:.0f} vs SQLite {lite_claim:.0f} "
        f"({pg_claim / lite_claim:.2f}); {CLAIMERS} claimers on PostgreSQL {many:.0f} jobs/s "
        f"({many / pg_claim:.2f} of one), {empty:.0f} empty claims while jobs were pending, "
        f"jobs each {spread} (runs: {[round(c[0]) for c in contention]}, empty "
        f"{[c[1] for c in contention]})",
        flush=True,
    )
    return [
        (
            "cluster queue: enqueue, no-op jobs, PostgreSQL vs SQLite",
            f"{pg_fill:.0f} jobs/s",
            f"{lite_fill:.0f} jobs/s",
            f"{pg_fill / lite_fill:.2f}x",
            "-",
        ),
        (
            "cluster queue: claim + finish, one claimer, PostgreSQL vs SQLite",
            f"{pg_claim:.0f} jobs/s",
            f"{lite_claim:.0f} jobs/s",
            f"{pg_claim / lite_claim:.2f}x",
            "-",
        ),
        (
            f"cluster queue: claim + finish, {CLAIMERS} claimers (SKIP LOCKED) vs one, PostgreSQL",
            f"{many:.0f} jobs/s",
            f"{pg_claim:.0f} jobs/s",
            f"{many / pg_claim:.2f}x",
            f"no job twice; {empty:.0f} empty claims while jobs were pending",
        ),
    ]


def bench_cluster(work: Path, quick: bool) -> list[Row]:
    """The group's rows; none, with a note, where PostgreSQL is not installed."""
    try:
        pg = Cluster().start()
    except PostgresMissing as exc:
        print(f"cluster: skipped ({exc})", flush=True)
        return []
    try:
        return end_to_end(pg, work, quick) + queue(pg, work, quick)
    finally:
        pg.stop()
