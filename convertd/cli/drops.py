"""`convertd drops`: what the drop folders are waiting for, what they skip and why, recent drops."""

from __future__ import annotations

import argparse
import json
import os

from convertd.cli.common import config_of, runs_on_database
from convertd.drops.waiting import read_status
from convertd.files import DataDir
from convertd.store import drops
from convertd.store.db import Database


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    command = sub.add_parser(
        "drops",
        parents=[common],
        help="drop folders: files waiting, skipped (and why), recent drops",
        epilog="example: convertd drops --limit 100",
    )
    command.add_argument("--limit", type=int, default=30, help="recent drops to show")
    command.add_argument("--json", action="store_true", help="machine-readable output")
    runs_on_database(command, _show)


async def _show(db: Database, args: argparse.Namespace) -> int:
    status = read_status(DataDir.of(config_of(args)).drops_status)
    state = status or {}
    recent = await drops.recent(db, args.limit)
    if args.json:
        state["recent"] = [
            {
                "id": d.id,
                "rule": d.rule,
                "file": d.display_name,
                "status": d.status,
                "job_id": d.job_id,
                "error": d.error,
                "output": os.fsdecode(d.output_path) if d.output_path else None,
            }
            for d in recent
        ]
        print(json.dumps(state, indent=2))
        return 0
    print("Waiting:" if state.get("waiting") else "Waiting: none")
    for w in state.get("waiting", []):
        print(f"  {w['path']}  ({w['reason']}, {w['waiting_seconds']} s)")
    print("Skipped:" if state.get("skipped") else "Skipped: none")
    for k in state.get("skipped", []):
        print(f"  {k['path']}  ({k['reason']})")
    print("Recent drops:" if recent else "Recent drops: none")
    for d in recent:
        detail = d.error or (os.fsdecode(d.output_path) if d.output_path else d.job_id or "")
        print(f"  {d.status:10} {d.display_name}  {detail}")
    if status is None:
        print("(no status from a running daemon: is `convertd serve` running on this data dir?)")
    return 0
