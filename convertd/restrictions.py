"""Key restrictions: which client addresses (`ip`) or web origins (`domain`) may use a key."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

_DOMAIN = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
)


def normalise_allowed(restriction_type: str, values: list[str]) -> list[str]:
    """Validate and canonicalise the allowed IPs/networks or domains; ValueError names a bad one."""
    out: list[str] = []
    for raw in values:
        value = raw.strip()
        if restriction_type == "ip":
            try:
                network = ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(f"{raw!r} is not an IP address or CIDR range") from None
            single = network.num_addresses == 1
            out.append(str(network.network_address) if single else str(network))
        elif restriction_type == "domain":
            domain = value.lower().rstrip(".")
            if domain.startswith("*."):
                domain = domain[2:]  # subdomains are always allowed; accept the familiar spelling
            if not _DOMAIN.match(domain):
                raise ValueError(f"{raw!r} is not a domain name such as example.com")
            out.append(domain)
    return out


def ip_allowed(allowed: list[str], remote: str | None) -> bool:
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for entry in allowed:
        network = ipaddress.ip_network(entry, strict=False)
        if address.version == network.version and address in network:
            return True
    return False


def request_domain(origin: str | None, referer: str | None) -> str | None:
    """The host named by Origin, else by Referer, lower-cased; None if neither names one."""
    for header in (origin, referer):
        if header and header != "null":
            host = urlsplit(header.strip()).hostname
            if host:
                return host.lower().rstrip(".")
    return None


def domain_allowed(allowed: list[str], host: str | None) -> bool:
    if not host:
        return False
    return any(host == domain or host.endswith("." + domain) for domain in allowed)
