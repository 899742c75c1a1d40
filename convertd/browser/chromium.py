"""The warm Chromium: started on first use through Playwright, one browser for every capture,
each capture in a context of its own (no cookies, cache or storage shared between captures),
recycled after RECYCLE_AFTER pages (a fresh one takes the next capture while the old one
finishes those it has) and started again when it dies.

Chromium is the system's (Debian's `chromium`); nothing is downloaded. It runs below the
daemon: niced, with a data-memory limit per process (prlimit), killed if its parent dies, and,
where the system allows it, in a network namespace of its own with no network at all (Playwright
talks to it over a pipe). Every request a page makes is handed to network.Gate, which fetches it
under the network policy. Without the namespace, the browser's own network is pointed at a proxy
port that refuses every connection and WebRTC may not use UDP, so a request the gate does not
see (a WebSocket, a prefetch) goes nowhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import importlib.util
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from convertd.browser.network import Routing
from convertd.fetch import Policy

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page, Playwright

logger = logging.getLogger(__name__)

RECYCLE_AFTER = 200
# What one capture may download, all its requests together (each answer is held in memory).
CAPTURE_MAX_BYTES = 100 * 1024 * 1024
PAGES_AT_ONCE = 2
CLOSE_SECONDS = 10.0
NAMES = ("chromium", "chromium-browser")


def find_chromium(configured: str | None) -> str | None:
    if configured:
        return shutil.which(configured)
    return next((found for name in NAMES if (found := shutil.which(name))), None)


@functools.cache
def network_namespace() -> list[str]:
    """The command that runs a program with no network (a network namespace of its own), if
    this system lets convertd make one; else []. Blocking (it tries once)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    argv = (
        [unshare, "--net"]
        if os.geteuid() == 0
        else [unshare, "--user", "--map-current-user", "--net"]
    )
    try:
        tried = subprocess.run([*argv, "true"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return argv if tried.returncode == 0 else []


@dataclasses.dataclass
class _Instance:
    browser: Browser
    pid_file: Path
    pages: int = 0
    open: int = 0
    retiring: bool = False  # takes no more captures; closed when its last one ends

    def kill(self) -> None:
        """The browser, killed (its renderers die with it): for one that will not close."""
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(self.pid_file.read_text()), signal.SIGKILL)


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
        self._current: _Instance | None = None
        self._instances: list[_Instance] = []  # the current one and those retiring
        self._spare: tuple[_Instance, asyncio.Task[Tab]] | None = None
        self._closing: set[asyncio.Task[None]] = set()  # captures' contexts being closed
        self._launches = 0
        self._dead_port: socket.socket | None = None

    def missing(self) -> list[str]:
        missing = [] if self.executable else ["chromium"]
        if not self.playwright_present:
            missing.append("playwright (pip install 'convertd[capture]')")
        return missing

    @contextlib.asynccontextmanager
    async def tab(self) -> AsyncIterator[Tab]:
        """A page in a fresh browser context; at most PAGES_AT_ONCE at a time (waiting for a
        slot is not part of a capture's time). A fresh context, its routes and a page cost
        ~200 ms of CPU (a new renderer), and closing one ~20 ms: both happen after the capture
        has its result, off its path (the next capture takes the page made ahead), so neither
        competes with a capture for the CPU."""
        await self._slots.acquire()
        try:
            instance = await self._instance_for_one_more()
        except BaseException:
            self._slots.release()
            raise
        try:
            tab = await self._take_spare(instance)
        except BaseException:
            self._finish(instance, None)
            raise
        try:
            yield tab
        finally:
            self._finish(instance, tab)

    def _finish(self, instance: _Instance, tab: Tab | None) -> None:
        """Close the capture's context, then make the next capture's page, in the background
        (stop() waits for it); the slot is free once the context is closed."""
        task = asyncio.create_task(self._after_capture(instance, tab))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _after_capture(self, instance: _Instance, tab: Tab | None) -> None:
        try:
            if tab is not None:
                await self._close(instance, tab.context)
        finally:
            instance.open -= 1
            self._slots.release()
        if instance.retiring and instance.open == 0:
            await self._retire(instance)
        elif not instance.retiring and self._spare is None and self._current is instance:
            self._spare = (instance, asyncio.create_task(_fresh(instance.browser)))

    async def _take_spare(self, instance: _Instance) -> Tab:
        spare, self._spare = self._spare, None
        if spare is not None:
            owner, made = spare
            if owner is instance:
                try:
                    return await made
                except Exception as exc:  # made when a browser died: make one now
                    logger.info("the spare browser page was lost (%s)", exc)
            else:
                await _discard(made)
        return await _fresh(instance.browser)

    async def stop(self) -> None:
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        async with self._lock:
            for instance in list(self._instances):
                await self._retire(instance)
            if self._playwright is not None:
                with contextlib.suppress(Exception):
                    await self._playwright.stop()
                self._playwright = None
            if self._dead_port is not None:
                self._dead_port.close()
                self._dead_port = None

    async def _instance_for_one_more(self) -> _Instance:
        async with self._lock:
            current = self._current
            if (
                current is None
                or not current.browser.is_connected()
                or current.pages >= (RECYCLE_AFTER)
            ):
                # The old one finishes the captures it has, then goes (see tab()).
                if current is not None:
                    current.retiring = True
                    self._current = None
                    if current.open == 0:
                        await self._retire(current)
                current = self._current = await self._launch()
            current.pages += 1
            current.open += 1
            return current

    async def _launch(self) -> _Instance:
        from playwright.async_api import async_playwright

        if self._playwright is None:
            self._playwright = await async_playwright().start()
        self._launches += 1
        pid_file = self.root / f"chromium-{self._launches}.pid"
        launcher, isolated = await asyncio.to_thread(self._write_launcher, pid_file)
        browser = await self._playwright.chromium.launch(
            executable_path=launcher,
            args=self._args(isolated),
            # Chromium's own sandbox needs a user other than root.
            chromium_sandbox=os.geteuid() != 0,
            handle_sigint=False,
            handle_sigterm=False,
            handle_sighup=False,
            timeout=30_000,
        )
        logger.info(
            "chromium started (%s)%s",
            browser.version,
            "" if isolated else " without a network namespace: its network is a dead proxy",
        )
        instance = _Instance(browser, pid_file)
        self._instances.append(instance)
        return instance

    def _args(self, isolated: bool) -> list[str]:
        args = [
            "--webrtc-ip-handling-policy=disable_non_proxied_udp",
            "--force-webrtc-ip-handling-policy",
            "--dns-prefetch-disable",
            "--disable-background-networking",
            f"--js-flags=--max-old-space-size={max(128, self.memory_mb // 2)}",
            "--renderer-process-limit=4",
        ]
        if not isolated:
            if self._dead_port is None:
                # Bound, never listening: every connection to it is refused, and no other
                # program can take the port while convertd holds it.
                self._dead_port = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self._dead_port.bind(("127.0.0.1", 0))
            port = self._dead_port.getsockname()[1]
            args += [
                f"--proxy-server=http://127.0.0.1:{port}",
                "--proxy-bypass-list=<-loopback>",  # loopback goes to the dead proxy too
            ]
        return args

    def _write_launcher(self, pid_file: Path) -> tuple[str, bool]:
        """Blocking: the script Playwright starts instead of Chromium, which starts it under
        the limits (a fixed command line; nothing in it comes from a request), and whether it
        has no network at all."""
        assert self.executable is not None
        isolated = network_namespace()
        argv = list(isolated)
        if setpriv := shutil.which("setpriv"):
            argv += [setpriv, "--pdeathsig", "KILL", "--"]
        if nice := shutil.which("nice"):
            argv += [nice, "-n", "19"]
        if prlimit := shutil.which("prlimit"):
            argv += [prlimit, f"--data={self.memory_mb * 1024 * 1024}", "--"]
        argv.append(self.executable)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        script = pid_file.with_suffix(".sh")
        # Every program in argv replaces the one before (exec): the pid written is Chromium's.
        text = f'#!/bin/sh\necho $$ > {shlex.quote(str(pid_file))}\nexec {shlex.join(argv)} "$@"\n'
        fresh = script.with_suffix(".new")
        fresh.write_text(text)
        fresh.chmod(0o700)
        fresh.replace(script)
        return str(script), bool(isolated)

    async def _retire(self, instance: _Instance) -> None:
        if self._current is instance:
            self._current = None
        if self._spare is not None and self._spare[0] is instance:
            await _discard(self._spare[1])
            self._spare = None
        if instance not in self._instances:
            return  # retired already
        self._instances.remove(instance)
        try:
            async with asyncio.timeout(CLOSE_SECONDS):
                await instance.browser.close()
        except Exception as exc:
            logger.warning("chromium did not close (%s); killed", exc)
            instance.kill()
        instance.pid_file.unlink(missing_ok=True)
        instance.pid_file.with_suffix(".sh").unlink(missing_ok=True)

    async def _close(self, instance: _Instance, context: BrowserContext) -> None:
        try:
            async with asyncio.timeout(CLOSE_SECONDS):
                await context.unroute_all(behavior="ignoreErrors")
                await context.close()
        except Exception as exc:
            # A page that hangs its renderer: this browser is not trusted with another one.
            logger.warning("a browser context did not close (%s); chromium killed", exc)
            instance.kill()
            instance.retiring = True
            if self._current is instance:
                self._current = None


@dataclasses.dataclass(frozen=True)
class Tab:
    """A page in a context of its own, every request of which goes to `routing`."""

    context: BrowserContext
    page: Page
    routing: Routing


async def _fresh(browser: Browser) -> Tab:
    context = await browser.new_context(service_workers="block", accept_downloads=False)
    try:
        routing = Routing()
        await context.route("**/*", routing.handle)
        await context.route_web_socket("**/*", routing.websocket)
        return Tab(context, await context.new_page(), routing)
    except BaseException:
        await context.close()
        raise


async def _discard(made: asyncio.Task[Tab]) -> None:
    """A spare page no capture will use: closed, or never finished."""
    made.cancel()
    try:
        tab = await made
    except BaseException:  # cancelled, or failed: nothing to close
        return
    with contextlib.suppress(Exception):
        await tab.context.close()
