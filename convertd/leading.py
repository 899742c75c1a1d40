"""The work one node does for all (cluster/leader.py), as the app starts it: the /v2 task
engine, the webhook sender, the drop folders and the retention sweep. Each is a `cleanup_ctx`
entry that hands Leadership how to start it (and it, how to stop); `_leadership`, last of the
app's entries, starts them once this node leads, which on SQLite is at once.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

from aiohttp import web

from convertd.api.state import (
    CHANGES,
    CONFIG,
    DATA,
    DB,
    ENGINE,
    METRICS,
    POOL,
    PRESETS,
    REGISTRY,
    RULES,
    WAITING,
)
from convertd.browser.chromium import Chromium
from convertd.cluster.leader import Leadership, Stop
from convertd.cluster.node import NodeLife
from convertd.drops.checks import Fresh
from convertd.drops.watcher import DropWatcher
from convertd.events.payloads import render as render_payload
from convertd.events.rules import rule_webhooks
from convertd.events.sender import WebhookSender
from convertd.office.pool import OfficePool
from convertd.periodic import Periodic
from convertd.retention import sweep_once
from convertd.store import jobs, webhooks
from convertd.tasks import tool_versions
from convertd.tasks.engine import TaskEngine

ROLE = web.AppKey("role", str)  # "serve", or "worker" (converts only)
NODE = web.AppKey("node", NodeLife)
LEADER = web.AppKey("leader", Leadership)
OFFICE = web.AppKey("office", OfficePool)
BROWSER = web.AppKey("browser", Chromium)


async def leadership(app: web.Application) -> AsyncIterator[None]:
    """Last to start, first to stop: the leader's services, once everything they use runs."""
    if app[ROLE] == "worker":  # a compute node converts; it never leads
        yield
        return
    await app[LEADER].start()
    yield
    await app[LEADER].stop()


async def task_engine(app: web.Application) -> AsyncIterator[None]:
    engine = TaskEngine(
        app[CONFIG], app[DB], app[DATA], app[REGISTRY], app[POOL], app[CHANGES], app[BROWSER]
    )
    app[ENGINE] = engine
    await tool_versions.detect(app[OFFICE].soffice)

    engine.fence = app[LEADER].fence

    async def begin() -> Stop:
        await engine.start()
        return engine.stop

    app[LEADER].add("task engine", begin)
    # The leader hears of what other nodes did (a conversion ended, a job was made) here; of
    # its own node's doings it hears from the pool (a /v2 task's job ended) and from itself.
    # Not of every change: each v1 job's end cost a step (three reads) for nothing.
    app[CHANGES].on_heard(engine.poke)
    yield


async def webhook_sender(app: web.Application) -> AsyncIterator[None]:
    drop_enabled = app[CONFIG].drop_enabled
    # Checked on every node (a bad rule stops start-up); written by the leader.
    rules = await rule_webhooks(app[DB], app[CONFIG], app[RULES]) if drop_enabled else []
    senders: list[WebhookSender] = []

    async def begin() -> Stop:
        if drop_enabled:  # else the rules' webhooks (and their deliveries) stay as they are
            await webhooks.mirror_rules(app[DB], rules, keep_others=app[DB].shared)
        sender = WebhookSender(app[CONFIG], app[DB], lambda d: render_payload(app, d), app[METRICS])
        senders.append(sender.start())

        async def stop() -> None:
            senders.remove(sender)
            await sender.stop()

        return stop

    app[LEADER].add("webhook sender", begin)

    def poke() -> None:
        for sender in senders:
            sender.poke()

    app[CHANGES].on_change(poke)
    yield


async def drop_folders(app: web.Application) -> AsyncIterator[None]:
    if not app[CONFIG].drop_enabled:
        yield
        return
    pool = app[POOL]
    # Rules naming a preset take it as it is when each file is taken.
    fresh = Fresh(app[CONFIG].watch_rules, app[PRESETS], app[DB], app[REGISTRY])
    watchers: list[DropWatcher] = []

    async def begin() -> Stop:
        watcher = DropWatcher(
            app[CONFIG],
            app[DB],
            app[DATA],
            app[REGISTRY],
            app[RULES],
            pool.notify,
            app[METRICS],
            fresh=fresh,
            waiting=app[WAITING],  # shown by GET /v2/drops
        )
        watchers.append(watcher)
        watcher.start()

        async def stop() -> None:
            watchers.remove(watcher)
            await watcher.stop()

        return stop

    app[LEADER].add("drop folders", begin)

    def job_ended(job: jobs.Job) -> None:
        for watcher in watchers:
            watcher.job_ended(job)

    pool.on_job_end(job_ended)
    if app[DB].shared:
        # A drop's job another node ran ends there: the relay's word is the only one this node
        # hears (else its result waited for the watcher's safety net, up to 10 s).
        def changed_elsewhere() -> None:
            for watcher in watchers:
                watcher.deliver_soon()

        app[CHANGES].on_change(changed_elsewhere)
    yield


async def retention_sweep(app: web.Application) -> AsyncIterator[None]:
    config, db, data = app[CONFIG], app[DB], app[DATA]

    async def begin() -> Stop:
        sweep = functools.partial(sweep_once, config, db, data)
        return Periodic("retention", sweep, config.sweep_interval_seconds).start().stop

    app[LEADER].add("retention", begin)
    yield
