"""The one error renderer: whatever goes wrong in a request leaves as JSON with its status, never
as HTML or a traceback: `{"error","message","hint"}` on v1 (the seed's body), and CloudConvert's
`{"message","code","errors"}` on /v2 and /sync/v2."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from convertd.api.routes import Handler
from convertd.errors import ConvertdError, Invalid, error_body, is_disk_full
from convertd.store.db import UNAVAILABLE_OR_OS, is_database_down

logger = logging.getLogger(__name__)


def json_error(
    status: int,
    error: str,
    message: str,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.json_response(error_body(error, message, hint), status=status, headers=headers)


# CloudConvert's error codes, by status.
V2_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    409: "CONFLICT",
    410: "GONE",
    413: "PAYLOAD_TOO_LARGE",
    416: "RANGE_NOT_SATISFIABLE",
    422: "INVALID_DATA",
    429: "TOO_MANY_REQUESTS",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
    507: "INSUFFICIENT_STORAGE",
}
V2_PREFIXES = ("/v2/", "/sync/v2/")


def is_v2(request: web.Request) -> bool:
    return request.path.startswith(V2_PREFIXES) or request.path in ("/v2", "/sync/v2")


def _error(
    request: web.Request,
    status: int,
    error: str,
    message: str,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
    errors: dict[str, list[str]] | None = None,
) -> web.Response:
    # One line per error answered, saying why (the access log has only the status); it carries
    # the request's id (logs.request_id), which the answer's X-Request-Id header repeats.
    logger.log(
        logging.INFO if status < 500 else logging.WARNING,
        "answered %d %s: %s",
        status,
        error,
        message,
    )
    if not is_v2(request):
        return json_error(status, error, message, hint, headers)
    body = {
        "message": f"{message} {hint}" if hint else message,
        "code": V2_CODES.get(status, error.upper().replace(" ", "_")),
        "errors": errors or {},
    }
    return web.json_response(body, status=status, headers=headers)


_HTTP_HINTS = {
    404: "See GET /v1/ for the list of endpoints.",
    405: "See GET /v1/ for the methods each endpoint accepts.",
    413: "Send a smaller file, or ask the admin to raise max_upload_bytes.",
}


# nginx's status for a request whose client closed the connection before it was answered:
# what the access line and /metrics count it as, so that dropped uploads (a proxy's timeout, a
# killed curl) show as the client's doing, in the same words as nginx's log. Nothing is sent.
CLIENT_CLOSED_REQUEST = 499


def client_went_away(request: web.Request, exc: BaseException) -> bool:
    """Whether `exc` is the client's connection ending: aiohttp fails the body's read with a
    ConnectionResetError ("Connection lost" on a close, the peer's reset on an RST), and a
    write with ClientConnectionResetError (one of them), once it has dropped the transport."""
    transport = request.transport
    return isinstance(exc, ConnectionResetError) and (transport is None or transport.is_closing())


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as `{"error","message","hint"}`; nothing leaves as HTML or a traceback."""
    try:
        return await handler(request)
    except ConvertdError as exc:
        errors = exc.errors if isinstance(exc, Invalid) else None
        return _error(request, exc.status, exc.error, exc.message, exc.hint, exc.headers(), errors)
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
        hint = None if is_v2(request) else _HTTP_HINTS.get(exc.status)
        return _error(request, exc.status, exc.reason, message, hint, headers)
    except HttpProcessingError as exc:  # a malformed body aiohttp noticed while we read it
        status = exc.code if 400 <= exc.code < 500 else 400
        return _error(
            request,
            status,
            "Bad Request",
            "The request is malformed.",
            "Send standard HTTP with a well-formed body.",
        )
    except UNAVAILABLE_OR_OS as exc:
        if client_went_away(request, exc):
            logger.info(
                "the client went away during %s %s (%s); nothing answered",
                request.method,
                request.path,
                exc,
            )
            return web.Response(status=CLIENT_CLOSED_REQUEST)
        if is_database_down(exc):
            logger.error("database unavailable on %s %s: %s", request.method, request.path, exc)
            return _error(
                request,
                503,
                "Service Unavailable",
                "The database is unavailable just now.",
                "Try again in a few seconds; /health says what is failing.",
                {"Retry-After": "5"},
            )
        if is_disk_full(exc):
            logger.error("disk full on %s %s", request.method, request.path)
            return _error(
                request,
                507,
                "Insufficient Storage",
                "The server's disk is full.",
                "Try again later; the admin can free space.",
            )
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return _internal_error(request)
    except Exception:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return _internal_error(request)


def _internal_error(request: web.Request) -> web.Response:
    return _error(
        request,
        500,
        "Internal Server Error",
        "Something went wrong inside convertd.",
        "Try again; if it keeps happening, the server log says what failed.",
    )
