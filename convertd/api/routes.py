"""Routes, described once: each `Route` carries what the router, the authentication middleware,
the endpoint list and the OpenAPI document need, so none of them keeps a copy of its own."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractResource

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclasses.dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str  # one line, for the endpoint list and the OpenAPI document
    public: bool = False  # answers without a key (and counts against no quota)
    scope: str | None = None  # the key scope it needs (CloudConvert's names; see store/keys.py)
    counted: bool = True  # a call against the key's plan (False: the admin's read-only views)
    aliases: tuple[str, ...] = ()  # other paths for the same thing (`/v1` for `/v1/`)
    # The OpenAPI operation beyond its summary: parameters, requestBody, responses. Routes
    # that need a key get the authentication errors added for them.
    operation: dict[str, Any] = dataclasses.field(default_factory=dict)


PUBLIC = web.AppKey("public_routes", set[tuple[AbstractResource, str]])
SCOPE = web.AppKey("route_scopes", dict[tuple[AbstractResource, str], str])
UNCOUNTED = web.AppKey("uncounted_routes", set[tuple[AbstractResource, str]])


def add_routes(app: web.Application, routes: Sequence[Route]) -> None:
    public = app.setdefault(PUBLIC, set())
    scopes = app.setdefault(SCOPE, {})
    uncounted = app.setdefault(UNCOUNTED, set())
    for route in routes:
        for path in (route.path, *route.aliases):
            if route.method == "GET":
                added = app.router.add_get(path, route.handler)
            else:
                added = app.router.add_route(route.method, path, route.handler)
            if route.public:
                public.add((added.resource, route.method))
            if route.scope:
                scopes[(added.resource, route.method)] = route.scope
            if not route.counted:
                uncounted.add((added.resource, route.method))


def _route_key(request: web.Request) -> tuple[AbstractResource | None, str]:
    method = "GET" if request.method == "HEAD" else request.method
    return request.match_info.route.resource, method


def is_public(request: web.Request) -> bool:
    return _route_key(request) in request.app.get(PUBLIC, set())


def is_counted(request: web.Request) -> bool:
    return _route_key(request) not in request.app.get(UNCOUNTED, set())


def scope_of(request: web.Request) -> str | None:
    """The scope a key needs for this route."""
    resource, method = _route_key(request)
    return request.app.get(SCOPE, {}).get((resource, method)) if resource else None
