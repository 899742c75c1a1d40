"""Quotas as HTTP sees them: every counted call carries `X-RateLimit-*` for its tightest window,
and a refused one is a 429 with `Retry-After` (the counting itself is store/quotas.py)."""

from __future__ import annotations

import math

from aiohttp import web

from convertd.api.state import CALLS, METRICS, USAGE
from convertd.errors import RateLimited
from convertd.store.keys import ApiKey
from convertd.store.quotas import QuotaExceeded, Usage, WindowUsage


def rate_headers(window: WindowUsage) -> dict[str, str]:
    """The X-RateLimit-* headers; Reset is in unix seconds, as GitHub's API has it."""
    return {
        "X-RateLimit-Limit": str(window.limit),
        "X-RateLimit-Remaining": str(window.remaining),
        "X-RateLimit-Reset": str(window.reset_at),
    }


async def count_call(request: web.Request, key: ApiKey, calls: int = 1) -> Usage:
    """Count this call (or `calls` calls) against the key, or refuse it with a 429."""
    try:
        usage = await request.app[CALLS].count(key, calls)
    except QuotaExceeded as exc:
        request.app[METRICS].rate_limited(key.name)
        full = exc.window
        if calls > 1:
            message = (
                f"This key has {full.remaining} of its {full.limit} calls per {full.window} "
                f"left, and this request needs {calls} more (one per task)."
            )
        else:
            message = f"This key has used all {full.limit} calls allowed per {full.window}."
        raise RateLimited(
            message,
            retry_after=max(1, math.ceil(full.reset_at - exc.at)),
            hint="Wait the number of seconds in Retry-After, or ask the admin to move the key to "
            "a plan with a higher limit (`convertd keys set KEY_ID --plan PLAN`).",
            rate_headers=rate_headers(full),
        ) from None
    request[USAGE] = usage
    return usage


def add_rate_limit_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every answer (app.py's on_response_prepare): a counted call's says where its
    tightest window stands."""
    usage = request.get(USAGE)
    if usage is not None and (window := usage.tightest()) is not None:
        response.headers.update(rate_headers(window))


def rate_limits(key: ApiKey, usage: Usage) -> dict[str, int | None]:
    """The key's limits and where it stands, as `/v1/keys/me` and `/v2/users/me` show them."""
    return {
        "calls_per_day": key.plan.calls_per_day,
        "calls_per_minute": key.plan.calls_per_minute,
        "used_today": usage.day.used,
        "used_this_minute": usage.minute.used,
        "remaining_today": usage.day.remaining,
    }
