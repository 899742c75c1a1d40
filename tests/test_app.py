"""The application's own lifecycle, in process: what it starts, it stops; what it changes for
the whole process, it puts back; background work runs when there is work, not on a timer."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from PIL import Image

from convertd.app import create_app
from convertd.config import Config
from convertd.drops import watcher
from convertd.store.db import Database, Row


def test_pillow_limit_is_the_apps_while_it_runs(tmp_path: Path) -> None:
    before = Image.MAX_IMAGE_PIXELS
    config = Config(data_dir=tmp_path / "d", workers=0, drop_enabled=False, max_image_pixels=1234)

    async def scenario() -> int | None:
        app = create_app(config)
        assert before == Image.MAX_IMAGE_PIXELS  # building the app changes nothing yet
        async with TestServer(app):
            return Image.MAX_IMAGE_PIXELS

    assert asyncio.run(scenario()) == 1234
    assert before == Image.MAX_IMAGE_PIXELS


def test_drop_delivery_runs_when_a_drop_job_ends_not_on_a_timer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the safety net pushed out to an hour, only the worker pool's word that the job
    # ended can deliver the result; and while idle, deliveries are not queried for.
    monkeypatch.setattr(watcher, "DELIVERY_SAFETY_NET_SECONDS", 3600.0)
    delivery_queries: list[float] = []
    fetch_all = Database.fetch_all

    async def counting(self: Database, sql: str, params: Any = ()) -> list[Row]:
        if "FROM drops d JOIN jobs" in sql:
            delivery_queries.append(time.monotonic())
        return await fetch_all(self, sql, params)

    monkeypatch.setattr(Database, "fetch_all", counting)
    drop = tmp_path / "drop"
    config = Config(
        data_dir=tmp_path / "d",
        workers=1,
        drop_root=drop,
        drop_settle_seconds=0.1,
        drop_scan_seconds=0.5,
        office_prewarm=False,
    )

    async def scenario() -> None:
        async with TestServer(create_app(config)), aiohttp.ClientSession():
            await asyncio.sleep(2.0)
            assert len(delivery_queries) <= 1, "an idle daemon queried for deliveries"
            (drop / "inbox" / "md5").mkdir(parents=True)
            (drop / "inbox" / "md5" / "note.txt").write_text("deliver me")
            deadline = time.monotonic() + 30
            while not (drop / "outbox" / "note.md5").exists():
                assert time.monotonic() < deadline, "the result was never delivered"
                await asyncio.sleep(0.05)
        assert len(delivery_queries) <= 3

    asyncio.run(scenario())
    digest = hashlib.md5(b"deliver me").hexdigest()
    assert (drop / "outbox" / "note.md5").read_text().split()[0] == digest
