"""Errors that carry their HTTP status, and the one JSON body every error is answered with."""

from __future__ import annotations

import errno
from typing import Any


class ConvertdError(Exception):
    """An error a client caused or must hear about; rendered as `{"error","message","hint"}`."""

    status = 500
    error = "Internal Server Error"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(ConvertdError):
    status = 400
    error = "Bad Request"


class Unauthorized(ConvertdError):
    status = 401
    error = "Unauthorized"


class Forbidden(ConvertdError):
    status = 403
    error = "Forbidden"


class NotFound(ConvertdError):
    status = 404
    error = "Not Found"


class RequestTimeout(ConvertdError):
    status = 408
    error = "Request Timeout"


class Conflict(ConvertdError):
    status = 409
    error = "Conflict"


class Gone(ConvertdError):
    status = 410
    error = "Gone"


class Invalid(ConvertdError):
    """A request whose fields do not validate (422), with each bad field's problems."""

    status = 422
    error = "Unprocessable Entity"

    def __init__(self, message: str, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or {}


class PayloadTooLarge(ConvertdError):
    status = 413
    error = "Payload Too Large"


class RateLimited(ConvertdError):
    status = 429
    error = "Too Many Requests"

    def __init__(
        self,
        message: str,
        retry_after: int,
        hint: str | None = None,
        rate_headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.retry_after = retry_after
        self.rate_headers = rate_headers or {}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after), **self.rate_headers}


class RangeNotSatisfiable(ConvertdError):
    """A download's one byte range holds none of the file's bytes (RFC 9110 15.5.17)."""

    status = 416
    error = "Range Not Satisfiable"

    def __init__(self, asked: str, size: int) -> None:
        super().__init__(
            f"The range {asked} holds none of this file's {size} bytes.",
            f"Ask for bytes within 0-{size - 1}, or leave out Range for the whole file.",
        )
        self.size = size

    def headers(self) -> dict[str, str]:
        return {"Content-Range": f"bytes */{self.size}"}


class InsufficientStorage(ConvertdError):
    status = 507
    error = "Insufficient Storage"


class ServiceUnavailable(ConvertdError):
    status = 503
    error = "Service Unavailable"


class ConversionError(Exception):
    """A conversion failed for a reason the user can act on; the message is stored on the job."""


# The one error a job ends with when the disk filled up under it. Drop folders treat it as
# temporary (the file is converted again later), so it is recognised by this exact text.
DISK_FULL = "The server ran out of disk space while converting this file"


def is_disk_full(exc: BaseException) -> bool:
    """An OSError or SQLite error that says the disk (or the database's) is full."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    text = str(exc)
    return "disk is full" in text or "No space left on device" in text


def error_body(error: str, message: str, hint: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": error, "message": message}
    if hint:
        body["hint"] = hint
    return body
