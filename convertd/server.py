"""Running the daemon: one process per data directory, signals, clean shutdown, request log."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import signal
from typing import IO

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from convertd import sdnotify
from convertd.api.state import API_KEY
from convertd.app import create_app
from convertd.config import Config
from convertd.files import DataDir

logger = logging.getLogger(__name__)


class AlreadyRunning(Exception):
    pass


class AccessLogger(AbstractAccessLogger):
    """One line per request: never the query string, which may carry ?api_key=."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        key = request.get(API_KEY)
        self.logger.info(
            "%s %s %s %d %dB %.1fms key=%s",
            request.remote,
            request.method,
            request.path,
            response.status,
            response.body_length,
            time * 1000,
            key.id if key is not None else "-",
        )


def lock_data_dir(data: DataDir) -> IO[str]:
    """Hold an exclusive lock on the data directory for as long as the process lives.

    Two daemons on one queue would each treat the other's running jobs as orphans.
    """
    data.root.mkdir(parents=True, exist_ok=True)
    handle = data.lock.open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise AlreadyRunning(f"another convertd is already serving {data.root}") from None
    return handle


async def serve(config: Config) -> None:
    lock = lock_data_dir(DataDir.of(config))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    app = create_app(config)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log_class=AccessLogger,
        access_log=logging.getLogger("convertd.access"),
        # Running jobs get their own grace period in the worker pool; requests get this.
        shutdown_timeout=5.0,
    )
    try:
        await runner.setup()
    except BaseException:
        await runner.cleanup()  # unwind whatever had started
        lock.close()
        raise
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        url = f"http://{_display_host(config.host)}:{_bound_port(runner, config.port)}/v1/"
        logger.info(
            "convertd listening on %s (data dir %s, %d workers)",
            url,
            config.data_dir,
            config.workers,
        )
        sdnotify.notify(config.notify_socket, f"READY=1\nSTATUS=listening on {url}")
        await stop.wait()
        sdnotify.notify(config.notify_socket, "STOPPING=1\nSTATUS=finishing running jobs")
        logger.info("stopping: no new jobs; running jobs get %.0f s", config.shutdown_grace_seconds)
    finally:
        await runner.cleanup()
        lock.close()
    logger.info("stopped")


def _display_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _bound_port(runner: web.AppRunner, default: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return default
