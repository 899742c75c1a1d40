"""A real webhook receiver for the tests: an aiohttp server on loopback, in its own thread.

It records every POST (headers and raw body). `answers` is a list of statuses to answer with,
one per request (then 200); `hang` makes it hold requests open until released; `down()` and
`up()` close and reopen its port, as a receiver that was restarted."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from tests.daemon import free_port


class Received:
    def __init__(self, headers: dict[str, str], body: bytes) -> None:
        self.headers = headers
        self.body = body
        self.json: dict[str, Any] = json.loads(body)

    @property
    def event(self) -> str:
        return str(self.json["event"])

    def verify(self, secret: str) -> None:
        """Both signatures, as a receiver checks them (the README's recipe)."""
        expected = hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(self.headers["CloudConvert-Signature"], expected)
        timestamp = self.headers["X-Webhook-Timestamp"]
        signed = timestamp.encode() + b"." + self.body
        v1 = "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(self.headers["X-Webhook-Signature"], v1)
        assert abs(time.time() - int(timestamp)) < 300
        assert self.headers["X-Webhook-Id"] == self.json["id"]


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[Received] = []
        self.requests = 0  # answered or not
        self.answers: list[int] = []
        self.hang = False
        self._release: asyncio.Event | None = None
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests += 1
        if self.hang:
            self._release = self._release or asyncio.Event()
            await self._release.wait()
            return web.Response(status=200)
        self.received.append(Received(dict(request.headers), body))
        status = self.answers.pop(0) if self.answers else 200
        return web.Response(status=status, text="thanks" if status < 300 else "not now")

    async def _up(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _down(self) -> None:
        if self._release is not None:
            self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def up(self) -> None:
        self._call(self._up())

    def down(self) -> None:
        self._call(self._down())

    def release(self) -> None:
        self.hang = False
        if self._release is not None:
            self._loop.call_soon_threadsafe(self._release.set)

    def events(self) -> list[str]:
        return [r.event for r in self.received]

    def wait_for(self, count: int, timeout: float = 60.0, what: str = "") -> list[Received]:
        """Block until `count` deliveries (of event `what`, if given) have arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [r for r in self.received if not what or r.event == what]
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{count} x {what or 'any'} expected, got {self.events()}")

    def close(self) -> None:
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()
