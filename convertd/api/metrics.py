"""`GET /metrics` for Prometheus, and the middleware that counts and times every request.

The endpoint needs a key with the `metrics` scope, which no key has unless it was made with it
(`convertd keys create --scope metrics`): the metrics name the keys that hit their limits, and
the load on the box. A scrape is not counted against the key's plan (Prometheus asks every 15 s,
more than a day's calls on the basic plan), nor needs a plan with API access. With
`metrics_enabled = false` neither the endpoint nor the middleware exists.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client.exposition import choose_encoder

from convertd import logs
from convertd.api.auth import authenticate
from convertd.api.routes import Handler, Route
from convertd.api.state import API_KEY, CALLS, DB, METRICS
from convertd.errors import Forbidden
from convertd.metrics import UNMATCHED, Metrics
from convertd.store import readings
from convertd.store.keys import METRICS_SCOPE


def metrics_middleware(metrics: Metrics) -> Middleware:
    """Count and time each request by its route's template (`/v1/status/{job_id}`), never its
    path, and the status it was answered with."""

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = 0  # the client went away: no answer to count
            raise
        finally:
            if status:
                route = await _route_of(request)
                held = route in HELD_ROUTES or route.startswith("/sync/") or "wait" in request.query
                seconds = None if held else time.perf_counter() - started
                metrics.request_answered(request.method, route, status, seconds)

    return record


# Requests that wait for something to happen (event streams, /sync/v2/..., `?wait=`): counted,
# but not timed, as their time is the client's choice and would swamp the latency histogram.
HELD_ROUTES = frozenset({"/v1/events", "/v2/events"})


async def _route_of(request: web.Request) -> str:
    """The template of the request's route; for a 405, that of the path's resource (aiohttp's
    match leaves it out); UNMATCHED when no route has the path."""
    resource = request.match_info.route.resource
    if resource is not None:
        return resource.canonical
    if isinstance(request.match_info.http_exception, web.HTTPMethodNotAllowed):
        for candidate in request.app.router.resources():
            _, allowed = await candidate.resolve(request)
            if allowed:
                return candidate.canonical
    return UNMATCHED


async def scrape(request: web.Request) -> web.Response:
    # Not authorize(): a scrape counts against no plan, and needs none with API access.
    key = await authenticate(request, scrape=True)
    # Log lines, the access log's among them, name the key as for any request.
    logs.key_name.set(key.name)
    logs.key_id.set(key.id)
    request[API_KEY] = key
    if METRICS_SCOPE not in key.scopes:
        raise Forbidden(
            f"This key lacks the {METRICS_SCOPE} scope, which GET /metrics needs.",
            f"Make a key for Prometheus: `convertd keys create --name prometheus "
            f"--scope {METRICS_SCOPE}`.",
        )
    request.app[CALLS].seen(key)  # `keys list` shows when it last scraped
    metrics = request.app[METRICS]
    metrics.show(await readings.read(request.app[DB]))
    # The library's own choice of format by the Accept header (Prometheus asks for
    # OpenMetrics), and the rendering off the event loop.
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = await asyncio.to_thread(encode, metrics.registry)
    return web.Response(body=body, headers={"Content-Type": content_type})


ROUTES = [
    Route(
        "GET",
        "/metrics",
        scrape,
        "Prometheus metrics (a key with the metrics scope; not counted against its plan)",
        public=True,  # to the auth middleware: the handler checks the key itself, uncounted
    )
]
