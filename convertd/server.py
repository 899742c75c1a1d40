"""Running the daemon: one process per data directory, signals, clean shutdown, request log."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import resource
import signal
import sys
from http import HTTPStatus
from typing import IO

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from convertd import logs, loops, memory, sdnotify
from convertd.api.errors import json_error
from convertd.api.request_ids import HEADER as REQUEST_ID_HEADER
from convertd.api.request_ids import JOB_ID, request_id_of
from convertd.api.state import API_KEY
from convertd.app import create_app
from convertd.config import Config
from convertd.files import DataDir
from convertd.leading import NODE
from convertd.store.db import shown

logger = logging.getLogger(__name__)


class AlreadyRunning(Exception):
    pass


# What aiohttp's HTTP parser refuses (a missing Host, a URL or header over 8 KiB, a bad
# Content-Length) never reaches the app and its error middleware: aiohttp answers it itself, in
# text/plain, and logs a traceback that may quote the request line (a key in ?api_key= too).
# These two subclasses make it answer with the JSON error body and log one line without the
# request. They lean on aiohttp internals (Server.__call__, AppRunner._make_server);
# tests/hostile/test_inputs.py::test_malformed_http_gets_the_json_error_body watches them.
PARSER_HINT = "Send well-formed HTTP: a Host header, and lines under 8 KiB."


class _ApiRequestHandler(RequestHandler):
    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError) or status >= 500:
            return super().handle_error(request, status, exc, message)
        request_id = request_id_of(request)
        logger.info(
            "refused a malformed request from %s: %s (%d)",
            request.remote,
            type(exc).__name__,
            status,
            extra={"request_id": request_id},
        )
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Bad Request"
        response = json_error(status, reason, "The request is not valid HTTP.", PARSER_HINT)
        response.headers[REQUEST_ID_HEADER] = request_id
        response.force_close()
        return response


class _ApiServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _ApiRequestHandler(self, loop=self._loop, **self._kwargs)


class ApiRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _ApiServer
        return server


ACCESS_LINE = "%s %s %s %d %dB %.1fms key=%s"


class AccessLogger(AbstractAccessLogger):
    """One line per request: never the query string, which may carry ?api_key=. It names the
    request's id and the key's id and name (never the key)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        key = request.get(API_KEY)
        context: dict[str, object] = {"request_id": request_id_of(request)}
        if key is not None:
            context |= {"key_name": key.name, "key_id": key.id}
        if (job_id := request.get(JOB_ID)) is not None:
            context["job_id"] = job_id
        # The record made as logger.info() would make it, minus the stack walk that finds its
        # caller (always this line): a tenth of the line's cost, on every request.
        if not self.logger.isEnabledFor(logging.INFO):
            return
        args = (
            request.remote,
            request.method,
            request.path,
            response.status,
            body_bytes(request, response),
            time * 1000,
            key.id if key is not None else "-",
        )
        line = sys._getframe().f_lineno
        record = self.logger.makeRecord(
            self.logger.name, logging.INFO, __file__, line, ACCESS_LINE, args, None, "log", context
        )
        self.logger.handle(record)


def body_bytes(request: web.BaseRequest, response: web.StreamResponse) -> int:
    """The body's size: its Content-Length when it has one (a file sent with sendfile()
    bypasses the writer's count), else what was written (a stream's, headers included)."""
    if request.method == "HEAD":
        return 0
    if response.content_length is not None:
        return response.content_length
    return response.body_length


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


def raise_open_files_limit() -> None:
    """Every held request (`?wait=`, /sync/v2, an event stream) is an open socket: take the hard
    limit, since the soft one is often 1,024 (systemd's default) and a thousand waiters would
    exhaust it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1_048_576 if hard == resource.RLIM_INFINITY else hard
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def serve(config: Config, role: str = "serve") -> None:
    """Run the daemon until SIGINT or SIGTERM; with role "worker", a node that converts for
    the others and serves no HTTP (`convertd worker`)."""
    raise_open_files_limit()
    memory.limit_arenas()
    lock = lock_data_dir(DataDir.of(config))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    app = create_app(config, role=role)
    runner = ApiRunner(
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
        if role == "worker":
            url = "no API (a worker node)"
            logger.info(
                "convertd worker converting for %s (data dir %s, %s, %s loop)",
                shown(DataDir.of(config).database),
                config.data_dir,
                logs.counted(config.workers, "worker"),
                loops.name(loop),
            )
        else:
            site = web.TCPSite(runner, config.host, config.port)
            await site.start()
            url = f"http://{_display_host(config.host)}:{_bound_port(runner, config.port)}/v1/"
            await app[NODE].listening(url.removesuffix("/v1/"))
            logger.info(
                "convertd listening on %s and %sv2/ (data dir %s, %s, %s loop)",
                url,
                url.removesuffix("v1/"),
                config.data_dir,
                logs.counted(config.workers, "worker"),
                loops.name(loop),
            )
        # MAINPID: the single-file executable's bootloader is the process systemd started;
        # this one, its child, is the daemon it should watch and signal (NotifyAccess=all).
        sdnotify.notify(
            config.notify_socket, f"READY=1\nMAINPID={os.getpid()}\nSTATUS=listening on {url}"
        )
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
