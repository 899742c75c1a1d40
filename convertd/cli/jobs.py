"""`convertd jobs list|show`: the job queue as the database holds it."""

from __future__ import annotations

import argparse
import json
from typing import Any

from convertd.cli.common import fail, print_table, runs_on_database
from convertd.clock import iso
from convertd.store import job_lists, jobs
from convertd.store.db import Database


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    group = sub.add_parser("jobs", parents=[common], help="inspect the job queue")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        parents=[common],
        help="recent jobs, newest first",
        epilog="example: convertd jobs list --status failed --limit 20",
    )
    listing.add_argument("--status", choices=[s.value for s in jobs.Status])
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    runs_on_database(listing, _list)
    show = actions.add_parser(
        "show",
        parents=[common],
        help="one job in full",
        epilog="example: convertd jobs show 3f2a...-uuid",
    )
    show.add_argument("job_id")
    runs_on_database(show, _show)


def job_json(job: jobs.Job) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "key_id": job.key_id,
        "status": job.status.value,
        "filetype": job.filetype,
        "input_format": job.input_format,
        "output_format": job.output_format,
        "options": job.options,
        "attempts": job.attempts,
        "node": job.node,
        "progress": job.progress,
        "error": job.error,
        "result_name": job.result_name,
        "result_count": job.result_count,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "expired": job.expired,
    }


async def _list(db: Database, args: argparse.Namespace) -> int:
    found = await job_lists.recent(db, args.status, args.limit)
    if args.json:
        print(json.dumps([job_json(j) for j in found], indent=2))
        return 0
    rows = [["JOB", "STATUS", "CONVERSION", "CREATED", "DETAIL"]]
    for j in found:
        detail = j.error or j.result_name or ""
        rows.append(
            [
                j.id,
                j.status.value,
                f"{j.filetype} {j.input_format}->{j.output_format}",
                iso(j.created_at) or "",
                detail[:60],
            ]
        )
    print_table(rows)
    return 0


async def _show(db: Database, args: argparse.Namespace) -> int:
    job = await jobs.get(db, args.job_id)
    if job is None:
        return fail(f"no job with id {args.job_id}")
    print(json.dumps(job_json(job), indent=2))
    return 0
