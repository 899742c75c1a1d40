"""`convertd keys create|list|set|revoke|rotate-webhook-secret`: API keys, made and revoked on the
live database."""

from __future__ import annotations

import argparse
import json
from typing import Any

from convertd.cli.common import config_of, print_table, runs_on_database
from convertd.clock import iso
from convertd.cluster.node import LEASE_SECONDS
from convertd.store import keys, nodes
from convertd.store.db import Database


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    group = sub.add_parser(
        "keys", parents=[common], help="create, list, change and revoke API keys"
    )
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create",
        parents=[common],
        help="create a key and print it once",
        epilog="example: convertd keys create --name nas --restrict ip --allow 10.0.0.0/24",
    )
    create.add_argument("--name", required=True, help="a label for the key")
    create.add_argument("--plan", default="basic", help="plan name (default basic)")
    create.add_argument(
        "--restrict", choices=("ip", "domain"), help="lock the key to IPs or domains"
    )
    # Several values after one flag (`--allow 10.0.0.1 10.0.0.2`, as the README's synopsis has
    # it) or the flag repeated: "extend" adds each flag's values to the list.
    create.add_argument(
        "--allow",
        action="extend",
        nargs="+",
        default=[],
        metavar="VALUE",
        help="allowed IPs/CIDRs or domains",
    )
    create.add_argument(
        "--scope",
        action="extend",
        nargs="+",
        default=[],
        choices=keys.GRANTABLE,
        metavar="SCOPE",
        help=f"grant only these scopes (default: all of {', '.join(keys.SCOPES)}; "
        f"{keys.METRICS_SCOPE} for GET /metrics and {keys.ADMIN_SCOPE} are only ever granted "
        "by name)",
    )
    create.add_argument(
        "--admin",
        action="store_true",
        help=f"an admin key: the {keys.ADMIN_SCOPE} scope on top of the others, for what only "
        "the server's admin may see (the drop folders, GET /v2/drops)",
    )
    runs_on_database(create, _create)
    listing = actions.add_parser(
        "list",
        parents=[common],
        help="list keys (never the secrets)",
        epilog="example: convertd keys list --json",
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    runs_on_database(listing, _list)
    change = actions.add_parser(
        "set",
        parents=[common],
        help="move a key to another plan, or change its restriction, scopes or name",
        epilog="examples: convertd keys set 3 --plan pro\n"
        "          convertd keys set 3 --restrict domain --allow example.com\n"
        "          convertd keys set 3 --restrict all   (lift the restriction)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    change.add_argument("key_id", type=int, help="the key's id (in `convertd keys list`)")
    change.add_argument("--plan", help="the plan it moves to (`convertd plans list`)")
    change.add_argument("--name", help="a new label")
    change.add_argument(
        "--restrict",
        choices=("all", "ip", "domain"),
        help="lock the key to IPs or domains, or `all` to lift the lock",
    )
    change.add_argument(
        "--allow",
        action="extend",
        nargs="+",
        metavar="VALUE",
        help="allowed IPs/CIDRs or domains (replaces the key's list)",
    )
    change.add_argument(
        "--scope",
        action="extend",
        nargs="+",
        choices=keys.GRANTABLE,
        metavar="SCOPE",
        help="the scopes it has from now on (replaces the key's list)",
    )
    change.add_argument(
        "--admin",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"grant (--admin) or take away (--no-admin) the {keys.ADMIN_SCOPE} scope",
    )
    runs_on_database(change, _set)
    revoke = actions.add_parser(
        "revoke",
        parents=[common],
        help="revoke a key by id",
        epilog="example: convertd keys revoke 3   (ids are in `convertd keys list`)",
    )
    revoke.add_argument("key_id", type=int)
    runs_on_database(revoke, _revoke)
    rotate = actions.add_parser(
        "rotate-webhook-secret",
        parents=[common],
        help="replace the secret that signs a key's per-job webhooks",
        epilog="example: convertd keys rotate-webhook-secret 3",
    )
    rotate.add_argument("key_id", type=int)
    runs_on_database(rotate, _rotate)


def key_json(key: keys.ApiKey) -> dict[str, Any]:
    return {
        **keys.describe(key),
        "prefix": key.prefix,
        "scopes": list(key.scopes),
        "revoked_at": iso(key.revoked_at),
    }


async def _create(db: Database, args: argparse.Namespace) -> int:
    key, secret = await keys.create_key(
        db, args.name, args.plan, args.restrict or "all", args.allow, args.scope, admin=args.admin
    )
    print(f"Created {_summary(key)}.")
    print("Its per-job webhooks (webhook_url, callback) and watch rules' are signed with:")
    print(f"webhook_secret: {key.webhook_secret}")
    print("Copy the key now: it is stored only as a hash and cannot be shown again.")
    # Before the key, which stays the last line: scripts read it with `tail -n 1`.
    pages = [f"{config_of(args).base_url}/"]
    if db.shared:  # several nodes: those serving the API, as they say
        live = await nodes.listed(db, LEASE_SECONDS)
        pages = [f"{n.address}/" for n in live if n.address] or pages
    print(f"Open {' or '.join(pages)} in a browser and paste this key there:")
    print(secret)
    return 0


def _summary(key: keys.ApiKey) -> str:
    allowed = key.allowed_ips or key.allowed_domains
    return (
        f"key {key.id} ({key.name!r}, plan {key.plan.name}, restriction "
        f"{key.restriction_type}{': ' + ', '.join(allowed) if allowed else ''}, "
        f"scopes {' '.join(key.scopes)})"
    )


async def _set(db: Database, args: argparse.Namespace) -> int:
    key, changed = await keys.change_key(
        db,
        args.key_id,
        name=args.name,
        plan=args.plan,
        restriction_type=args.restrict,
        allowed=args.allow,
        scopes=args.scope,
        admin=args.admin,
    )
    if not changed:
        print(f"Nothing changed: key {key.id} {_as_asked(key, args)}.")
        return 0
    print(f"Changed {_summary(key)}; the daemon applies it at the key's next request.")
    return 0


def _as_asked(key: keys.ApiKey, args: argparse.Namespace) -> str:
    """What `keys set` asked of a key that was already so, in those terms."""
    said = [f"on plan {key.plan.name}"] if args.plan is not None else []
    if args.name is not None:
        said.append(f"named {key.name!r}")
    if args.restrict is not None or args.allow is not None:
        allowed = key.allowed_ips or key.allowed_domains
        said.append(
            f"restricted to {key.restriction_type}: {', '.join(allowed)}"
            if allowed
            else "unrestricted"
        )
    parts = [f"is already {', '.join(said)}"] if said else []
    if args.scope is not None or args.admin is not None:
        parts.append(f"already has the scopes {' '.join(key.scopes)}")
    return " and ".join(parts)


async def _list(db: Database, args: argparse.Namespace) -> int:
    found = await keys.list_keys(db)
    if args.json:
        print(json.dumps([key_json(k) for k in found], indent=2))
        return 0
    rows = [
        ["ID", "NAME", "PREFIX", "PLAN", "RESTRICTION", "SCOPES", "CALLS", "LAST USED", "STATE"]
    ]
    for k in found:
        restriction = k.restriction_type
        if k.allowed_ips or k.allowed_domains:
            restriction += ":" + ",".join(k.allowed_ips or k.allowed_domains)
        rows.append(
            [
                str(k.id),
                k.name,
                k.prefix + "…",
                k.plan.name,
                restriction,
                _scopes(k.scopes),
                str(k.usage_count),
                iso(k.last_used_at) or "never",
                "revoked" if k.revoked_at else "active",
            ]
        )
    print_table(rows)
    return 0


def _scopes(scopes: tuple[str, ...]) -> str:
    """`all` for CloudConvert's six, then any others by name (`all,admin`)."""
    if not set(keys.SCOPES) <= set(scopes):
        return ",".join(scopes)
    return ",".join(["all", *(s for s in scopes if s not in keys.SCOPES)])


async def _revoke(db: Database, args: argparse.Namespace) -> int:
    key = await keys.revoke_key(db, args.key_id)
    print(f"Revoked key {key.id} ({key.name!r}); it stops working at once.")
    for rule in config_of(args).watch_rules:
        if rule.webhook_key == key.id:
            print(
                f"Watch rule {rule.name!r} names it as its webhook_key: its webhooks are still "
                "signed with this key's webhook secret until the rule names another key."
            )
    return 0


async def _rotate(db: Database, args: argparse.Namespace) -> int:
    secret = await keys.rotate_webhook_secret(db, args.key_id)
    print(f"Key {args.key_id}'s webhooks are signed from now on (unsent ones too) with:")
    print(f"webhook_secret: {secret}")
    return 0
