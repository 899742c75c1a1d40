"""The address clients reached this server by, for the absolute URLs answers carry."""

from __future__ import annotations

import dataclasses

from aiohttp import web

from convertd.api.state import CONFIG


@dataclasses.dataclass(frozen=True)
class Site:
    """What links are built from when no request is at hand (a webhook's payload): the app, and
    the address clients reach it by (the `public_url` setting)."""

    app: web.Application
    base: str

    @classmethod
    def of(cls, app: web.Application) -> Site:
        return cls(app, app[CONFIG].base_url)


# Whatever answers are rendered for: a request, or the site as a whole.
Reached = web.Request | Site


def base_url(request: Reached) -> str:
    if isinstance(request, Site):
        return request.base
    scheme, host = request.scheme, request.host
    if request.app[CONFIG].trust_proxy:
        scheme = request.headers.get("X-Forwarded-Proto", scheme).split(",")[0].strip()
        host = request.headers.get("X-Forwarded-Host", host).split(",")[0].strip()
    return f"{scheme}://{host}"
