"""Who is calling: the key (from a header, a bearer token or `?api_key=`), its plan and its IP or
domain restriction; then the call is counted (limits.py) before any body is read."""

from __future__ import annotations

from aiohttp import web

from convertd import logs, restrictions
from convertd.api.limits import count_call
from convertd.api.routes import Handler, is_counted, is_public, scope_of
from convertd.api.state import API_KEY, CONFIG, READS
from convertd.errors import Forbidden, Unauthorized
from convertd.store import keys


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


async def authenticate(request: web.Request, *, scrape: bool = False) -> keys.ApiKey:
    """The key of this request, checked against its plan's API access (which a `scrape` of
    /metrics with a metrics key does not need) and its IP or domain restriction."""
    key = await _live_key(request)
    admit(request, key, None, scrape=scrape)
    return key


async def _live_key(request: web.Request) -> keys.ApiKey:
    secret = _presented_key(request)
    if not secret:
        raise Unauthorized(
            "No API key was sent with this request.",
            "Send your key as an X-API-Key header, an Authorization: Bearer header, or ?api_key=.",
        )
    key = await request.app[READS].key(secret)
    if key is None:
        raise Unauthorized(
            "The API key is not valid, or it has been revoked.",
            "Check the key, or create a new one with `convertd keys create`.",
        )
    return key


def admit(
    request: web.Request, key: keys.ApiKey, scope: str | None, *, scrape: bool = False
) -> None:
    """Whether this live key may make this request from this client: its plan's API access,
    its IP or domain restriction, the route's scope; Forbidden says why not. The one home of
    that decision: every call asks it, and an open event stream asks it again at each message
    and heartbeat (events/stream.py), so a `convertd keys set` that would refuse the stream
    now ends it."""
    if not key.plan.api_access and not (scrape and keys.METRICS_SCOPE in key.scopes):
        raise Forbidden(
            f"The {key.plan.name!r} plan does not include API access.",
            "Upgrade: ask the admin to move this key to a plan with API access (`convertd keys "
            f"set {key.id} --plan PLAN`), or to enable it with `convertd plans set "
            f"{key.plan.name} --api`.",
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
    if scope is not None and scope not in key.scopes:
        if scope == keys.ADMIN_SCOPE:
            raise Forbidden(
                f"{request.method} {request.path} is for the server's admin; this key is not an "
                "admin key.",
                "Use an admin key: on the server, `convertd keys create --name NAME --admin`.",
            )
        raise Forbidden(
            f"This key lacks the {scope} scope, which {request.method} {request.path} needs.",
            f"Use a key with that scope: `convertd keys create --scope {scope} ...`.",
        )


async def authorize(request: web.Request, scope: str | None) -> keys.ApiKey:
    """The key of this request, with the scope it needs, counted against its plan (unless its
    route says it is not counted)."""
    key = await _live_key(request)
    admit(request, key, scope)
    # Log lines name the key (never its secret) from here on, a 429 among them.
    logs.key_name.set(key.name)
    logs.key_id.set(key.id)
    if is_counted(request):
        await count_call(request, key)
    request[API_KEY] = key
    return key


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate and count the call before the handler runs (and before a body is read)."""
    if request.match_info.http_exception is not None or is_public(request):
        return await handler(request)
    await authorize(request, scope_of(request))
    return await handler(request)
