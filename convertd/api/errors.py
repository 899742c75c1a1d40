"""The one error renderer: whatever goes wrong in a request leaves as `{"error","message","hint"}`
JSON with its status, never as HTML or a traceback."""

from __future__ import annotations

import logging
import sqlite3

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from convertd.api.routes import Handler
from convertd.errors import ConvertdError, error_body, is_disk_full

logger = logging.getLogger(__name__)


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
        if is_disk_full(exc):
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
