"""`convertd webhooks list|deliveries`: who is told of what, and what their servers answered."""

from __future__ import annotations

import argparse
import json
from typing import Any

from convertd.cli.common import print_table, runs_on_database
from convertd.clock import iso
from convertd.store import webhooks
from convertd.store.db import Database


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    group = sub.add_parser(
        "webhooks", parents=[common], help="webhook subscriptions and their deliveries"
    )
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        parents=[common],
        help="subscriptions (POST /v2/webhooks and watch rules), with deliveries outstanding",
        epilog="example: convertd webhooks list --json",
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    runs_on_database(listing, _list)
    deliveries = actions.add_parser(
        "deliveries",
        parents=[common],
        help="recent deliveries, newest first: the answer and the next try",
        epilog="example: convertd webhooks deliveries --failed",
    )
    deliveries.add_argument("--failed", action="store_true", help="only those given up")
    deliveries.add_argument("--limit", type=int, default=50)
    deliveries.add_argument("--json", action="store_true", help="machine-readable output")
    runs_on_database(deliveries, _deliveries)


async def _list(db: Database, args: argparse.Namespace) -> int:
    found = await webhooks.list_all(db)
    if args.json:
        out = [
            {
                "id": w.id,
                "key_id": w.key_id,
                "url": w.url,
                "events": w.events,
                "rule": w.rule,
                "created_at": iso(w.created_at),
                "pending": pending,
                "failed": failed,
            }
            for w, pending, failed in found
        ]
        print(json.dumps(out, indent=2))
        return 0
    if not found:
        print("No webhooks yet: POST /v2/webhooks makes one, a watch rule's webhook_url another.")
    rows = [["ID", "KEY", "URL", "EVENTS", "FROM", "PENDING", "FAILED"]]
    for w, pending, failed in found:
        source = f"watch rule {w.rule}" if w.rule else "POST /v2/webhooks"
        key = str(w.key_id) if w.key_id is not None else "-"
        rows.append([w.id, key, w.url, ",".join(w.events), source, str(pending), str(failed)])
    if found:
        print_table(rows)
    print("Per-job URLs (webhook_url, callback) are listed by `convertd webhooks deliveries`.")
    return 0


def delivery_json(d: webhooks.Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "event_id": d.event_id,
        "event": d.event,
        "subject": d.task_id or d.job_id or (f"drop {d.drop_id}" if d.drop_id else None),
        "url": d.url,
        "webhook_id": d.webhook_id,
        "status": d.status,
        "attempts": d.attempts,
        "last_answer": d.last_answer,
        "last_at": iso(d.last_at),
        "next_at": iso(d.next_at),
        "created_at": iso(d.created_at),
    }


async def _deliveries(db: Database, args: argparse.Namespace) -> int:
    found = await webhooks.recent(db, failed_only=args.failed, limit=args.limit)
    if args.json:
        print(json.dumps([delivery_json(d) for d in found], indent=2))
        return 0
    if not found:
        print("No failed deliveries." if args.failed else "No deliveries yet.")
        return 0
    rows = [["ID", "EVENT", "SUBJECT", "URL", "STATUS", "TRIES", "LAST ANSWER", "NEXT TRY"]]
    for d in found:
        j = delivery_json(d)
        rows.append(
            [
                str(d.id),
                d.event,
                str(j["subject"] or ""),
                d.url[:60],
                d.status,
                str(d.attempts),
                (d.last_answer or "")[:50],
                j["next_at"] or "-",
            ]
        )
    print_table(rows)
    return 0
