"""Request plumbing: the JSON error renderer, authentication, quotas and rate-limit headers."""

from __future__ import annotations

import errno
import logging
import sqlite3
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from convertd import keys, restrictions
from convertd.api.state import API_KEY, CALLS, CONFIG, DB, USAGE
from convertd.errors import ConvertdError, Forbidden, Unauthorized, error_body

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Routes that answer without a key.
PUBLIC_ROUTES = {"api_info", "api_info_bare", "docs", "openapi"}


def json_error(
    status: int,
    error: str,
    message: str,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.json_response(error_body(error, message, hint), status=status, headers=headers)


_HTTP_HINTS = {
    404: "See GET /v1/ for the list of endpoints.",
    405: "See GET /v1/ for the methods each endpoint accepts.",
    413: "Send a smaller file, or ask the admin to raise max_upload_bytes.",
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as `{"error","message","hint"}`; nothing leaves as HTML or a traceback."""
    try:
        return await handler(request)
    except ConvertdError as exc:
        return json_error(exc.status, exc.error, exc.message, exc.hint, exc.headers())
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            message = f"There is no endpoint at {request.path}."
        elif exc.status == 405:
            message = f"{request.method} is not allowed on {request.path}."
        elif exc.text and not exc.text.startswith(f"{exc.status}:"):
            message = exc.text
        else:
            message = exc.reason
        headers = {k: v for k, v in exc.headers.items() if k in {"Allow", "Retry-After"}}
        return json_error(exc.status, exc.reason, message, _HTTP_HINTS.get(exc.status), headers)
    except HttpProcessingError as exc:  # a malformed body aiohttp noticed while we read it
        status = exc.code if 400 <= exc.code < 500 else 400
        return json_error(
            status,
            "Bad Request",
            "The request is malformed.",
            "Send standard HTTP with a well-formed body.",
        )
    except (OSError, sqlite3.OperationalError) as exc:
        if getattr(exc, "errno", None) == errno.ENOSPC or "disk is full" in str(exc):
            logger.error("disk full on %s %s", request.method, request.path)
            return json_error(
                507,
                "Insufficient Storage",
                "The server's disk is full.",
                "Try again later; the admin can free space.",
            )
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return _internal_error()
    except Exception:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return _internal_error()


def _internal_error() -> web.Response:
    return json_error(
        500,
        "Internal Server Error",
        "Something went wrong inside convertd.",
        "Try again; if it keeps happening, the server log says what failed.",
    )


def _presented_key(request: web.Request) -> str | None:
    if key := request.headers.get("X-API-Key"):
        return key.strip()
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if key := request.query.get("api_key"):
        return key.strip()
    return None


def client_address(request: web.Request) -> str | None:
    if request.app[CONFIG].trust_proxy and (forwarded := request.headers.get("X-Forwarded-For")):
        return forwarded.split(",")[0].strip()
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return str(peer[0]) if peer else request.remote


async def authenticate(request: web.Request) -> keys.ApiKey:
    secret = _presented_key(request)
    if not secret:
        raise Unauthorized(
            "No API key was sent with this request.",
            "Send your key as an X-API-Key header, an Authorization: Bearer header, or ?api_key=.",
        )
    key = await keys.find_by_secret(request.app[DB], secret)
    if key is None:
        raise Unauthorized(
            "The API key is not valid, or it has been revoked.",
            "Check the key, or create a new one with `convertd keys create`.",
        )
    if not key.plan.api_access:
        raise Forbidden(
            f"The {key.plan.name!r} plan does not include API access.",
            "Upgrade: ask the admin to move this key to a plan with API access, or to enable it "
            f"with `convertd plans set {key.plan.name} --api`.",
        )
    if key.restriction_type == "ip":
        address = client_address(request)
        if not restrictions.ip_allowed(key.allowed_ips, address):
            raise Forbidden(
                f"This key may not be used from {address}.",
                "Use the key from one of its allowed IP addresses, or use another key.",
            )
    elif key.restriction_type == "domain":
        host = restrictions.request_domain(
            request.headers.get("Origin"), request.headers.get("Referer")
        )
        if not restrictions.domain_allowed(key.allowed_domains, host):
            where = f"the domain {host}" if host else "a request without Origin or Referer"
            raise Forbidden(
                f"This key may not be used from {where}.",
                "Call the API from a page on one of the key's allowed domains.",
            )
    return key


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate and count the call before the handler runs (and before a body is read)."""
    route = request.match_info.route
    if request.match_info.http_exception is not None or route.name in PUBLIC_ROUTES:
        return await handler(request)
    key = await authenticate(request)
    usage = await request.app[CALLS].count(key)
    request[API_KEY] = key
    request[USAGE] = usage
    return await handler(request)


async def add_rate_limit_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every counted call says where its tightest window stands."""
    usage = request.get(USAGE)
    if usage is not None and (window := usage.tightest()) is not None:
        response.headers.update(window.headers())
