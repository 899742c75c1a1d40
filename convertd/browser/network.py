"""The gate every request of a captured page goes through.

Chromium fetches nothing itself: each request is handed here (Playwright's routing), fetched
under the daemon's network policy by fetch.forward, redirects followed here (each hop checked
anew), and the answer handed back. So a page cannot
reach a loopback or private address the admin did not allow, however it asks: a sub-resource,
a script's fetch, a redirect, a name that resolves to 127.0.0.1. Other schemes (file:, ftp:)
are refused, and Chromium itself never loads file: URLs into an http page.

A capture may make MAX_REQUESTS requests and download `max_bytes` in all; past either, the rest
are refused. What was refused is kept (the first few, with the reason) for the task's result.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import aiohttp

from convertd.fetch import (
    MAX_REDIRECTS,
    Answer,
    FetchError,
    Policy,
    Refused,
    forward,
    policy_session,
)

if TYPE_CHECKING:
    from playwright.async_api import Request, Route, WebSocketRoute

logger = logging.getLogger(__name__)

MAX_REQUESTS = 1000
KEEP_REFUSALS = 20
METHODS = ("GET", "HEAD")  # a capture reads pages; it does not submit forms elsewhere
IDLE_SECONDS = 30.0
# A given HTML file is served to the page from this origin (.invalid never resolves).
LOCAL_ORIGIN = "http://capture.invalid"
LOCAL_URL = f"{LOCAL_ORIGIN}/"


def origin_of(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.scheme, (parts.hostname or "").lower(), port


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
        self.max_bytes = max_bytes
        self.html = html
        # The caller's headers (credentials, cookies) go to the first URL's origin only.
        self.headers = headers or {}
        self.origin = origin_of(url) if url else None
        self.requests = 0
        self.downloaded = 0
        self.refused: list[dict[str, str]] = []
        self.refusals = 0
        self.reasons: dict[str, str] = {}
        self.moved_to: str | None = None  # where the page's navigation was redirected
        self.kept: dict[str, Answer] = {}
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def handle(self, route: Route) -> None:
        request = route.request
        url = request.url
        if self.html is not None and url.startswith(LOCAL_ORIGIN + "/"):
            await self._local(route, url)
            return
        if (kept := self.kept.pop(url, None)) is not None:
            await _fulfill(route, kept)
            return
        problem = self._problem(url, request.method)
        if problem is None:
            try:
                answer, final = await self._follow(url, request.method, await request.all_headers())
            except Refused as exc:
                problem = str(exc)
            except FetchError as exc:
                self.reasons[url] = str(exc)
                await route.abort("failed")
                return
            else:
                if final != url and request.is_navigation_request() and _top(request):
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

    def _problem(self, url: str, method: str) -> str | None:
        if not url.startswith(("http://", "https://")):
            return "only http and https are fetched"
        if method not in METHODS:
            return f"a capture does not send {method} requests"
        if self.requests >= MAX_REQUESTS:
            return f"the page made more than {MAX_REQUESTS} requests"
        if self.downloaded >= self.max_bytes:
            return f"the page downloaded more than {self.max_bytes:,} bytes"
        return None

    async def _follow(self, url: str, method: str, sent: dict[str, str]) -> tuple[Answer, str]:
        """The answer at the end of the URL's redirects, each hop under the policy. Chromium
        would follow a redirect it was handed without asking the gate, so none is handed to
        it."""
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
            url = urljoin(url, location)
            if (problem := self._problem(url, method)) is not None:
                raise Refused(problem)
            method = "GET" if answer.status == 303 else method
        raise FetchError(f"More than {MAX_REDIRECTS} redirects")

    async def _fetch(self, url: str, method: str, sent: dict[str, str]) -> Answer:
        self.requests += 1
        if self._session is None:
            self._session = policy_session(self.policy, IDLE_SECONDS)
        if self.origin is not None and origin_of(url) == self.origin:
            sent = {**sent, **self.headers}
        answer = await forward(
            self._session,
            method,
            url,
            sent,
            None,
            policy=self.policy,
            max_bytes=self.max_bytes - self.downloaded,
        )
        self.downloaded += len(answer.body)
        return answer

    async def _local(self, route: Route, url: str) -> None:
        if url == LOCAL_URL:
            assert self.html is not None
            await route.fulfill(status=200, body=self.html, headers={"Content-Type": "text/html"})
        else:
            # The HTML file came alone: the files it names beside it do not exist here.
            self._refuse(url, "a file beside the HTML file (only the one file was given)")
            await route.fulfill(status=404, body=b"", headers={"Content-Type": "text/plain"})

    def _refuse(self, url: str, reason: str) -> None:
        self.refusals += 1
        self.reasons[url] = reason
        if len(self.refused) < KEEP_REFUSALS:
            self.refused.append({"url": url[:500], "reason": reason})
        logger.info("capture: refused %s: %s", url[:200], reason)


def _top(request: Request) -> bool:
    try:
        return request.frame.parent_frame is None
    except Exception:  # a request with no frame (a worker's)
        return False


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
