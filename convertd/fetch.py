"""Everything the daemon downloads goes through here, under one network policy.

The policy: only http and https; no address that is loopback, private, link-local, multicast or
otherwise not globally routable, unless the admin allowed its network (`import_url_allow`). The
address checked is the address connected to: names are resolved here and only the allowed
addresses are handed to the connection (no DNS rebinding between check and use); an address
written in the URL is checked before it is used. Redirects are followed by hand, each one checked
anew; proxies from the environment are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import socket
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_REDIRECTS = 10
CHUNK = 256 * 1024
USER_AGENT = "convertd (import/url)"


class FetchError(Exception):
    """The download was refused or failed; the message says why, in the user's terms."""


class BadTarget(FetchError):
    """The URL cannot be used as it is: trying again will not help."""


class Refused(BadTarget):
    """The policy does not allow the address."""


def parse_networks(values: Sequence[str]) -> tuple[Network, ...]:
    """CIDRs (or single addresses) as networks; ValueError names a bad one."""
    networks = []
    for value in values:
        text = value.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP network such as 192.168.1.0/24") from None
    return tuple(networks)


# IPv6 forms that carry an IPv4 address a packet may end up at (NAT64 and IPv4-compatible).
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def _embedded_ipv4(address: Address) -> Address:
    """The IPv4 address an IPv6 one leads to, where it embeds one; else the address itself."""
    if not isinstance(address, ipaddress.IPv6Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in net for net in _NAT64) or (
        address in _IPV4_COMPATIBLE and int(address) > 1  # not :: or ::1
    ):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


@dataclasses.dataclass(frozen=True)
class Policy:
    allow: tuple[Network, ...] = ()
    setting: str = "import_url_allow"  # where the admin allows more, for the refusal message

    def permits(self, address: Address) -> bool:
        address = _embedded_ipv4(address)
        if any(address in network for network in self.allow):
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
            return False
        return address.is_global and not address.is_multicast

    def check(self, host: str, address: str) -> None:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            raise FetchError(f"{host} resolved to {address!r}, which is not an address") from None
        if not self.permits(ip):
            raise Refused(
                f"{host} is at {ip}, a loopback, private, link-local or multicast address, "
                f"which convertd does not connect to unless the admin allows its network "
                f"({self.setting})"
            )


class PolicyResolver(AbstractResolver):
    """Resolves names and hands the connection only the addresses the policy permits."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, family=socket.AF_UNSPEC
            )
        except socket.gaierror as exc:
            raise FetchError(f"The host {host} could not be found") from exc
        results: list[ResolveResult] = []
        refused: FetchError | None = None
        for fam, _, proto, _, sockaddr in infos:
            address = str(sockaddr[0])
            try:
                self._policy.check(host, address)
            except FetchError as exc:
                refused = refused or exc
                continue
            results.append(
                {
                    "hostname": host,
                    "host": address,
                    "port": int(sockaddr[1]),
                    "family": fam,
                    "proto": proto,
                    "flags": socket.AI_NUMERICHOST,
                }
            )
        if not results:
            raise refused or FetchError(f"The host {host} has no address")
        return results

    async def close(self) -> None:
        return None


@dataclasses.dataclass(frozen=True)
class Fetched:
    path: Path
    name: str  # from Content-Disposition or the URL's path; may be empty
    size: int


def _name_from(response: aiohttp.ClientResponse) -> str:
    disposition = response.content_disposition
    if disposition is not None and disposition.filename:
        return disposition.filename
    return unquote(urlsplit(str(response.url)).path.rsplit("/", 1)[-1])


async def fetch(
    url: str,
    dest: Path,
    *,
    policy: Policy,
    max_bytes: int,
    timeout: float,
    idle_timeout: float,
    headers: dict[str, str] | None = None,
) -> Fetched:
    """Download `url` to `dest` under the policy and limits; FetchError says what went wrong."""
    connector = aiohttp.TCPConnector(resolver=PolicyResolver(policy), use_dns_cache=False)
    client_timeout = aiohttp.ClientTimeout(total=None, sock_read=idle_timeout)
    # The file as it is, not a compressed transfer of it (a server that compresses anyway is
    # decoded, and the decoded size is what max_bytes caps).
    sent = {"User-Agent": USER_AGENT, **(headers or {}), "Accept-Encoding": "identity"}
    # One deadline for the whole chain of redirects, not one per hop.
    late = f"The download took longer than the {timeout:.0f} s limit"
    async with (
        in_user_terms(url, late, "The download failed"),
        asyncio.timeout(timeout),
        aiohttp.ClientSession(
            connector=connector, timeout=client_timeout, trust_env=False, auto_decompress=True
        ) as session,
    ):
        return await _follow(session, url, dest, policy, max_bytes, sent)


@contextlib.asynccontextmanager
async def in_user_terms(url: str, late: str, failed: str) -> AsyncIterator[None]:
    """aiohttp's and the clock's errors as a FetchError that says what happened."""
    try:
        yield
    except TimeoutError:
        raise FetchError(late) from None
    except aiohttp.InvalidURL:
        raise BadTarget(f"The URL is not valid: {url[:200]}") from None
    except aiohttp.ClientPayloadError:
        raise FetchError("The server closed the connection before the whole file arrived") from None
    except aiohttp.ClientConnectorError as exc:
        reason = exc.os_error.strerror or str(exc.os_error)
        raise FetchError(f"Could not connect to {exc.host}:{exc.port}: {reason}") from None
    except aiohttp.ServerDisconnectedError:
        raise FetchError("The server closed the connection without answering") from None
    except aiohttp.ClientError as exc:
        raise FetchError(f"{failed}: {exc}") from None


async def _follow(
    session: aiohttp.ClientSession,
    url: str,
    dest: Path,
    policy: Policy,
    max_bytes: int,
    headers: dict[str, str],
) -> Fetched:
    origin = origin_of(url)
    for _ in range(MAX_REDIRECTS + 1):
        host = target_host(url)
        if origin_of(url) != origin:
            # The caller's headers (credentials, cookies) were meant for the first origin only,
            # as browsers, curl and requests have it.
            headers = {
                "User-Agent": headers.get("User-Agent", USER_AGENT),
                "Accept-Encoding": "identity",
            }
        check_literal(host, policy)
        async with session.get(url, headers=headers, allow_redirects=False) as response:
            check_peer(response, host, policy)
            if response.status in (301, 302, 303, 307, 308):
                location = response.headers.get("Location")
                if not location:
                    raise FetchError(f"The server answered {response.status} without a Location")
                url = urljoin(url, location)
                continue
            if response.status != 200:
                raise FetchError(f"The server answered {response.status} {response.reason}")
            if response.content_length is not None and response.content_length > max_bytes:
                raise _too_large(max_bytes)
            size = await _save(response, dest, max_bytes)
            return Fetched(dest, _name_from(response), size)
    raise FetchError(f"More than {MAX_REDIRECTS} redirects")


async def post(
    url: str, body: bytes, headers: dict[str, str], *, policy: Policy, timeout: float
) -> tuple[int, str]:
    """POST `body` to `url` once, under the policy, and read the answer's status (redirects are
    not followed: a receiver that moved says so with its answer). FetchError if none came."""
    host = target_host(url)
    check_literal(host, policy)
    connector = aiohttp.TCPConnector(resolver=PolicyResolver(policy), use_dns_cache=False)
    async with (
        in_user_terms(url, f"No answer within {timeout:.0f} s", "The request failed"),
        asyncio.timeout(timeout),
        aiohttp.ClientSession(connector=connector, trust_env=False) as session,
        session.post(url, data=body, headers=headers, allow_redirects=False) as response,
    ):
        check_peer(response, host, policy)
        return response.status, response.reason or ""


def origin_of(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in: what same-origin means."""
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        port = None
    return parts.scheme, (parts.hostname or "").lower(), port


def target_host(url: str) -> str:
    """The host of an http(s) URL as aiohttp will connect to it: yarl's reading, in which
    full-width digits, ideographic dots and other Unicode spellings of an address are that
    address (urllib's reading is not what is connected to). BadTarget if there is none."""
    try:
        parsed = yarl.URL(url)
        host = parsed.raw_host
    except (ValueError, TypeError):
        raise BadTarget(f"The URL is not valid: {url[:200]}") from None
    if parsed.scheme not in ("http", "https") or not host:
        raise BadTarget(f"Only http and https URLs are fetched, not {url[:200]!r}")
    return host


def check_literal(host: str, policy: Policy) -> None:
    """A URL that names an address is checked here: aiohttp connects to it without asking the
    resolver. `host` must be target_host()'s reading."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return
    policy.check(host, host.strip("[]"))


def check_peer(response: aiohttp.ClientResponse, host: str, policy: Policy) -> None:
    """After the fact, where the connection is still held (a body not yet read in full): the
    peer is checked too. What keeps requests from going out is the resolver and
    check_literal; this catches a connection that got past them (a bug) before its body is
    used."""
    connection: Any = response.connection
    transport = connection.transport if connection is not None else None
    peer = transport.get_extra_info("peername") if transport is not None else None
    if peer:
        policy.check(host, str(peer[0]))


def _too_large(limit: int) -> FetchError:
    return FetchError(f"The file is larger than this server's limit of {limit:,} bytes")


async def _save(response: aiohttp.ClientResponse, dest: Path, max_bytes: int) -> int:
    size = 0
    with dest.open("wb") as fh:
        async for chunk in response.content.iter_chunked(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(max_bytes)
            await asyncio.to_thread(fh.write, chunk)
    return size
