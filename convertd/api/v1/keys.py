"""`GET /v1/keys/me`: the calling key, its plan and its quota as it stands."""

from __future__ import annotations

from aiohttp import web

from convertd.api.limits import rate_limits
from convertd.api.state import API_KEY, CALLS
from convertd.store import keys


async def keys_me(request: web.Request) -> web.Response:
    calls = request.app[CALLS]
    key = await calls.key_with_usage(request[API_KEY].id) or request[API_KEY]
    usage = await calls.usage(key)
    return web.json_response(
        {
            "ok": True,
            **keys.describe(key),
            "rate_limits": rate_limits(key, usage),
        }
    )
