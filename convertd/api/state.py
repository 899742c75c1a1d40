"""Typed keys for what the application and each request carry."""

from __future__ import annotations

from aiohttp import web

from convertd.config import Config
from convertd.converters.registry import Registry
from convertd.db import Database
from convertd.droprules import WatchRule
from convertd.files import DataDir
from convertd.keys import ApiKey
from convertd.office import OfficePool
from convertd.quotas import CallCounter, Usage
from convertd.worker import WorkerPool

CONFIG = web.AppKey("config", Config)
DB = web.AppKey("db", Database)
DATA = web.AppKey("data", DataDir)
REGISTRY = web.AppKey("registry", Registry)
POOL = web.AppKey("pool", WorkerPool)
OFFICE = web.AppKey("office", OfficePool)
RULES = web.AppKey("rules", list[WatchRule])
CALLS = web.AppKey("calls", CallCounter)

API_KEY = web.RequestKey("api_key", ApiKey)
USAGE = web.RequestKey("usage", Usage)
