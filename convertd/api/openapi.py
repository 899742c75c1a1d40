"""The v1 API as an OpenAPI 3.0 document, served at /v1/openapi.json and fuzzed in the tests."""

from __future__ import annotations

from typing import Any

from convertd import __version__
from convertd.converters.registry import FILETYPES

ERROR = {"$ref": "#/components/schemas/Error"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


AUTH_ERRORS = {
    "401": _error("Missing, unknown or revoked API key"),
    "403": _error("Plan without API access, or an IP or domain restriction"),
    "429": _error("Rate limit reached; see Retry-After"),
}
JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}

CONVERT_FIELDS = {
    "type": "object",
    "properties": {
        "file": {"type": "string", "format": "binary"},
        "file_path": {"type": "string"},
        "filetype": {"type": "string", "enum": list(FILETYPES)},
        "output_format": {"type": "string"},
        "options": {"type": "string", "description": "A JSON object of converter options"},
    },
    "required": ["filetype", "output_format"],
}


def openapi_document(server_url: str) -> dict[str, Any]:
    status_schema = {
        "type": "object",
        "required": ["ok", "job_id", "status"],
        "properties": {
            "ok": {"type": "boolean"},
            "job_id": {"type": "string"},
            "status": {"type": "string", "enum": ["pending", "processing", "finished", "failed"]},
            "progress": {"type": "integer"},
            "download_url": {"type": "string"},
            "error": {"type": "string"},
            "file_name": {"type": "string"},
            "file_size": {"type": "integer"},
            "file_count": {"type": "integer"},
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "convertd v1 API", "version": __version__},
        "servers": [{"url": server_url}],
        "components": {
            "securitySchemes": {
                "header": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
                "query": {"type": "apiKey", "in": "query", "name": "api_key"},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string"},
                        "message": {"type": "string"},
                        "hint": {"type": "string"},
                    },
                    "additionalProperties": False,
                },
            },
        },
        "security": [{"header": []}, {"bearer": []}, {"query": []}],
        "paths": {
            "/v1/": {
                "get": {
                    "security": [],
                    "responses": {"200": _json("Version and endpoints", {"type": "object"})},
                }
            },
            "/v1/formats": {
                "get": {
                    "responses": {
                        "200": _json(
                            "Formats by filetype",
                            {
                                "type": "object",
                                "required": ["ok", "filetypes"],
                                "properties": {
                                    "ok": {"type": "boolean"},
                                    "filetypes": {"type": "object"},
                                },
                            },
                        ),
                        **AUTH_ERRORS,
                    }
                }
            },
            "/v1/upload": {
                "post": {
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "file": {
                                            "type": "array",
                                            "items": {"type": "string", "format": "binary"},
                                        }
                                    },
                                },
                            }
                        },
                    },
                    "responses": {
                        "200": _json(
                            "Stored files",
                            {
                                "type": "object",
                                "required": ["ok", "files"],
                                "properties": {
                                    "ok": {"type": "boolean"},
                                    "files": {"type": "array"},
                                },
                            },
                        ),
                        "400": _error("No file, or a malformed body"),
                        "408": _error("The upload stalled"),
                        "413": _error("Larger than max_upload_bytes"),
                        **AUTH_ERRORS,
                    },
                }
            },
            "/v1/convert": {
                "post": {
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {"schema": CONVERT_FIELDS},
                            "application/x-www-form-urlencoded": {"schema": CONVERT_FIELDS},
                            "application/json": {"schema": {"type": "object"}},
                        },
                    },
                    "responses": {
                        "202": _json(
                            "Job queued",
                            {
                                "type": "object",
                                "required": [
                                    "ok",
                                    "job_id",
                                    "status",
                                    "status_url",
                                    "download_url",
                                ],
                            },
                        ),
                        "400": _error("A missing or invalid field, named in the message"),
                        "404": _error("No such file_path for this key"),
                        "408": _error("The upload stalled"),
                        "413": _error("Larger than max_upload_bytes"),
                        "503": _error("The converter's tool is not installed"),
                        **AUTH_ERRORS,
                    },
                }
            },
            "/v1/status/{job_id}": {
                "get": {
                    "parameters": [JOB_ID],
                    "responses": {
                        "200": _json("The job", status_schema),
                        "404": _error("Unknown, another key's, or expired job"),
                        **AUTH_ERRORS,
                    },
                }
            },
            "/v1/download/{job_id}": {
                "get": {
                    "parameters": [JOB_ID],
                    "responses": {
                        "200": {
                            "description": "The result's bytes",
                            "content": {"application/octet-stream": {}},
                        },
                        "404": _error("Unknown, another key's, or expired job"),
                        "409": _error("Not finished yet, or failed"),
                        **AUTH_ERRORS,
                    },
                }
            },
            "/v1/keys/me": {
                "get": {
                    "responses": {
                        "200": _json(
                            "This key and its quota",
                            {
                                "type": "object",
                                "required": [
                                    "ok",
                                    "key_id",
                                    "name",
                                    "restriction_type",
                                    "allowed_ips",
                                    "allowed_domains",
                                    "usage_count",
                                    "last_used_at",
                                    "created_at",
                                    "rate_limits",
                                ],
                            },
                        ),
                        **AUTH_ERRORS,
                    }
                }
            },
        },
    }
