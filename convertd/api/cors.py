"""Browsers as clients: CORS preflights answered, and every answer readable by the origins the
`cors_origins` setting allows (default `*`: keys, not cookies, authenticate, so no credentials
are allowed and no origin gains anything a page could not do with the key it already has)."""

from __future__ import annotations

from aiohttp import web

from convertd.api.routes import Handler
from convertd.api.state import CONFIG

ALLOWED_METHODS = "GET, POST, DELETE, OPTIONS"
# Range and its conditions let a page resume a download (api/downloads.py).
ALLOWED_HEADERS = (
    "X-API-Key, Authorization, Content-Type, X-Request-Id, Range, If-Range, If-None-Match"
)
# What a page may read of an answer beyond the basics: quotas, waits, file names, and what a
# resumed download needs (the piece it got, the validator to resume against).
EXPOSED_HEADERS = (
    "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, Retry-After, "
    "Content-Disposition, X-Request-Id, Content-Range, Accept-Ranges, ETag"
)
PREFLIGHT_MAX_AGE = "600"


def _allowed_origin(request: web.Request) -> str | None:
    origin = request.headers.get("Origin")
    if not origin:
        return None
    allowed = request.app[CONFIG].cors_origins
    if "*" in allowed:
        return "*"
    return origin if origin in allowed else None


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A preflight (OPTIONS with Access-Control-Request-Method) is answered here, before any
    route or key check: it carries no key by design."""
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        headers = {
            "Access-Control-Allow-Methods": ALLOWED_METHODS,
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
        }
        if (origin := _allowed_origin(request)) is not None:
            headers["Access-Control-Allow-Origin"] = origin
            if origin != "*":
                headers["Vary"] = "Origin"
        return web.Response(status=204, headers=headers)
    return await handler(request)


def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every answer (app.py's on_response_prepare), errors and files included: what a
    browser may read."""
    if (origin := _allowed_origin(request)) is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        if origin != "*":
            response.headers["Vary"] = "Origin"
