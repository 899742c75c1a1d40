"""Faults real parts cannot be made to show: a handler that crashes, a converter that raises.

These run the real application in-process (real SQLite, real HTTP) with one fake piece each.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

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


async def post_convert(
    http: aiohttp.ClientSession,
    server: TestServer,
    headers: dict[str, str],
    file: tuple[bytes, str],
    filetype: str,
    output_format: str,
) -> tuple[int, dict[str, Any]]:
    form = aiohttp.FormData()
    form.add_field("file", file[0], filename=file[1])
    form.add_field("filetype", filetype)
    form.add_field("output_format", output_format)
    async with http.post(server.make_url("/v1/convert"), data=form, headers=headers) as resp:
        return resp.status, await resp.json()


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

            empty_zip = (b"PK\x05\x06" + b"\0" * 18, "a.zip")
            code, job = await post_convert(http, server, headers, empty_zip, "archive", "7z")
            assert code == 202
            for _ in range(200):
                async with http.get(job["status_url"], headers=headers) as resp:
                    status = await resp.json()
                if status["status"] in {"finished", "failed"}:
                    break
                await asyncio.sleep(0.02)
            assert status["status"] == "failed"
            assert status["error"] == "Internal error while converting this file"
            # The daemon carries on: the next job of another kind still converts.
            code, _ = await post_convert(http, server, headers, (b"abc", "a.txt"), "hash", "md5")
            assert code == 202

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
            code, body = await post_convert(http, server, headers, (b"x", "a.mp4"), "video", "webm")
            assert code == 503
            assert "no-such-tool-convertd-test" in body["message"]
            assert "doctor" in body["hint"]

    asyncio.run(scenario())


def test_duplicate_converters_are_a_startup_error() -> None:
    with pytest.raises(ValueError, match="two converters"):
        Registry([HashConverter(), HashConverter()])
