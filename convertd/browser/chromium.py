"""The warm Chromium: started on first use through Playwright, one browser for every capture,
each capture in a context of its own (no cookies, cache or storage shared between captures),
recycled after RECYCLE_AFTER pages and started again when it dies.

Chromium is the system's (Debian's `chromium`); nothing is downloaded. It runs below the
daemon: niced, with a data-memory limit per process (prlimit), killed if its parent dies. Every
request a page makes is handed to network.Gate, which fetches it under the network policy; the
browser's own network stack is pointed at a proxy port that refuses every connection, so a
request the gate does not see (a WebSocket, a prefetch) goes nowhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import shlex
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from convertd.fetch import Policy

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Playwright

logger = logging.getLogger(__name__)

RECYCLE_AFTER = 200
PAGES_AT_ONCE = 2
CLOSE_SECONDS = 10.0
NAMES = ("chromium", "chromium-browser")


def find_chromium(configured: str | None) -> str | None:
    if configured:
        return shutil.which(configured)
    return next((found for name in NAMES if (found := shutil.which(name))), None)


class Chromium:
    def __init__(
        self,
        root: Path,
        policy: Policy,
        *,
        timeout: float,
        memory_mb: int,
        max_bytes: int,
        executable: str | None = None,
    ) -> None:
        self.root = root  # where the launcher script lives
        self.policy = policy
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.max_bytes = max_bytes  # what one capture may download, all requests together
        self.executable = find_chromium(executable)
        self.playwright_present = importlib.util.find_spec("playwright") is not None
        self._slots = asyncio.Semaphore(PAGES_AT_ONCE)
        self._lock = asyncio.Lock()
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._pages = 0
        self._dead_port: socket.socket | None = None

    def missing(self) -> list[str]:
        missing = [] if self.executable else ["chromium"]
        if not self.playwright_present:
            missing.append("playwright (pip install 'convertd[capture]')")
        return missing

    @contextlib.asynccontextmanager
    async def context(self) -> AsyncIterator[BrowserContext]:
        """A fresh browser context, closed after use; at most PAGES_AT_ONCE at a time."""
        async with self._slots:
            browser = await self._browser_for_one_more()
            context = await browser.new_context(service_workers="block", accept_downloads=False)
            try:
                yield context
            finally:
                await self._close(context)

    async def stop(self) -> None:
        async with self._lock:
            await self._retire()
            if self._playwright is not None:
                with contextlib.suppress(Exception):
                    await self._playwright.stop()
                self._playwright = None
            if self._dead_port is not None:
                self._dead_port.close()
                self._dead_port = None

    async def _browser_for_one_more(self) -> Browser:
        async with self._lock:
            browser = self._browser
            if browser is None or not browser.is_connected() or self._pages >= RECYCLE_AFTER:
                await self._retire()
                browser = self._browser = await self._launch()
                self._pages = 0
            self._pages += 1
            return browser

    async def _launch(self) -> Browser:
        from playwright.async_api import async_playwright

        if self._playwright is None:
            self._playwright = await async_playwright().start()
        launcher = await asyncio.to_thread(self._write_launcher)
        browser = await self._playwright.chromium.launch(
            executable_path=launcher,
            args=self._args(),
            handle_sigint=False,
            handle_sigterm=False,
            handle_sighup=False,
            timeout=30_000,
        )
        logger.info("chromium started (%s)", browser.version)
        return browser

    def _args(self) -> list[str]:
        if self._dead_port is None:
            # Bound, never listening: every connection to it is refused, and no other program
            # can take the port while convertd holds it.
            self._dead_port = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._dead_port.bind(("127.0.0.1", 0))
        port = self._dead_port.getsockname()[1]
        return [
            f"--proxy-server=http://127.0.0.1:{port}",
            "--proxy-bypass-list=<-loopback>",  # loopback goes to the dead proxy too
            "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
            "--dns-prefetch-disable",
            "--disable-background-networking",
            f"--js-flags=--max-old-space-size={max(128, self.memory_mb // 2)}",
            "--renderer-process-limit=4",
        ]

    def _write_launcher(self) -> str:
        """Blocking: the script Playwright starts instead of Chromium itself, which starts it
        under the limits (a fixed command line; nothing in it comes from a request)."""
        assert self.executable is not None
        argv = []
        if setpriv := shutil.which("setpriv"):
            argv += [setpriv, "--pdeathsig", "KILL", "--"]
        if nice := shutil.which("nice"):
            argv += [nice, "-n", "19"]
        if prlimit := shutil.which("prlimit"):
            argv += [prlimit, f"--data={self.memory_mb * 1024 * 1024}", "--"]
        argv.append(self.executable)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        script = self.root / "chromium"
        text = f'#!/bin/sh\nexec {shlex.join(argv)} "$@"\n'
        if not script.exists() or script.read_text() != text:
            fresh = self.root / "chromium.new"
            fresh.write_text(text)
            fresh.chmod(0o700)
            fresh.replace(script)
        return str(script)

    async def _retire(self) -> None:
        browser, self._browser = self._browser, None
        if browser is not None:
            try:
                async with asyncio.timeout(CLOSE_SECONDS):
                    await browser.close()
            except Exception as exc:  # a browser that will not close is left to its pdeathsig
                logger.warning("chromium did not close cleanly: %s", exc)

    async def _close(self, context: BrowserContext) -> None:
        try:
            async with asyncio.timeout(CLOSE_SECONDS):
                await context.close()
        except Exception as exc:
            # A page that hangs its renderer: start afresh rather than keep a sick browser.
            logger.warning("a browser context did not close (%s); restarting chromium", exc)
            async with self._lock:
                await self._retire()
