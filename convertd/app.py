"""The application factory: state, resource lifecycle in order, routes and middlewares."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from PIL import Image

from convertd import jobs
from convertd.api.handlers import add_routes
from convertd.api.middleware import add_rate_limit_headers, auth_middleware, error_middleware
from convertd.api.state import CALLS, CONFIG, DATA, DB, OFFICE, POOL, REGISTRY, RULES
from convertd.config import Config
from convertd.converters.registry import Registry, default_registry
from convertd.db import Database
from convertd.files import DataDir
from convertd.office import OfficePool
from convertd.quotas import CallCounter
from convertd.retention import run_sweeper
from convertd.watch import DropWatcher, build_rules
from convertd.worker import WorkerPool

logger = logging.getLogger(__name__)


async def _database(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    app[DATA].ensure()
    db = await Database.open(config.db_path)
    app[DB] = db
    requeued, failed = await jobs.recover_orphans(db, config.max_attempts)
    if requeued or failed:
        logger.info("recovered %d interrupted job(s); %d gave up", requeued, failed)
    yield
    await db.close()


async def _call_counter(app: web.Application) -> AsyncIterator[None]:
    counter = CallCounter(app[DB])
    app[CALLS] = counter
    task = asyncio.create_task(counter.run(), name="call-counter")
    yield
    task.cancel()  # run() writes the last counts as it stops
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _office(app: web.Application) -> AsyncIterator[None]:
    office = app[OFFICE]
    await asyncio.to_thread(office.detect)
    office.start()
    warm_up = None
    if app[CONFIG].office_prewarm and office.uno_ready:
        warm_up = asyncio.create_task(office.warm_up(), name="office-warm-up")
    yield
    if warm_up is not None:
        warm_up.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await warm_up
    await office.stop()


async def _workers(app: web.Application) -> AsyncIterator[None]:
    pool = WorkerPool(app[CONFIG], app[DB], app[REGISTRY], app[DATA])
    app[POOL] = pool
    pool.start()
    yield
    await pool.stop()


async def _watcher(app: web.Application) -> AsyncIterator[None]:
    if not app[CONFIG].drop_enabled:
        yield
        return
    watcher = DropWatcher(
        app[CONFIG], app[DB], app[DATA], app[REGISTRY], app[POOL].notify, app[RULES]
    )
    watcher.start()
    yield
    await watcher.stop()


async def _sweeper(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(run_sweeper(app[CONFIG], app[DB], app[DATA]), name="retention")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(config: Config, registry: Registry | None = None) -> web.Application:
    # Pillow's own bomb check is a second line behind the converter's explicit pixel check.
    Image.MAX_IMAGE_PIXELS = config.max_image_pixels
    app = web.Application(middlewares=[error_middleware, auth_middleware])
    app[CONFIG] = config
    app[DATA] = DataDir(config.data_dir)
    app[OFFICE] = OfficePool(
        DataDir(config.data_dir).office, config.office_pool_size, config.office_recycle_after
    )
    app[REGISTRY] = registry or default_registry(app[OFFICE])
    # Built (and checked) here: a bad watch rule stops start-up before anything runs.
    app[RULES] = build_rules(config, app[REGISTRY]) if config.drop_enabled else []
    app.cleanup_ctx.extend([_database, _call_counter, _office, _workers, _watcher, _sweeper])
    app.on_response_prepare.append(add_rate_limit_headers)
    add_routes(app)
    return app
