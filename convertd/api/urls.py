"""The address clients reached this server by, for the absolute URLs answers carry."""

from __future__ import annotations

from aiohttp import web

from convertd.api.state import CONFIG


def base_url(request: web.Request) -> str:
    scheme, host = request.scheme, request.host
    if request.app[CONFIG].trust_proxy:
        scheme = request.headers.get("X-Forwarded-Proto", scheme).split(",")[0].strip()
        host = request.headers.get("X-Forwarded-Host", host).split(",")[0].strip()
    return f"{scheme}://{host}"
