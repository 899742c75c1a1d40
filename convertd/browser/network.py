"""The gate every request of a captured page goes through.

Chromium fetches nothing itself: each request is handed here (Playwright's routing), fetched
under the daemon's network policy by fetch.forward, redirects followed here (each hop checked
anew: Chromium would follow a redirect it was handed without asking the gate), and the answer
handed back. So a page cannot reach a loopback or private address the admin did not allow,
however it asks: a sub-resource, a script's fetch, a redirect, a name that resolves to
127.0.0.1. Other schemes (file:, ftp:) are refused, and Chromium itself never loads file: URLs
into an http page.

A capture may make MAX_REQUESTS requests (FETCHES_AT_ONCE at a time) and download `max_bytes`
in all, counted as the bytes arrive; past either, the rest are refused. A redirect to another
origin carries no cookies or credentials. What was refused is counted, and the first few kept
(with the reason) for the task's result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import aiohttp

from convertd.fetch import MAX_REDIRECTS, FetchError, Policy, Refused, origin_of
from convertd.forward import Answer, Budget, OverBudget, forward, policy_session

if TYPE_CHECKING:
    from playwright.async_api import Frame, Request, Route, WebSocketRoute

logger = logging.getLogger(__name__)

MAX_REQUESTS = 1000
FETCHES_AT_ONCE = 6
KEEP_REFUSALS = 20
KEEP_REASONS = 100
METHODS = ("GET", "HEAD")  # a capture reads pages; it does not submit forms elsewhere
IDLE_SECONDS = 30.0
# Not sent on to another origin by a redirect, as browsers have it.
CREDENTIALS = ("cookie", "authorization", "proxy-authorization")
# A given HTML file is served to the page from this origin (.invalid never resolves).
LOCAL_ORIGIN = "http://capture.invalid"
LOCAL_URL = f"{LOCAL_ORIGIN}/"


class Routing:
    """A context's routes, installed when the context is made (ahead of its capture: routing
    WebSockets costs ~85 ms), handing each request to the gate of the capture it serves, and
    refusing any before there is one."""

    def __init__(self) -> None:
        self.gate: Gate | None = None

    async def handle(self, route: Route) -> None:
        if self.gate is None:
            with contextlib.suppress(Exception):
                await route.abort("blockedbyclient")
            return
        await self.gate.handle(route)

    async def websocket(self, socket: WebSocketRoute) -> None:
        if self.gate is not None:
            await self.gate.refuse_websocket(socket)
        else:
            await socket.close(code=1008, reason="refused by convertd")


class Gate:
    def __init__(
        self,
        policy: Policy,
        max_bytes: int,
        *,
        html: bytes | None = None,
        headers: dict[str, str] | None = None,
        url: str | None = None,
    ) -> None:
        self.policy = policy
        self.budget = Budget(max_bytes)
        self.html = html
        # The caller's headers (credentials, cookies) go to the first URL's origin only.
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.origin = origin_of(url) if url else None
        self.requests = 0
        self.refused: list[dict[str, str]] = []
        self.refusals = 0
        self.reasons: dict[str, str] = {}  # why a URL was not loaded (the first KEEP_REASONS)
        # While the page loads, where its navigation was redirected, and that answer.
        self.main_frame: Frame | None = None
        self.loading = False
        self.moved_to: str | None = None
        self.kept: dict[str, Answer] = {}
        self.closed = False
        self.stage = "loading the page"  # what the capture was doing, for a timeout's message
        self._fetches = asyncio.Semaphore(FETCHES_AT_ONCE)
        self._session: aiohttp.ClientSession | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    async def close(self) -> None:
        """No request is answered after this; those under way stop."""
        self.closed = True
        for handler in list(self._handlers):
            handler.cancel()
        if self._session is not None:
            await self._session.close()
        self.kept.clear()
        if self.refusals:
            first = self.refused[0]
            logger.info(
                "capture: %d requests, %d refused (first: %s: %s)",
                self.requests,
                self.refusals,
                first["url"][:200],
                first["reason"],
            )

    async def handle(self, route: Route) -> None:
        me = asyncio.current_task()
        if me is not None:
            self._handlers.add(me)
        try:
            await self._answer(route)
        finally:
            if me is not None:
                self._handlers.discard(me)

    async def _answer(self, route: Route) -> None:
        request = route.request
        url = request.url
        if self.closed:
            with contextlib.suppress(Exception):
                await route.abort("aborted")
            return
        if self.html is not None and url.startswith(LOCAL_ORIGIN + "/"):
            await self._local(route, url)
            return
        if (kept := self.kept.pop(url, None)) is not None:
            await _fulfill(route, kept)
            return
        problem = self._problem(url, request.method)
        if problem is None:
            try:
                headers = await request.all_headers()
                answer, final = await self._follow(url, request.method, headers)
            except (Refused, OverBudget) as exc:
                problem = str(exc)
            except FetchError as exc:
                self._reason(url, str(exc))
                await route.abort("failed")
                return
            else:
                if final != url and self._navigating(request):
                    # The page must be at its real address (relative links resolve against
                    # it): the loader navigates there next, and gets this answer.
                    self.moved_to = final
                    self.kept[final] = answer
                    await route.fulfill(status=200, body=b"", headers={"Content-Type": "text/html"})
                else:
                    await _fulfill(route, answer)
                return
        self._refuse(url, problem)
        await route.abort("blockedbyclient")

    async def refuse_websocket(self, socket: WebSocketRoute) -> None:
        self._refuse(socket.url, "WebSockets are not opened by a capture")
        await socket.close(code=1008, reason="refused by convertd")

    def _navigating(self, request: Request) -> bool:
        """Whether this is the page itself being loaded (not a frame, popup or later move)."""
        try:
            return (
                self.loading
                and request.is_navigation_request()
                and (request.frame is self.main_frame)
            )
        except Exception:  # a request with no frame (a worker's)
            return False

    def _problem(self, url: str, method: str) -> str | None:
        if not url.startswith(("http://", "https://")):
            return "only http and https are fetched"
        if method not in METHODS:
            return f"a capture does not send {method} requests"
        if self.requests >= MAX_REQUESTS:
            return f"the page made more than {MAX_REQUESTS} requests"
        if self.budget.used >= self.budget.limit:
            return self.budget.spent
        return None

    async def _follow(self, url: str, method: str, sent: dict[str, str]) -> tuple[Answer, str]:
        """The answer at the end of the URL's redirects, each hop under the policy."""
        first = url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                answer = await self._fetch(url, method, sent)
            except Refused as exc:
                if url == first:
                    raise
                raise Refused(f"redirected to {url[:200]}: {exc}") from None
            location = dict((k.lower(), v) for k, v in answer.headers).get("location")
            if answer.status not in (301, 302, 303, 307, 308) or not location:
                return answer, url
            following = urljoin(url, location)
            if origin_of(following) != origin_of(url):
                sent = _for_another_origin(sent, url)
            url = following
            if (problem := self._problem(url, method)) is not None:
                raise Refused(problem)
            method = "GET" if answer.status == 303 else method
        raise FetchError(f"More than {MAX_REDIRECTS} redirects")

    async def _fetch(self, url: str, method: str, sent: dict[str, str]) -> Answer:
        self.requests += 1
        if self._session is None:
            self._session = policy_session(self.policy, IDLE_SECONDS)
        if self.origin is not None and origin_of(url) == self.origin:
            sent = {
                **{k: v for k, v in sent.items() if k.lower() not in self.headers},
                **self.headers,
            }
        async with self._fetches:
            return await forward(
                self._session, method, url, sent, policy=self.policy, budget=self.budget
            )

    async def _local(self, route: Route, url: str) -> None:
        if url == LOCAL_URL:
            assert self.html is not None
            await route.fulfill(status=200, body=self.html, headers={"Content-Type": "text/html"})
        else:
            # The HTML file came alone: the files it names beside it do not exist here.
            self._refuse(url, "a file beside the HTML file (only the one file was given)")
            await route.fulfill(status=404, body=b"", headers={"Content-Type": "text/plain"})

    def _refuse(self, url: str, reason: str) -> None:
        self.requests += 1  # a refused request counts: a page cannot ask forever
        self.refusals += 1
        self._reason(url, reason)
        if len(self.refused) < KEEP_REFUSALS:
            self.refused.append({"url": url[:500], "reason": reason})

    def _reason(self, url: str, reason: str) -> None:
        if len(self.reasons) < KEEP_REASONS:
            self.reasons[url] = reason


def _for_another_origin(headers: dict[str, str], came_from: str) -> dict[str, str]:
    """A request's headers as a redirect takes them to another origin: no credentials, and the
    referrer cut to its origin."""
    out = {k: v for k, v in headers.items() if k.lower() not in CREDENTIALS}
    for name in [k for k in out if k.lower() == "referer"]:
        scheme, host, port = origin_of(came_from)
        out[name] = f"{scheme}://{host}:{port}/"
    return out


async def _fulfill(route: Route, answer: Answer) -> None:
    await route.fulfill(status=answer.status, headers=_joined(answer.headers), body=answer.body)


def _joined(headers: list[tuple[str, str]]) -> dict[str, str]:
    """Playwright takes one value per name: repeated headers joined as HTTP allows
    (Set-Cookie by newlines, which Chromium's fulfilment splits again)."""
    out: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        if key in out:
            out[key] += ("\n" if key == "set-cookie" else ", ") + value
        else:
            out[key] = value
    return out
