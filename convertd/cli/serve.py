"""`convertd serve`: run the daemon."""

from __future__ import annotations

import argparse
import functools
import ipaddress
import logging
from pathlib import Path

from convertd import logs, loops
from convertd.cli.common import config_of
from convertd.cluster.storage import StorageMismatch
from convertd.config import DEFAULT_PORT, LOG_FORMATS
from convertd.drops.rules import RuleError
from convertd.files import StorageMissing

logger = logging.getLogger("convertd")


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
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
    serve.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="text lines, JSON lines, or the journal (default auto: the journal under systemd, "
        "else text)",
    )
    serve.set_defaults(run=run)
    worker = sub.add_parser(
        "worker",
        parents=[common],
        help="convert for other nodes: no API (several nodes on one PostgreSQL database)",
        description=(
            "Run workers that take jobs from the shared queue of the nodes that use --database, "
            "with the files in --storage, and serve no HTTP. Stop with SIGINT or SIGTERM."
        ),
        epilog=(
            "example: convertd worker --database postgresql://convertd@nas/convertd "
            "--storage /mnt/nas/convertd --workers 4"
        ),
    )
    worker.add_argument("--workers", type=int, help="conversion workers (default: CPU count)")
    worker.add_argument(
        "--log-format", choices=LOG_FORMATS, help="text lines, JSON lines, or the journal"
    )
    worker.set_defaults(run=functools.partial(run, role="worker"))


def run(args: argparse.Namespace, role: str = "serve") -> int:
    from convertd.server import AlreadyRunning, serve

    config = config_of(args)
    if role == "worker" and config.database is None:
        logger.error(
            "cannot start: a worker converts for other nodes, which share a PostgreSQL database: "
            "give it with --database (and the shared files with --storage)"
        )
        return 2
    logs.configure(
        config.log_format,
        journal_stream=config.journal_stream,
        journal_socket=config.journal_socket,
    )
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
        loops.run(serve(config, role), config.event_loop)
    except AlreadyRunning as exc:
        logger.error("%s", exc)
        return 1
    except (RuleError, StorageMismatch, StorageMissing, loops.LoopMissing) as exc:
        logger.error("cannot start: %s", exc)
        return 2
    except OSError as exc:
        logger.error("cannot start: %s", exc)
        return 1
    return 0
