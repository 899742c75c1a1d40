"""`convertd nodes`: the nodes sharing the database, their workers and running jobs, and when
each was last seen."""

from __future__ import annotations

import argparse
import json
import os

from convertd import clock
from convertd.cli.common import print_table, runs_on_database
from convertd.cluster.node import LEASE_SECONDS
from convertd.store import nodes
from convertd.store.db import Database


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    listing = sub.add_parser(
        "nodes",
        parents=[common],
        help="list the nodes sharing the database",
        description=(
            f"The live nodes (seen in the last {LEASE_SECONDS:.0f} s): each `convertd serve` and "
            "`convertd worker` on this database, its workers and the jobs they run now."
        ),
        epilog="example: convertd nodes --database postgresql://convertd@nas/convertd",
    )
    listing.add_argument(
        "--all", action="store_true", help="also the nodes that stopped or died in the last day"
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    runs_on_database(listing, _list)


def state(node: nodes.Node, local: bool) -> str:
    if node.stopped_at is not None:
        return "stopped"
    if local:  # SQLite's one node says nothing while it runs: is its process there?
        return "alive" if _running(node.pid) else "lost"
    return "alive" if node.seen_ago <= LEASE_SECONDS else "lost"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: there all the same
        return True
    return True


async def _list(db: Database, args: argparse.Namespace) -> int:
    local = not db.shared
    found = await nodes.listed(db, LEASE_SECONDS, everyone=args.all or local)
    if local and not args.all:
        found = [n for n in found if state(n, local) == "alive"]
    if args.json:
        print(json.dumps([{**vars(n), "state": state(n, local)} for n in found], indent=2))
        return 0
    if not found:
        print("no live nodes (is `convertd serve` running on this database?)")
        return 0
    rows = [["NODE", "ROLE", "STATE", "LEADS", "WORKERS", "RUNNING", "SEEN", "STARTED", "ADDRESS"]]
    rows += [
        [
            n.id,
            n.role,
            state(n, local),
            "yes" if n.leads and state(n, local) == "alive" else "",
            str(n.workers),
            str(n.running),
            "-" if local and n.stopped_at is None else f"{max(n.seen_ago, 0):.0f} s ago",
            clock.iso(n.started_at) or "-",
            n.address or "-",
        ]
        for n in found
    ]
    print_table(rows)
    return 0
