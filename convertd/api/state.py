"""Typed keys for what the application and each request carry."""

from __future__ import annotations

from aiohttp import web

from convertd.changes import Changes
from convertd.config import Config
from convertd.converters.registry import Registry
from convertd.drops.rules import WatchRule
from convertd.drops.waiting import Waiting
from convertd.files import DataDir
from convertd.metrics import Metrics
from convertd.signing import Signer
from convertd.store.cache import ReadCache
from convertd.store.db import Database
from convertd.store.keys import ApiKey
from convertd.store.quotas import CallCounter, Usage
from convertd.tasks.engine import TaskEngine
from convertd.tasks.presets import Presets
from convertd.worker import WorkerPool

CONFIG = web.AppKey("config", Config)
DB = web.AppKey("db", Database)
READS = web.AppKey("reads", ReadCache)  # keys and jobs as status reads ask, from memory
DATA = web.AppKey("data", DataDir)
REGISTRY = web.AppKey("registry", Registry)
CALLS = web.AppKey("calls", CallCounter)
POOL = web.AppKey("pool", WorkerPool)
ENGINE = web.AppKey("engine", TaskEngine)
CHANGES = web.AppKey("changes", Changes)
SIGNER = web.AppKey("signer", Signer)
PRESETS = web.AppKey("presets", Presets)
METRICS = web.AppKey("metrics", Metrics)
RULES = web.AppKey("rules", list[WatchRule])  # the drop folders' watch rules, checked at start
WAITING = web.AppKey("drops_waiting", Waiting)  # what the drop watcher has not taken yet

API_KEY = web.RequestKey("api_key", ApiKey)
USAGE = web.RequestKey("usage", Usage)
