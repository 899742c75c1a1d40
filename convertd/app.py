"""The application factory: state, resource lifecycle in order, routes and middlewares.

Each resource is one `cleanup_ctx` entry, started in this order and stopped in reverse:
database (migrate, recover jobs) -> this node (its row, the relay of changes) -> systemd
watchdog -> presets (the watch rules' applied) -> call counter -> LibreOffice -> conversion
runner -> worker pool -> the leader's services (leading.py: webhook sender, task engine (/v2),
drop folders, retention sweep), started last, once this node leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Middleware

from convertd import __version__
from convertd.api.auth import auth_middleware
from convertd.api.cors import add_cors_headers, cors_middleware
from convertd.api.errors import error_middleware
from convertd.api.health import PROBE, TRANSITIONS, DatabaseProbe, Transitions
from convertd.api.health import ROUTES as HEALTH_ROUTES
from convertd.api.limits import add_rate_limit_headers
from convertd.api.metrics import ROUTES as METRICS_ROUTES
from convertd.api.metrics import metrics_middleware
from convertd.api.request_ids import add_request_id_header, request_id_middleware
from convertd.api.routes import add_routes
from convertd.api.state import (
    CALLS,
    CHANGES,
    CONFIG,
    DATA,
    DB,
    METRICS,
    POOL,
    PRESETS,
    READS,
    REGISTRY,
    RULES,
    SIGNER,
    WAITING,
)
from convertd.api.v1.routes import ROUTES as V1_ROUTES
from convertd.api.v2.routes import ROUTES as V2_ROUTES
from convertd.api.web import ROUTES as WEB_ROUTES
from convertd.browser.chromium import CAPTURE_MAX_BYTES, Chromium
from convertd.changes import Changes
from convertd.cluster import storage
from convertd.cluster.leader import Leadership
from convertd.cluster.node import NodeLife
from convertd.cluster.relay import Relay
from convertd.config import Config, ConfigError
from convertd.converters.base import Limits
from convertd.converters.registry import FILETYPES, Registry, default_registry
from convertd.converters.run import Runner
from convertd.drops.checks import build_rules, with_presets
from convertd.drops.rules import PIPELINE, preset_users
from convertd.drops.waiting import Waiting
from convertd.events.outside import SWEEP_SECONDS, OutsideEnds
from convertd.fetch import Policy, parse_networks
from convertd.files import DataDir
from convertd.leading import (
    BROWSER,
    LEADER,
    NODE,
    OFFICE,
    ROLE,
    drop_folders,
    leadership,
    retention_sweep,
    task_engine,
    webhook_sender,
)
from convertd.metrics import Metrics
from convertd.office.pool import OfficePool
from convertd.periodic import Periodic
from convertd.presets import PresetError
from convertd.signing import Signer
from convertd.store import jobs
from convertd.store.cache import ReadCache
from convertd.store.engines import open_database
from convertd.store.migrations import SCHEMA_VERSION
from convertd.store.quotas import FLUSH_SECONDS, call_counter
from convertd.tasks.parameters import ENGINE_WORK
from convertd.tasks.presets import Presets
from convertd.watchdog import Watchdog
from convertd.worker import WorkerPool

logger = logging.getLogger(__name__)

RUNNER = web.AppKey("runner", Runner)


async def _database(app: web.Application) -> AsyncIterator[None]:
    config, data = app[CONFIG], app[DATA]
    data.ensure_local()
    db = await open_database(data.database)
    app[DB] = db
    app[READS] = ReadCache(db)
    try:
        if db.shared:  # before anything is written there: is it the others' folder?
            await storage.check(db, data)
        data.ensure_storage()
        app[SIGNER] = Signer.load(data.signing_key)
    except BaseException:
        await db.close()
        raise
    if not db.shared:
        # The one node of this database (the data dir's lock says so): whatever was running
        # was its own. Shared, a node's jobs are taken back once it is not seen (cluster/node.py).
        requeued, failed = await jobs.recover_orphans(db, config.max_attempts)
        if requeued or failed:
            logger.info("recovered %d interrupted job(s); %d gave up", requeued, failed)
    yield
    await db.close()


async def _node(app: web.Application) -> AsyncIterator[None]:
    """This process in the nodes table, alive; what other nodes announce, heard here; and the
    work one node does for all, led by one (cluster/)."""
    config = app[CONFIG]
    role = app[ROLE]
    # Its address comes once it listens (server.py): the port may be chosen then.
    life = await NodeLife(app[DB], role=role, workers=config.workers).start(config.max_attempts)
    app[NODE] = life
    relay = await Relay(app[DB], life.id, app[CHANGES]).start()
    app[LEADER] = Leadership(app[DB], life.id)
    yield
    await relay.stop()
    await life.stop()


async def _watchdog(app: web.Application) -> AsyncIterator[None]:
    """systemd's watchdog, when it watches: pinged until everything else has stopped."""
    config = app[CONFIG]
    interval = config.watchdog_seconds
    if interval is None or not config.notify_socket:
        if config.watchdog_usec and config.notify_socket:
            logger.warning(
                "systemd watchdog: $WATCHDOG_PID is %s, not this process (%d): no pings",
                config.watchdog_pid,
                os.getpid(),
            )
        yield
        return
    watchdog = Watchdog(app[DB], config.notify_socket, interval).start()
    yield
    await watchdog.stop()


async def _presets(app: web.Application) -> AsyncIterator[None]:
    """Once the database is open: the watch rules that name a preset given its fields (an
    unknown one stops start-up), and the saved presets they name recorded, so none is removed
    under them. A saved preset the config shadows is a warning: an admin command never stops
    the next start."""
    for preset in await app[PRESETS].start(app[DB]):
        logger.warning(
            "preset %r is both in the config file and in the database: the config's is used "
            "(`convertd presets remove %s` removes the database's)",
            preset.name,
            preset.name,
        )
    app[RULES] = await with_presets(app[RULES], app[PRESETS], app[DB], app[REGISTRY])
    yield


async def _call_counter(app: web.Application) -> AsyncIterator[None]:
    counter = call_counter(app[DB])
    app[CALLS] = counter
    # final=True: the counts still in memory are written as it stops.
    flushing = Periodic("call-counter", counter.flush, FLUSH_SECONDS, final=True).start()
    yield
    await flushing.stop()


async def _office(app: web.Application) -> AsyncIterator[None]:
    office = app[OFFICE]
    await asyncio.to_thread(office.detect)
    await office.start()
    warm_up = None
    config = app[CONFIG]
    if not office.uno_ready:
        pass  # documents go through a cold soffice, if there is one
    elif config.office_prewarm and config.workers > 0:
        warm_up = asyncio.create_task(office.warm_up(), name="office-warm-up")
    else:
        # A node with --workers 0 only serves the API (or holds the queue paused): it starts
        # none, and an operation it runs itself (a /v2 merge of a .docx) starts one on first use.
        logger.info("office: LibreOffice is not started with the daemon, only on first use")
    yield
    if warm_up is not None:
        warm_up.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await warm_up
    await office.stop()


async def _browser(app: web.Application) -> AsyncIterator[None]:
    yield  # Chromium starts on first use
    await app[BROWSER].stop()


async def _runner(app: web.Application) -> AsyncIterator[None]:
    runner = app[RUNNER].start()
    yield
    runner.stop()


async def _workers(app: web.Application) -> AsyncIterator[None]:
    pool = WorkerPool(
        app[CONFIG],
        app[DB],
        app[REGISTRY],
        app[DATA],
        app[RUNNER],
        app[BROWSER],
        app[METRICS],
        node=app[NODE].id,
    )
    app[POOL] = pool
    # v1's `GET /v1/status/{id}?wait=` hears of a job's end here.
    pool.on_job_end(lambda job: app[CHANGES].changed(job.id))
    # The event streams (/v1/events, /v2/events) hear of its start, progress and end.
    pool.on_job_change(lambda job: app[CHANGES].publish(job.key_id, ("job", job.id)))
    pool.start()
    yield
    await pool.stop()


async def _outside_ends(app: web.Application) -> AsyncIterator[None]:
    """Waits on jobs that another process ended (events/outside.py)."""
    outside = OutsideEnds(app[DB], app[CHANGES])
    sweeping = Periodic("outside-ends", outside.sweep, SWEEP_SECONDS).start()
    yield
    await sweeping.stop()


async def _answer_waits(app: web.Application) -> None:
    """on_shutdown: waiting requests answer now, with the state as it stands, rather than being
    cut off by the server's shutdown timeout."""
    app[CHANGES].close()


async def _answer_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every answer's quota, CORS and request id headers, in one hook
    (one coroutine a request rather than three)."""
    add_rate_limit_headers(request, response)
    add_cors_headers(request, response)
    add_request_id_header(request, response)


def create_app(
    config: Config, registry: Registry | None = None, role: str = "serve"
) -> web.Application:
    """The daemon (`serve`), or with role "worker" a node that only converts: no API, and it
    never leads (cluster/leader.py)."""
    metrics = Metrics()
    metrics.describe_build(__version__, SCHEMA_VERSION)
    middlewares: list[Middleware] = [cors_middleware, error_middleware, auth_middleware]
    if config.metrics_enabled:  # it sees every answer as it leaves (with its request id)
        middlewares.insert(0, metrics_middleware(metrics))
    middlewares.insert(0, request_id_middleware)
    app = web.Application(middlewares=middlewares)
    data = DataDir.of(config)
    app[CONFIG] = config
    app[ROLE] = role
    app[DATA] = data
    app[METRICS] = metrics
    app[CHANGES] = Changes()
    app[PROBE] = DatabaseProbe()
    app[TRANSITIONS] = Transitions()
    app[OFFICE] = OfficePool(
        data.office,
        config.office_pool_size,
        config.office_recycle_after,
        config.uno_python,
        metrics,
    )
    app[BROWSER] = Chromium(
        data.browser,
        Policy(parse_networks(config.import_url_allow)),
        timeout=config.capture_timeout_seconds,
        memory_mb=config.capture_memory_mb,
        max_bytes=min(config.max_upload_bytes, CAPTURE_MAX_BYTES),
        executable=config.chromium,
    )
    app[REGISTRY] = registry or default_registry(app[OFFICE], app[BROWSER])
    metrics.know(
        (*FILETYPES, PIPELINE),
        {fmt for c in app[REGISTRY].known_all() for fmt in c.output_formats},
        [(c.filetype, fmt) for c in app[REGISTRY].known_all() for fmt in c.output_formats],
        (*ENGINE_WORK, "archive"),
    )
    app[RUNNER] = Runner(Limits.from_config(config))
    # Built (and checked) here: a bad watch rule stops start-up before anything runs.
    app[RULES] = build_rules(config, data.drop_root, app[REGISTRY]) if config.drop_enabled else []
    app[WAITING] = Waiting()
    try:
        app[PRESETS] = Presets(
            app[REGISTRY],
            config.presets,
            preset_users(config.watch_rules),
        )
    except PresetError as exc:
        raise ConfigError(str(exc)) from None
    if role == "worker":
        app.cleanup_ctx.extend(
            [_database, _node, _watchdog, _office, _browser, _runner, _workers, leadership]
        )
        return app
    app.cleanup_ctx.extend(
        [
            _database,
            _node,  # this node's row, the relay of changes, and who leads
            _watchdog,  # stopped last, just before the database closes
            _presets,  # the database's presets checked, and the watch rules' applied
            _call_counter,
            webhook_sender,  # before anything runs: it checks the watch rules' webhooks
            _office,
            _browser,
            _runner,
            _workers,
            _outside_ends,
            task_engine,
            drop_folders,
            retention_sweep,
            leadership,  # the leader's services (task engine, webhooks, drops, retention)
        ]
    )
    app.on_response_prepare.append(_answer_headers)
    app.on_shutdown.append(_answer_waits)
    add_routes(app, V1_ROUTES)
    add_routes(app, V2_ROUTES)
    add_routes(app, HEALTH_ROUTES)
    add_routes(app, WEB_ROUTES)
    if config.metrics_enabled:
        add_routes(app, METRICS_ROUTES)
    return app
