"""Fetching for a browser (browser/network.py): one request, one hop, under the same network
policy as every download (fetch.py), with a byte budget that requests running at once share."""

from __future__ import annotations

import dataclasses

import aiohttp

from convertd.fetch import (
    CHUNK,
    FetchError,
    Policy,
    PolicyResolver,
    check_literal,
    check_peer,
    in_user_terms,
    target_host,
)


def policy_session(policy: Policy, idle_timeout: float) -> aiohttp.ClientSession:
    """A session whose every connection goes only where the policy permits (for a caller that
    makes many requests, as a captured page does)."""
    connector = aiohttp.TCPConnector(resolver=PolicyResolver(policy), use_dns_cache=False)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, sock_read=idle_timeout),
        trust_env=False,
        auto_decompress=True,
        cookie_jar=aiohttp.DummyCookieJar(),  # the browser keeps its own cookies
    )


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class OverBudget(FetchError):
    pass


class Budget:
    """Bytes that several downloads share, counted as they arrive (so downloads running at once
    cannot each take the whole)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @property
    def spent(self) -> str:
        return f"more than {self.limit:,} bytes downloaded in all"

    def check(self, more: int = 0) -> None:
        if self.used + more > self.limit:
            raise OverBudget(self.spent)

    def take(self, size: int) -> None:
        self.used += size
        self.check()


async def forward(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str],
    *,
    policy: Policy,
    budget: Budget,
) -> Answer:
    """One request, one hop, under the policy (a redirect is answered, not followed: the caller
    decides where to go next, and that request comes through here too). The body is decoded,
    and its decoded size is taken from `budget`. FetchError says what went wrong."""
    host = target_host(url)
    check_literal(host, policy)
    sent = {k: v for k, v in headers.items() if k.lower() not in ("host", "accept-encoding")}
    async with (
        in_user_terms(url, "The request took too long", "The request failed"),
        session.request(method, url, headers=sent, allow_redirects=False) as response,
    ):
        check_peer(response, host, policy)
        budget.check(response.content_length or 0)
        chunks = []
        async for chunk in response.content.iter_chunked(CHUNK):
            budget.take(len(chunk))
            chunks.append(chunk)
        kept = [
            (k, v)
            for k, v in response.headers.items()
            if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return Answer(response.status, kept, b"".join(chunks))
