"""`convertd plans list|set`: the plans keys belong to, and their limits."""

from __future__ import annotations

import argparse
import json

from convertd.cli.common import print_table, runs_on_database
from convertd.store import keys
from convertd.store.db import Database


def _limit(text: str) -> int | None:
    if text.strip().lower() in {"unlimited", "none", "-"}:
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number or 'unlimited', got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError("a limit cannot be negative")
    return value


def _shown(value: int | None) -> str:
    return "unlimited" if value is None else str(value)


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    group = sub.add_parser("plans", parents=[common], help="list and change plans")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list", parents=[common], help="list plans", epilog="example: convertd plans list"
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    runs_on_database(listing, _list)
    change = actions.add_parser(
        "set",
        parents=[common],
        help="create or change a plan",
        epilog="example: convertd plans set basic --calls-per-day unlimited --calls-per-minute 30",
    )
    change.add_argument("name")
    change.add_argument(
        "--api", action=argparse.BooleanOptionalAction, default=None, help="API access on or off"
    )
    change.add_argument("--calls-per-day", type=_limit, default=keys.UNSET, metavar="N|unlimited")
    change.add_argument(
        "--calls-per-minute", type=_limit, default=keys.UNSET, metavar="N|unlimited"
    )
    runs_on_database(change, _set)


async def _list(db: Database, args: argparse.Namespace) -> int:
    plans = await keys.list_plans(db)
    if args.json:
        print(json.dumps([p.__dict__ for p in plans], indent=2))
        return 0
    rows = [["PLAN", "API", "CALLS/DAY", "CALLS/MINUTE"]]
    rows += [
        [
            p.name,
            "yes" if p.api_access else "no",
            _shown(p.calls_per_day),
            _shown(p.calls_per_minute),
        ]
        for p in plans
    ]
    print_table(rows)
    return 0


async def _set(db: Database, args: argparse.Namespace) -> int:
    plan = await keys.set_plan(
        db,
        args.name,
        api_access=args.api,
        calls_per_day=args.calls_per_day,
        calls_per_minute=args.calls_per_minute,
    )
    print(
        f"Plan {plan.name}: API {'on' if plan.api_access else 'off'}, "
        f"{_shown(plan.calls_per_day)} calls/day, "
        f"{_shown(plan.calls_per_minute)} calls/minute."
    )
    return 0
