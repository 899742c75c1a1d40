"""The API as an OpenAPI 3.0 document, built from the route table (served at /v1/openapi.json
and fuzzed in the tests)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

from aiohttp import web

from convertd import __version__
from convertd.api.routes import Route
from convertd.api.urls import base_url
from convertd.store.migrations import SCHEMA_VERSION

ERROR = {"$ref": "#/components/schemas/Error"}


def error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}


def json_body(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


# What any route that needs a key may answer before its handler runs.
AUTH_ERRORS = {
    "401": error("Missing, unknown or revoked API key"),
    "403": error("Plan without API access, an IP or domain restriction, or a missing scope"),
    "429": error("Rate limit reached; see Retry-After"),
}


# CloudConvert's error body, which /v2 answers with.
V2_ERROR = {
    "type": "object",
    "required": ["message", "code"],
    "properties": {
        "message": {"type": "string"},
        "code": {"type": "string"},
        "errors": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
    },
    "additionalProperties": False,
}
V1_ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "hint": {"type": "string"},
    },
    "additionalProperties": False,
}


def openapi_document(
    title: str, routes: Sequence[Route], server_url: str, *, v2: bool = False
) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {"summary": route.summary, **route.operation}
        responses = dict(operation.get("responses") or {"200": {"description": "OK"}})
        if route.public:
            operation["security"] = []
        else:
            responses.update(AUTH_ERRORS)
        operation["responses"] = responses
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": __version__},
        "servers": [{"url": server_url}],
        "components": {
            "securitySchemes": {
                "header": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
                "query": {"type": "apiKey", "in": "query", "name": "api_key"},
            },
            "schemas": {"Error": V2_ERROR if v2 else V1_ERROR},
        },
        "security": [{"header": []}, {"bearer": []}, {"query": []}],
        "paths": paths,
    }


def index_route(version: str, routes: Callable[[], Sequence[Route]], **extra: Any) -> Route:
    """`GET /{version}/` (no key): the version and every endpoint of `routes()`, plus `extra`."""

    async def api_info(request: web.Request) -> web.Response:
        return web.json_response(
            {
                **extra,
                "name": "convertd",
                "version": __version__,
                "schema_version": SCHEMA_VERSION,  # of the database this convertd writes
                "api_version": version,
                "endpoints": [
                    {"method": r.method, "path": r.path, "description": r.summary} for r in routes()
                ],
                "docs_url": f"{base_url(request)}/{version}/docs",
            }
        )

    return Route(
        "GET",
        f"/{version}/",
        api_info,
        "API version info and endpoints; needs no key",
        public=True,
        aliases=(f"/{version}",),
        operation={"responses": {"200": json_body("Version and endpoints", {"type": "object"})}},
    )


def self_description(
    version: str, title: str, routes: Callable[[], Sequence[Route]], *, v2: bool = False
) -> list[Route]:
    """`GET /{version}/docs` (the package's reference.md) and `GET /{version}/openapi.json`
    (made from `routes()`, which includes these two)."""

    async def docs(request: web.Request) -> web.Response:
        package = resources.files(f"convertd.api.{version}")
        text = package.joinpath("reference.md").read_text(encoding="utf-8")
        return web.Response(text=text, content_type="text/markdown")

    async def openapi(request: web.Request) -> web.Response:
        document = openapi_document(title, routes(), base_url(request), v2=v2)
        return web.json_response(document)

    return [
        Route(
            "GET",
            f"/{version}/docs",
            docs,
            "This API's reference (Markdown)",
            public=True,
            operation={
                "responses": {"200": {"description": "Markdown", "content": {"text/markdown": {}}}}
            },
        ),
        Route(
            "GET",
            f"/{version}/openapi.json",
            openapi,
            "This API as an OpenAPI 3 document",
            public=True,
            operation={"responses": {"200": json_body("OpenAPI 3.0", {"type": "object"})}},
        ),
    ]
