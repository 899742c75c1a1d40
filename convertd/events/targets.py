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
from convertd.fetch import Policy, parse_networks

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
        host = parts.hostname
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        return "must be a valid http or https URL"
    if parts.scheme not in ("http", "https") or not host:
        return "must be an http or https URL"
    if parts.username or parts.password:
        return "must not carry a user name or password"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if not policy(config).permits(address):
        return (
            f"goes to {address}, a private or link-local address, which webhooks reach only when "
            "the admin allows its network (webhook_allow)"
        )
    return None
