"""`GET /v1/keys/me`: the calling key, its plan and its quota as it stands."""

from __future__ import annotations

from aiohttp import web

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
            "rate_limits": {
                "calls_per_day": key.plan.calls_per_day,
                "calls_per_minute": key.plan.calls_per_minute,
                "used_today": usage.day.used,
                "used_this_minute": usage.minute.used,
                "remaining_today": usage.day.remaining,
            },
        }
    )
