"""The API as an OpenAPI 3.0 document, built from the route table (served at /v1/openapi.json
and fuzzed in the tests)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from convertd import __version__
from convertd.api.routes import Route

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
