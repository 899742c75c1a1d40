"""Faults real parts cannot be made to show: a handler that crashes, a converter that raises.

These run the real application in-process (real SQLite, real HTTP) with one fake piece each.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from convertd.api.state import DB
from convertd.app import create_app
from convertd.config import Config
from convertd.converters.base import Converter, Task
from convertd.converters.hash import HashConverter
from convertd.converters.registry import Registry
from convertd.store import keys


class ExplodingConverter(Converter):
    filetype = "archive"
    input_formats = ("zip",)
    output_formats = ("7z",)

    async def convert(self, task: Task) -> list[Path]:
        raise RuntimeError("secret internal detail /etc/shadow")


async def boom(request: web.Request) -> web.Response:
    raise RuntimeError("secret internal detail")


def test_unexpected_errors_become_a_short_500_and_a_failed_job(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        config = Config(data_dir=tmp_path / "data", workers=1)
        app = create_app(config, Registry([HashConverter(), ExplodingConverter()]))
        app.router.add_get("/v1/boom", boom)
        async with TestServer(app) as server, aiohttp.ClientSession() as http:
            _, secret = await keys.create_key(app[DB], "fault", "pro")
            headers = {"X-API-Key": secret}
            async with http.get(server.make_url("/v1/boom"), headers=headers) as resp:
                assert resp.status == 500
                body = await resp.json()
                assert set(body) == {"error", "message", "hint"}
                assert "secret" not in str(body)

            form = aiohttp.FormData()
            form.add_field("file", b"PK\x05\x06" + b"\0" * 18, filename="a.zip")
            form.add_field("filetype", "archive")
            form.add_field("output_format", "7z")
            async with http.post(
                server.make_url("/v1/convert"), data=form, headers=headers
            ) as resp:
                assert resp.status == 202
                job = await resp.json()
            for _ in range(200):
                async with http.get(job["status_url"], headers=headers) as resp:
                    status = await resp.json()
                if status["status"] in {"finished", "failed"}:
                    break
                await asyncio.sleep(0.02)
            assert status["status"] == "failed"
            assert status["error"] == "Internal error while converting this file"
            # The daemon carries on: the next job of another kind still converts.
            form = aiohttp.FormData()
            form.add_field("file", b"abc", filename="a.txt")
            form.add_field("filetype", "hash")
            form.add_field("output_format", "md5")
            async with http.post(
                server.make_url("/v1/convert"), data=form, headers=headers
            ) as resp:
                assert resp.status == 202

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    assert "Traceback" in caplog.text or any(r.exc_info for r in caplog.records)


def test_converter_with_missing_tools_is_not_offered(tmp_path: Path) -> None:
    class NeedsTool(Converter):
        filetype = "video"
        input_formats = ("mp4",)
        output_formats = ("webm",)
        tools = ("no-such-tool-convertd-test",)

        async def convert(self, task: Task) -> list[Path]:
            raise AssertionError("never called")

    async def scenario() -> None:
        app = create_app(
            Config(data_dir=tmp_path / "d", workers=0), Registry([HashConverter(), NeedsTool()])
        )
        async with TestServer(app) as server, aiohttp.ClientSession() as http:
            _, secret = await keys.create_key(app[DB], "tools", "pro")
            headers = {"X-API-Key": secret}
            async with http.get(server.make_url("/v1/formats"), headers=headers) as resp:
                assert "video" not in (await resp.json())["filetypes"]
            form = aiohttp.FormData()
            form.add_field("file", b"x", filename="a.mp4")
            form.add_field("filetype", "video")
            form.add_field("output_format", "webm")
            async with http.post(
                server.make_url("/v1/convert"), data=form, headers=headers
            ) as resp:
                assert resp.status == 503
                body = await resp.json()
                assert "no-such-tool-convertd-test" in body["message"]
                assert "doctor" in body["hint"]

    asyncio.run(scenario())


def test_duplicate_converters_are_a_startup_error() -> None:
    with pytest.raises(ValueError, match="two converters"):
        Registry([HashConverter(), HashConverter()])
