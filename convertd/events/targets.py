"""Where webhooks may be sent, and what a webhook URL must look like.

Deliveries may go to public addresses and to loopback, where the local apps that want to hear
about conversions live. Other private ranges (a LAN: routers, NAS admin pages) need the admin's
word (`webhook_allow`): a delivery is only a POST of signed JSON whose answer is never read back,
but a POST can still change things on a device that trusts its LAN. import/url is stricter
(loopback refused too) because it reads what it fetches back into a result the client downloads.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from convertd.config import Config
from convertd.fetch import BadTarget, Policy, parse_networks, target_host

LOOPBACK = parse_networks(["127.0.0.0/8", "::1/128"])
MAX_URL = 2000


def policy(config: Config) -> Policy:
    return Policy(LOOPBACK + parse_networks(config.webhook_allow), setting="webhook_allow")


def url_problem(config: Config, url: str) -> str | None:
    """Why `url` cannot be a webhook URL, or None; an address written in it is checked now,
    a name when a delivery resolves it."""
    if len(url) > MAX_URL:
        return f"must be at most {MAX_URL} characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a bad port)
        host = target_host(url)  # as it will be connected to
    except (ValueError, BadTarget):
        return "must be a valid http or https URL"
    if parts.username or parts.password:
        return "must not carry a user name or password"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        last = host.rstrip(".").rsplit(".", 1)[-1]
        if last.isdigit() or last.startswith("0x"):
            # 127.1, 2130706433, 0x7f.1: short forms of addresses, read differently by
            # different resolvers; no real name ends in a number.
            return "must write an IPv4 address as four numbers, e.g. 127.0.0.1"
        if not all(c.isalnum() or c in "-._" for c in host):
            return "must be a valid http or https URL (its host has characters a name cannot)"
        return None
    if not policy(config).permits(address):
        return (
            f"goes to {address}, a private or link-local address, which webhooks reach only when "
            "the admin allows its network (webhook_allow)"
        )
    return None
