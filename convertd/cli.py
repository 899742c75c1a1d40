"""The `convertd` command: the daemon and its admin tools. The only module that prints."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from convertd import __version__, jobs, keys
from convertd.clock import iso
from convertd.config import DEFAULT_PORT, Config, ConfigError, load_config
from convertd.converters import archive
from convertd.db import Database, SchemaTooNew
from convertd.droprules import RuleError

logger = logging.getLogger("convertd")

EPILOG = f"""examples:
  convertd serve                                  start on 127.0.0.1:{DEFAULT_PORT}
  convertd keys create --name laptop              make an API key (shown once)
  convertd keys create --name web --restrict domain --allow example.com
  convertd plans set basic --calls-per-minute 120
  curl -H "X-API-Key: $KEY" -F file=@photo.png -F filetype=image \\
       -F output_format=webp http://127.0.0.1:{DEFAULT_PORT}/v1/convert
"""


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convertd",
        description="A self-hosted file conversion daemon with a SkyConvert-compatible v1 API.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"convertd {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir", type=Path, help="where the database and files live (env CONVERTD_DATA_DIR)"
    )
    common.add_argument("--config", type=Path, help="TOML config file (env CONVERTD_CONFIG)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser(
        "serve",
        parents=[common],
        help="run the daemon",
        description="Run the API server and the workers until SIGINT or SIGTERM.",
        epilog="example: convertd serve --port 8470 --workers 2",
    )
    serve.add_argument("--host", help="address to bind (default 127.0.0.1; others are explicit)")
    serve.add_argument("--port", type=int, help=f"port to listen on (default {DEFAULT_PORT})")
    serve.add_argument("--workers", type=int, help="conversion workers (default: CPU count)")
    serve.add_argument(
        "--drop-root", type=Path, help="where inbox/, outbox/, processed/, failed/ live"
    )

    keys_cmd = sub.add_parser("keys", help="create, list and revoke API keys")
    keys_sub = keys_cmd.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = keys_sub.add_parser(
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
    create.add_argument(
        "--allow", action="append", default=[], metavar="VALUE", help="an allowed IP/CIDR or domain"
    )
    list_keys = keys_sub.add_parser(
        "list",
        parents=[common],
        help="list keys (never the secrets)",
        epilog="example: convertd keys list --json",
    )
    list_keys.add_argument("--json", action="store_true", help="machine-readable output")
    revoke = keys_sub.add_parser(
        "revoke",
        parents=[common],
        help="revoke a key by id",
        epilog="example: convertd keys revoke 3   (ids are in `convertd keys list`)",
    )
    revoke.add_argument("key_id", type=int)

    plans_cmd = sub.add_parser("plans", help="list and change plans")
    plans_sub = plans_cmd.add_subparsers(dest="action", metavar="ACTION", required=True)
    list_plans = plans_sub.add_parser(
        "list", parents=[common], help="list plans", epilog="example: convertd plans list"
    )
    list_plans.add_argument("--json", action="store_true", help="machine-readable output")
    set_plan = plans_sub.add_parser(
        "set",
        parents=[common],
        help="create or change a plan",
        epilog="example: convertd plans set basic --calls-per-day unlimited --calls-per-minute 30",
    )
    set_plan.add_argument("name")
    set_plan.add_argument(
        "--api", action=argparse.BooleanOptionalAction, default=None, help="API access on or off"
    )
    set_plan.add_argument(
        "--calls-per-day", type=_limit, default=keys._UNSET, metavar="N|unlimited"
    )
    set_plan.add_argument(
        "--calls-per-minute", type=_limit, default=keys._UNSET, metavar="N|unlimited"
    )

    convert = sub.add_parser(
        "convert",
        parents=[common],
        help="convert local files directly, no server needed",
        description="Convert files with the same converters the daemon uses. Results go "
        "beside each input (or into -o), never over an existing file.",
        epilog="examples:\n"
        "  convertd convert report.docx --to pdf\n"
        "  convertd convert *.png --to webp --options '{\"quality\": 80}' -o small/\n"
        "  convertd convert talk.mp4 --to mp3",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    convert.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    convert.add_argument("--to", required=True, metavar="FORMAT", help="output format")
    convert.add_argument("--options", default="{}", metavar="JSON", help="converter options")
    convert.add_argument("--filetype", help="force a converter (image, audio, ...)")
    convert.add_argument("-o", "--output", type=Path, help="output file, or folder")
    convert.add_argument("--json", action="store_true", help="machine-readable summary")

    doctor = sub.add_parser(
        "doctor",
        parents=[common],
        help="check tools, data dir, database and port",
        description="Check what convertd needs, and say how to fix what is missing.",
        epilog="example: convertd doctor --port 9000",
    )
    doctor.add_argument("--host", help="address serve would bind")
    doctor.add_argument("--port", type=int, help="port serve would bind")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    formats = sub.add_parser(
        "formats",
        parents=[common],
        help="what this machine can convert, by filetype",
        epilog="example: convertd formats --json",
    )
    formats.add_argument("--json", action="store_true", help="machine-readable output")

    drops_cmd = sub.add_parser(
        "drops",
        parents=[common],
        help="drop folders: files waiting, skipped (and why), recent drops",
        epilog="example: convertd drops --limit 100",
    )
    drops_cmd.add_argument("--limit", type=int, default=30, help="recent drops to show")
    drops_cmd.add_argument("--json", action="store_true", help="machine-readable output")

    jobs_cmd = sub.add_parser("jobs", help="inspect the job queue")
    jobs_sub = jobs_cmd.add_subparsers(dest="action", metavar="ACTION", required=True)
    list_jobs = jobs_sub.add_parser(
        "list",
        parents=[common],
        help="recent jobs, newest first",
        epilog="example: convertd jobs list --status failed --limit 20",
    )
    list_jobs.add_argument("--status", choices=[s.value for s in jobs.Status])
    list_jobs.add_argument("--limit", type=int, default=50)
    list_jobs.add_argument("--json", action="store_true", help="machine-readable output")
    show_job = jobs_sub.add_parser(
        "show",
        parents=[common],
        help="one job in full",
        epilog="example: convertd jobs show 3f2a...-uuid",
    )
    show_job.add_argument("job_id")
    return parser


def _config(args: argparse.Namespace) -> Config:
    overrides = {
        name: getattr(args, name, None)
        for name in ("data_dir", "host", "port", "workers", "drop_root")
    }
    return load_config(config_path=args.config, overrides=overrides)


def _with_db(config: Config, action: Callable[[Database], Awaitable[int]]) -> int:
    async def run() -> int:
        db = await Database.open(config.db_path)
        try:
            return await action(db)
        finally:
            await db.close()

    return asyncio.run(run())


def _fmt_limit(value: int | None) -> str:
    return "unlimited" if value is None else str(value)


def _key_json(key: keys.ApiKey) -> dict[str, Any]:
    return {**keys.describe(key), "prefix": key.prefix, "revoked_at": iso(key.revoked_at)}


def _print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


async def _keys_create(db: Database, args: argparse.Namespace) -> int:
    key, secret = await keys.create_key(
        db, args.name, args.plan, args.restrict or "all", args.allow
    )
    allowed = key.allowed_ips or key.allowed_domains
    print(
        f"Created key {key.id} ({key.name!r}, plan {key.plan.name}, restriction "
        f"{key.restriction_type}{': ' + ', '.join(allowed) if allowed else ''})."
    )
    print("Copy it now: it is stored only as a hash and cannot be shown again.")
    print(secret)
    return 0


async def _keys_list(db: Database, args: argparse.Namespace) -> int:
    found = await keys.list_keys(db)
    if args.json:
        print(json.dumps([_key_json(k) for k in found], indent=2))
        return 0
    rows = [["ID", "NAME", "PREFIX", "PLAN", "RESTRICTION", "CALLS", "LAST USED", "STATE"]]
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
                str(k.usage_count),
                iso(k.last_used_at) or "never",
                "revoked" if k.revoked_at else "active",
            ]
        )
    _print_table(rows)
    return 0


async def _keys_revoke(db: Database, args: argparse.Namespace) -> int:
    key = await keys.revoke_key(db, args.key_id)
    print(f"Revoked key {key.id} ({key.name!r}); it stops working at once.")
    return 0


async def _plans_list(db: Database, args: argparse.Namespace) -> int:
    plans = await keys.list_plans(db)
    if args.json:
        print(json.dumps([p.__dict__ for p in plans], indent=2))
        return 0
    rows = [["PLAN", "API", "CALLS/DAY", "CALLS/MINUTE"]]
    rows += [
        [
            p.name,
            "yes" if p.api_access else "no",
            _fmt_limit(p.calls_per_day),
            _fmt_limit(p.calls_per_minute),
        ]
        for p in plans
    ]
    _print_table(rows)
    return 0


async def _plans_set(db: Database, args: argparse.Namespace) -> int:
    plan = await keys.set_plan(
        db,
        args.name,
        api_access=args.api,
        calls_per_day=args.calls_per_day,
        calls_per_minute=args.calls_per_minute,
    )
    print(
        f"Plan {plan.name}: API {'on' if plan.api_access else 'off'}, "
        f"{_fmt_limit(plan.calls_per_day)} calls/day, "
        f"{_fmt_limit(plan.calls_per_minute)} calls/minute."
    )
    return 0


def _job_json(job: jobs.Job) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "key_id": job.key_id,
        "status": job.status.value,
        "filetype": job.filetype,
        "input_format": job.input_format,
        "output_format": job.output_format,
        "options": job.options,
        "attempts": job.attempts,
        "progress": job.progress,
        "error": job.error,
        "result_name": job.result_name,
        "result_count": job.result_count,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "expired": job.expired,
    }


async def _jobs_list(db: Database, args: argparse.Namespace) -> int:
    found = await jobs.list_recent(db, args.status, args.limit)
    if args.json:
        print(json.dumps([_job_json(j) for j in found], indent=2))
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
    _print_table(rows)
    return 0


async def _jobs_show(db: Database, args: argparse.Namespace) -> int:
    job = await jobs.get(db, args.job_id)
    if job is None:
        print(f"convertd: no job with id {args.job_id}", file=sys.stderr)
        return 1
    print(json.dumps(_job_json(job), indent=2))
    return 0


async def _drops(db: Database, args: argparse.Namespace, config: Config) -> int:
    from convertd import drops

    status_file = config.data_dir / "drops-status.json"
    state = json.loads(status_file.read_text()) if status_file.exists() else {}
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
    if not status_file.exists():
        print("(no status from a running daemon: is `convertd serve` running on this data dir?)")
    return 0


ADMIN_ACTIONS: dict[tuple[str, str], Callable[[Database, argparse.Namespace], Awaitable[int]]] = {
    ("keys", "create"): _keys_create,
    ("keys", "list"): _keys_list,
    ("keys", "revoke"): _keys_revoke,
    ("plans", "list"): _plans_list,
    ("plans", "set"): _plans_set,
    ("jobs", "list"): _jobs_list,
    ("jobs", "show"): _jobs_show,
}


def _convert(config: Config, args: argparse.Namespace) -> int:
    from convertd.local import Outcome, convert_files

    try:
        options = json.loads(args.options)
    except json.JSONDecodeError:
        options = None
    if not isinstance(options, dict):
        print(
            "convertd: --options must be a JSON object, e.g. '{\"quality\": 80}'", file=sys.stderr
        )
        return 2
    if len(args.inputs) > 1 and args.output is not None and not args.output.is_dir():
        print("convertd: with several inputs, -o must be an existing folder", file=sys.stderr)
        return 2
    interactive = sys.stderr.isatty() and not args.json

    def progress(source: Path, percent: int) -> None:
        if interactive:
            print(f"\r  {source.name}: {percent:3d}%", end="", file=sys.stderr, flush=True)

    def done(outcome: Outcome, n: int, total: int) -> None:
        if args.json:
            return
        if interactive:
            print("\r\033[K", end="", file=sys.stderr)
        if outcome.error:
            print(f"[{n}/{total}] {outcome.source}: failed: {outcome.error}", file=sys.stderr)
        else:
            print(f"[{n}/{total}] {outcome.source} -> {outcome.output} ({outcome.seconds:.1f} s)")

    outcomes = asyncio.run(
        convert_files(
            config, args.inputs, args.to, options, args.filetype, args.output, progress, done
        )
    )
    failed = [o for o in outcomes if o.error]
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "input": str(o.source),
                        "output": str(o.output) if o.output else None,
                        "error": o.error,
                        "seconds": round(o.seconds, 3),
                    }
                    for o in outcomes
                ],
                indent=2,
            )
        )
    else:
        print(f"{len(outcomes) - len(failed)} converted, {len(failed)} failed", file=sys.stderr)
    return 1 if failed else 0


def _doctor(config: Config, as_json: bool) -> int:
    from convertd.doctor import run_checks

    checks = run_checks(config)
    if as_json:
        print(json.dumps([c.__dict__ for c in checks], indent=2))
    else:
        for c in checks:
            mark = "ok " if c.ok else ("FAIL" if c.required else "warn")
            print(f"[{mark}] {c.name:16} {c.detail}")
            if not c.ok and c.fix:
                print(f"       fix: {c.fix}")
    return 0 if all(c.ok for c in checks if c.required) else 1


def _formats(config: Config, as_json: bool) -> int:
    from convertd.converters.registry import default_registry
    from convertd.files import DataDir
    from convertd.office import OfficePool

    office = OfficePool(DataDir(config.data_dir).office, 1)
    registry = default_registry(office)
    table = registry.formats()
    if as_json:
        print(json.dumps(table, indent=2))
        return 0
    for filetype, entry in table.items():
        print(f"{filetype}")
        print(f"  in:  {', '.join(entry['input_formats'])}")
        print(f"  out: {', '.join(entry['output_formats'])}")
        if entry["options"]:
            print(f"  options: {', '.join(entry['options'])}")
    for converter in registry.unavailable():
        print(
            f"{converter.filetype}: unavailable, needs {', '.join(converter.missing_tools())}"
            " (see `convertd doctor`)"
        )
    return 0


def _setup_logging() -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # watchfiles logs every batch of events; our own lines say what was taken.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)


def _serve(config: Config) -> int:
    from convertd.server import AlreadyRunning, serve

    try:
        host_is_loopback = ipaddress.ip_address(config.host).is_loopback
    except ValueError:
        host_is_loopback = config.host == "localhost"
    if not host_is_loopback:
        logger.warning(
            "listening on %s: reachable from other machines; every key's restrictions apply",
            config.host,
        )
    try:
        asyncio.run(serve(config))
    except AlreadyRunning as exc:
        logger.error("%s", exc)
        return 1
    except RuleError as exc:
        logger.error("cannot start: %s", exc)
        return 2
    except OSError as exc:
        logger.error("cannot start: %s", exc)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [archive.WORKER_COMMAND]:
        return archive.worker_main()  # the daemon's own child; not a command for people
    args = _parser().parse_args(argv)
    _setup_logging()
    try:
        config = _config(args)
        if args.command == "serve":
            return _serve(config)
        if args.command == "convert":
            return _convert(config, args)
        if args.command == "doctor":
            return _doctor(config, args.json)
        if args.command == "formats":
            return _formats(config, args.json)
        if args.command == "drops":
            return _with_db(config, lambda db: _drops(db, args, config))
        action = ADMIN_ACTIONS[(args.command, args.action)]
        return _with_db(config, lambda db: action(db, args))
    except (ConfigError, keys.AdminError, SchemaTooNew) as exc:
        print(f"convertd: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
